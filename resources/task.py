"""Tasks (the records; running them on a schedule is later work), and the live
stream of a task's workflow events (`task/{id}/subscribe`): operationBegin,
operationEnd and error lines as its executions write them to the task's channel
(`publish_event`), replayed with historyLength."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, Stream, now_ms
from ..actions.fields import Amount, Body, Description, IdResponse, Item, MetaDict, Name, Ref
from ..actions.standard import Table, crud, record
from ..actions.stream import ErrorEvent, PingEvent
from ..errors import NotFound
from . import channel

Positive = Amount


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
    last_run_at: int | None = None
    next_run_at: int | None = None


class TaskCreate(Body):
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    contact_id: Ref | None = None
    bot_id: Ref | None = None
    schedule: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    session_duration: Positive | None = None
    max_iterations: Positive | None = None
    max_time: Positive | None = None


TABLE = Table(
    name="tasks",
    noun="task",
    item=Task,
    create=TaskCreate,
    tag="Task",
    refs={"contact_id": ("contacts", "contact"), "bot_id": ("bots", "bot")},
    filters=("bot_id", "contact_id", "status"),
)


class CancelTask(Action):
    """Marks the task canceled (its executions come with the task runner)."""

    tag = "Task"
    summary = "Cancel a task"
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
            await record(conn, ctx, TABLE, "cancel", canceled, {})
        return IdResponse(id=canceled)


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
    history_length: Annotated[int, msgspec.Meta(ge=0, description=f"at most {channel.HISTORY_MAX} are replayed")] = 0


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
        create="/task/create",
        update="/task/{taskId}/update",
        delete="/task/{taskId}/delete",
        export="/task/export",
    ),
    CancelTask("/task/{taskId}/cancel"),
    SubscribeTask("/task/{taskId}/subscribe"),
]
