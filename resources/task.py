"""Tasks and their executions. `task/{id}/trigger` queues an execution (a job of kind
EXECUTION, run by completion/execution.py wherever a runner takes it) and answers at
once; `task/{id}/execution/list` shows them (status idle|running|canceled, outcome
pending|success|failure, the summary, the conversation holding the transcript);
`task/{id}/execution/{id}/cancel` and `task/{id}/cancel` stop them (within a second:
the holder listens on the execution's cancel channel). `task/{id}/subscribe` streams
the task's workflow events (operationBegin, operationEnd, error) as its executions
write them to the task's channel (`publish_event`), replayed with historyLength.

A task with a `schedule` (a cron expression of five fields, or hourly, daily, weekly,
monthly, yearly; `never` or none for no schedule) in its `timezone` (IANA, default
UTC) has `nextRunAt`; every process that runs jobs looks for due tasks every
SCHEDULE_POLL_SECONDS (`scheduler`) and fires each in the transaction that moves its
`nextRunAt` on (FOR UPDATE SKIP LOCKED): one execution per due time however many
processes look. A time missed while nothing ran fires once, late, not once per miss."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import msgspec
from cronsim import CronSim, CronSimError

from ..actions.base import Action, Call, Context, Principal, Stream, now_ms
from ..actions.fields import SAFE_INTEGER, Amount, Body, Description, IdResponse, Item, MetaDict, Name, Ref
from ..actions.ids import new_id
from ..actions.standard import CreateAction, Parent, Table, UpdateAction, crud, record
from ..actions.stream import ErrorEvent, PingEvent
from ..errors import NotFound
from ..store import queue
from . import channel

Positive = Amount
SCHEDULE_POLL_SECONDS = 2.0
FIRE_BATCH = 100  # due tasks fired in one transaction
SCHEDULE_NAMES = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}
UNSCHEDULED = ("", "never", "none", "manual")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def _zone(timezone: str | None) -> ZoneInfo:
    """The IANA zone by its name (looked up among the known names: a name is never a path)."""
    if (timezone or "UTC") not in _zones():
        raise ValueError(f"timezone: {str(timezone)[:64]!r} is not an IANA time zone (Europe/London, UTC)")
    return ZoneInfo(timezone or "UTC")


def next_run(schedule: str | None, timezone: str | None, after_ms: int) -> int | None:
    """When a task of this schedule runs next after `after_ms` (ms), or None when it has
    no schedule. ValueError for a schedule or time zone that is not one."""
    text = (schedule or "").strip().lower().removeprefix("@")
    if text in UNSCHEDULED:
        return None
    expression = SCHEDULE_NAMES.get(text, (schedule or "").strip())
    start = datetime.fromtimestamp(after_ms / 1000, _zone(timezone))
    try:
        return int(next(CronSim(expression, start)).timestamp() * 1000)
    except (CronSimError, StopIteration):
        raise ValueError(
            f"schedule: {str(schedule)[:64]!r} is neither a cron expression of five fields nor one of "
            f"{', '.join(SCHEDULE_NAMES)}, never"
        ) from None


def _check_schedule(schedule: str) -> None:
    next_run(schedule, None, now_ms())


def _check_timezone(timezone: str) -> None:
    _zone(timezone)


def _cron_pattern() -> str:
    """A pattern of schedules the server takes, for the spec (a subset: any five-field
    expression cronsim reads is taken, ranges, names and L included)."""

    def field(value: str) -> str:
        return rf"(?:\*(?:/[1-9])?|{value}(?:,{value}){{0,3}})"

    values = ("[0-5]?[0-9]", "(?:[01]?[0-9]|2[0-3])", "(?:0?[1-9]|1[0-9]|2[0-8])", "(?:0?[1-9]|1[0-2])", "[0-7]")
    names = "|".join([*SCHEDULE_NAMES, *UNSCHEDULED[1:]])
    return rf"^(?:@?(?:{names})|{' '.join(field(v) for v in values)})?$"


Schedule = Annotated[
    str,
    msgspec.Meta(
        max_length=256,
        description="A cron expression of five fields (minute hour day month weekday, in `timezone`), or "
        f"{', '.join(SCHEDULE_NAMES)}; never, none or empty: no schedule. The pattern is a part of what "
        "is taken: any five-field expression (ranges, month and day names, L) is",
        extra_json_schema={"pattern": _cron_pattern()},
    ),
]
Timezone = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="An IANA time zone (empty: UTC)",
        extra_json_schema={"enum": ["", *sorted(_zones())]},
    ),
]


class Task(Item):
    meta: dict
    status: str
    outcome: str
    name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    bot_id: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    session_duration: float | None = None
    max_iterations: float | None = None
    max_time: float | None = None
    max_calls: float | None = None
    last_run_at: int | None = None
    next_run_at: int | None = None
    blueprint_id: str | None = None


class TaskCreate(Body):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    contact_id: Ref | None = None
    bot_id: Ref | None = None
    schedule: Schedule | None = None
    timezone: Timezone | None = None
    session_duration: Positive | None = None
    max_iterations: Positive | None = None
    max_time: Positive | None = None
    max_calls: Positive | None = None  # tool calls across an execution's iterations; 0 or null: unbounded
    blueprint_id: Ref | None = None  # a botkit extension: the reference's tasks carry none

    checks = {"schedule": _check_schedule, "timezone": _check_timezone}


TABLE = Table(
    name="tasks",
    noun="task",
    item=Task,
    create=TaskCreate,
    tag="Task",
    refs={
        "contact_id": ("contacts", "contact"),
        "bot_id": ("bots", "bot"),
        "blueprint_id": ("blueprints", "blueprint"),
    },
    filters=("bot_id", "contact_id", "status"),
)


PARENT = Parent(table="tasks", param="taskId", column="task_id", noun="task")
EXECUTION = "task.execution"  # the job kind


class TaskExecution(Item):
    meta: dict
    status: Literal["idle", "running", "canceled"]
    outcome: Literal["pending", "success", "failure"]
    task_id: str
    name: str | None = None
    description: str | None = None
    conversation_id: str | None = None
    summary: str | None = None
    completed_at: datetime | None = None
    # when a paused execution goes on: botkit does not pause executions (one handed back
    # or left by a dead runner goes on within the job lease), so it stays null
    resume_at: datetime | None = None


class TaskExecutionCreate(Body):  # executions are made by trigger only (the table wants a create struct)
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None


EXECUTIONS = Table(
    name="task_executions",
    noun="taskExecution",
    item=TaskExecution,
    create=TaskExecutionCreate,
    tag="Task",
    parent=PARENT,
    filters=("status",),
)


def cancel_channel(execution_id: str) -> str:
    return f"#cancel:{execution_id}"


class TriggerTask(Action):
    """Queue an execution of the task; it runs in the background (any process running jobs)."""

    tag = "Task"
    summary = "Run the task now, in the background (`task/{taskId}/execution/list` shows how it goes)"
    body = Body
    response = IdResponse
    budget = "messages"  # it starts a conversation with the bot: rate-limited as sending a message is

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        async with ctx.pool.connection() as conn, conn.transaction():
            if await start_execution(conn, ctx, call.params["taskId"]) is None:
                raise NotFound("task not found")
        ctx.services.jobs.kick()
        return IdResponse(id=call.params["taskId"])


async def start_execution(conn, ctx: Context, task_id: str, by: str = "trigger") -> str | None:
    """Queue an execution of the task (in the caller's transaction): its id, or None
    when the account has no such task."""
    assert ctx.principal is not None
    task = await conn.fetchrow(
        "UPDATE tasks SET status = 'running', last_run_at = $3, updated_at = $3 "
        "WHERE id = $1 AND account_id = $2 RETURNING name, description",
        task_id,
        ctx.account_id,
        now_ms(),
    )
    if task is None:
        return None
    execution_id, job_id, now = new_id(), new_id(), now_ms()
    await conn.execute(
        "INSERT INTO task_executions (id, account_id, task_id, job_id, name, description, created_at, "
        "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        execution_id,
        ctx.account_id,
        task_id,
        job_id,
        task["name"],
        task["description"],
        now,
    )
    payload = {"executionId": execution_id, "taskId": task_id, "tokenId": ctx.principal.token_id}
    await queue.enqueue(conn, job_id, ctx.account_id, EXECUTION, payload, key=execution_id)
    await record(conn, ctx, TABLE, "trigger", task_id, {}, {"executionId": execution_id, "by": by})
    return execution_id


# --- schedules ------------------------------------------------------------------------


async def plan(conn, task_id: str, schedule: str | None, timezone: str | None) -> None:
    """Set the task's nextRunAt from its schedule (after it was created or changed)."""
    upcoming = next_run(schedule, timezone, now_ms())
    await conn.execute("UPDATE tasks SET next_run_at = $2 WHERE id = $1", task_id, upcoming)


class CreateTask(CreateAction):
    async def insert(self, conn, ctx: Context, call: Call, values: dict[str, Any]) -> None:
        await super().insert(conn, ctx, call, values)
        if values.get("schedule"):
            await plan(conn, values["id"], values["schedule"], values["timezone"])


class UpdateTask(UpdateAction):
    async def run(self, ctx: Context, call: Call) -> Any:
        answer = await super().run(ctx, call)
        if {"schedule", "timezone"} & set(self.changes(call.body)):
            async with ctx.pool.connection() as conn:  # the one of the two the body left alone is stored
                row = await conn.fetchrow(
                    "SELECT schedule, timezone FROM tasks WHERE id = $1 AND account_id = $2",
                    call.params["taskId"],
                    ctx.account_id,
                )
                if row is not None:
                    await plan(conn, call.params["taskId"], row["schedule"], row["timezone"])
        return answer


async def fire_due(services: Any, now: int | None = None, limit: int = FIRE_BATCH) -> list[str]:
    """Start an execution of every task that is due (at most `limit`), each moved on to
    its next time in the same transaction; the executions' ids."""
    now = now if now is not None else now_ms()
    started: list[str] = []
    async with services.pool.connection() as conn, conn.transaction():
        due = await conn.fetch(
            "SELECT id, account_id, schedule, timezone FROM tasks WHERE next_run_at <= $1 "
            "ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        for task in due:
            try:
                upcoming = next_run(task["schedule"], task["timezone"], now)
            except ValueError:  # a schedule that no longer reads (the zone database changed): stop it
                upcoming = None
            await conn.execute("UPDATE tasks SET next_run_at = $2 WHERE id = $1", task["id"], upcoming)
            ctx = Context(Principal(task["account_id"], ""), services.pool, new_id(), services)
            execution_id = await start_execution(conn, ctx, task["id"], by="schedule")
            if execution_id is not None:
                started.append(execution_id)
    if started:
        services.jobs.kick()
    return started


def scheduler(services: Any, poll: float = SCHEDULE_POLL_SECONDS) -> queue.Every:
    """Fires due tasks every `poll` seconds, in each process that runs jobs."""

    async def fire_all() -> None:
        while len(await fire_due(services)) == FIRE_BATCH:  # more may be due
            pass

    return queue.Every("task schedules", poll, fire_all)


async def cancel_executions(conn, ctx: Context, task_id: str, execution_id: str | None = None) -> list[str]:
    """Cancel the task's unfinished executions (or one of them) and their jobs; their
    holders are told on each execution's cancel channel once this commits."""
    rows = await conn.fetch(
        "UPDATE task_executions SET status = 'canceled', outcome = 'failure', summary = 'canceled', "
        "completed_at = now(), updated_at = $3 "
        "WHERE task_id = $1 AND account_id = $2 AND completed_at IS NULL AND ($4::text IS NULL OR id = $4) "
        "RETURNING id, job_id",
        task_id,
        ctx.account_id,
        now_ms(),
        execution_id,
    )
    for r in rows:
        await queue.cancel(conn, ctx.account_id, r["job_id"])
    return [r["id"] for r in rows]


async def tell_canceled(ctx: Context, execution_ids: list[str]) -> None:
    for execution_id in execution_ids:
        await channel.publish(ctx, cancel_channel(execution_id), [{"canceled": True}])


class CancelTask(Action):
    """Marks the task canceled and cancels its unfinished executions."""

    tag = "Task"
    summary = "Cancel a task (and its running executions)"
    body = Body
    response = IdResponse

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        async with ctx.pool.connection() as conn, conn.transaction():
            canceled = await conn.fetchval(
                "UPDATE tasks SET status = 'canceled', updated_at = $3 WHERE id = $1 AND account_id = $2 RETURNING id",
                call.params["taskId"],
                ctx.account_id,
                now_ms(),
            )
            if canceled is None:
                raise NotFound("task not found")
            stopped = await cancel_executions(conn, ctx, canceled)
            await record(conn, ctx, TABLE, "cancel", canceled, {})
        await tell_canceled(ctx, stopped)
        return IdResponse(id=canceled)


class CanceledExecution(msgspec.Struct, rename="camel"):
    id: str
    task_id: str


class CancelExecution(Action):
    tag = "Task"
    summary = "Cancel a task execution (a running one stops within a second)"
    body = Body
    response = CanceledExecution

    async def run(self, ctx: Context, call: Call) -> CanceledExecution:
        task_id, execution_id = call.params["taskId"], call.params["taskExecutionId"]
        async with ctx.pool.connection() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT completed_at IS NULL FROM task_executions WHERE id = $1 AND task_id = $2 "
                "AND account_id = $3 FOR UPDATE",
                execution_id,
                task_id,
                ctx.account_id,
            )
            if found is None:
                raise NotFound("task execution not found")
            stopped = await cancel_executions(conn, ctx, task_id, execution_id) if found else []
            if stopped:
                await ctx.services.events.record(
                    conn,
                    ctx.account_id,
                    "task.execution.cancel",
                    meta={"executionId": execution_id},
                    refs={"task_id": task_id},
                )
        await tell_canceled(ctx, stopped)
        return CanceledExecution(id=execution_id, task_id=task_id)


# --- workflow events -------------------------------------------------------------------


class OperationAction(msgspec.Struct, omit_defaults=True):
    id: str
    kind: Literal["dataset", "skillset", "function"] | None = None
    name: str | None = None
    input: Any = None
    justification: str | None = None
    icon: str | None = None


class OperationData(msgspec.Struct):
    id: str
    action: OperationAction


class OperationBeginEvent(msgspec.Struct, tag_field="type", tag="operationBegin", rename="camel"):
    created_at: int
    data: OperationData


class OperationEndEvent(msgspec.Struct, tag_field="type", tag="operationEnd", rename="camel"):
    created_at: int
    data: OperationData


TaskEvents = OperationBeginEvent | OperationEndEvent | ErrorEvent | PingEvent


def events_channel(task_id: str) -> str:
    return f"#task:{task_id}"  # "#": botkit's own, no client can publish to it


async def publish_event(ctx: Context, task_id: str, event: OperationBeginEvent | OperationEndEvent) -> None:
    """An execution's workflow event, to the task's subscribers (and its replay)."""
    await channel.publish(ctx, events_channel(task_id), [msgspec.to_builtins(event)])


class SubscribeBody(Body):
    history_length: Annotated[
        int, msgspec.Meta(ge=0, le=SAFE_INTEGER, description=f"at most {channel.HISTORY_MAX} are replayed")
    ] = 0


class SubscribeTask(Action):
    tag = "Task"
    summary = "Subscribe to a task's workflow events as its executions run (JSONL)"
    body = SubscribeBody
    events = TaskEvents
    response = OperationBeginEvent

    async def run(self, ctx: Context, call: Call) -> Stream:
        task_id = call.params["taskId"]
        if await ctx.pool.fetchval("SELECT 1 FROM tasks WHERE id = $1 AND account_id = $2", task_id, ctx.account_id):
            history = min(call.body.history_length, channel.HISTORY_MAX)
            return Stream(channel.follow(ctx, events_channel(task_id), history))
        raise NotFound("task not found")


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/task/list",
        fetch="/task/{taskId}/fetch",
        create=CreateTask(TABLE, "/task/create"),
        update=UpdateTask(TABLE, "/task/{taskId}/update"),
        delete="/task/{taskId}/delete",
        export="/task/export",
    ),
    CancelTask("/task/{taskId}/cancel"),
    TriggerTask("/task/{taskId}/trigger"),
    *crud(EXECUTIONS, list="/task/{taskId}/execution/list"),
    CancelExecution("/task/{taskId}/execution/{taskExecutionId}/cancel"),
    SubscribeTask("/task/{taskId}/subscribe"),
]
