"""Running a task's execution (a job of kind task.EXECUTION): the task's bot (model,
backstory, dataset, skillset) carries out the task's description in a conversation,
iteration after iteration, as the official SDK's agent loop does (`chatbotkit.agent.
execute`): each iteration is one completion that may call the bot's abilities and the
execution's own functions `plan`, `progress` and `exit`; it ends when the model calls
`exit` (code 0: success, any other: failure, its message the summary) or answers
without needing another iteration (success, its answer the summary), and fails beyond
the task's maxIterations, maxTime or maxCalls (tool calls across its iterations). The
transcript is the conversation's messages; each completion's usage is recorded as any
completion's.

A conversation is reused across executions for the task's sessionDuration (ms) after
the last one ended. Each iteration is stored, with the execution's count of iterations
done, in one transaction that first checks the job is still held here; a runner that
dies mid-iteration stored nothing of it, and the runner that takes the job over
(within the queue's lease, store/queue.py) goes on from the iterations done. Cancel
stops it within a second: the holder listens on the execution's cancel channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from ...actions.auth import in_background
from ...actions.base import Context, Principal, now_ms
from ...actions.ids import new_id
from ...actions.stream import error_line
from ...engine.run import Message as EngineMessage
from ...engine.run import Outcome
from ...errors import ApiError, InternalError
from ...store import queue
from .. import channel
from .. import task as tasks
from ..conversation import NewMessage, insert_messages
from . import Extensions, FunctionDefinition
from .run import _events, _store, build, check_limits, conversation_run, history

log = logging.getLogger("botkit")

ITERATIONS_DEFAULT = 10
ITERATIONS_MAX = 100
TIME_DEFAULT_MS = 10 * 60 * 1000
TIME_MAX_MS = 24 * 3600 * 1000
SUMMARY_MAX = 2000

GUIDELINES = """# Task execution guidelines

The goal is to complete the assigned task efficiently and effectively:

1. Plan first: use the `plan` function to set out the steps before starting.
2. Track progress: use the `progress` function to record what is done and what blocks you.
3. Use the tools you have to carry out each step.
4. Exit when done: call the `exit` function with code 0 when the task is complete, or a
   non-zero code (and a message saying why) if it cannot be completed.
5. Work autonomously: nobody answers questions while the task runs."""

START = "Carry out this task:\n\n{description}"
CONTINUE = "Continue with the task. Call `exit` when it is complete (code 0) or cannot be completed (another code)."


def _function(name: str, description: str, properties: dict, required: list[str], data: Any) -> FunctionDefinition:
    return msgspec.convert(
        {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
            "result": {"data": data},
        },
        FunctionDefinition,
    )


FUNCTIONS = [
    _function(
        "plan",
        "Create or update a plan for approaching the task: clear, actionable steps.",
        {"steps": {"type": "array", "items": {"type": "string"}}, "rationale": {"type": "string"}},
        ["steps"],
        {"success": True, "message": "plan recorded"},
    ),
    _function(
        "progress",
        "Update progress on the task: completed steps, the current one, blockers, next steps.",
        {
            "completed": {"type": "array", "items": {"type": "string"}},
            "current": {"type": "string"},
            "blockers": {"type": "array", "items": {"type": "string"}},
            "nextSteps": {"type": "array", "items": {"type": "string"}},
        },
        [],
        {"success": True, "message": "progress recorded"},
    ),
    _function(
        "exit",
        "End the task execution with a status code (0: success, any other: failure) and a message.",
        {"code": {"type": "integer", "minimum": 0, "maximum": 255}, "message": {"type": "string"}},
        ["code"],
        {"success": True, "message": "the execution ends after this answer"},
    ),
]
OWN_FUNCTIONS = frozenset(f.name for f in FUNCTIONS)


def _exit_of(outcome: Outcome) -> tuple[int, str | None] | None:
    """The last `exit` the model called in this completion: (code, message)."""
    found = None
    for m in outcome.messages:
        function = ((m.meta or {}).get("activity") or {}).get("function") or {}
        if function.get("name") == "exit":
            args = function.get("arguments")
            args = args if isinstance(args, dict) else {}
            code = args.get("code", 1)
            message = args.get("message")
            found = (
                code if isinstance(code, int) and not isinstance(code, bool) else 1,
                message if isinstance(message, str) else None,
            )
    return found


def _bounded(value: float | None, default: int, most: int) -> int:
    return default if value is None or value <= 0 else min(int(value), most)


class _Ended(Exception):
    def __init__(self, success: bool, summary: str) -> None:
        self.success, self.summary = success, summary[:SUMMARY_MAX]


async def _conversation(conn, ctx: Context, task, execution) -> str:
    """The execution's conversation: its own (resumed), the session's (the task's last
    execution ended within sessionDuration), or a new one with the task's bot."""
    if execution["conversation_id"]:
        return execution["conversation_id"]
    conversation_id = None
    if task["session_duration"]:
        conversation_id = await conn.fetchval(
            "SELECT conversation_id FROM task_executions WHERE task_id = $1 AND account_id = $2 "
            "AND completed_at > now() - make_interval(secs => $3 / 1000.0) AND conversation_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            task["id"],
            ctx.account_id,
            float(task["session_duration"]),
        )
    if conversation_id is None:
        conversation_id = new_id()
        now = now_ms()
        await conn.execute(
            "INSERT INTO conversations (id, account_id, bot_id, contact_id, task_id, meta, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, '{}', $6, $6)",
            conversation_id,
            ctx.account_id,
            task["bot_id"],
            task["contact_id"],
            task["id"],
            now,
        )
    await conn.execute(
        "UPDATE task_executions SET conversation_id = $2, status = 'running', updated_at = $3 WHERE id = $1",
        execution["id"],
        conversation_id,
        now_ms(),
    )
    return conversation_id


async def _iteration(
    ctx: Context, job: queue.Job, task, execution_id: str, conversation_id: str, n: int, calls: list[int]
) -> Outcome:
    """One completion of the execution, stored with the count of iterations done and
    of the calls made (`calls`: [made so far], updated)."""
    text = START.format(description=task["description"] or task["name"] or "(no description)") if n == 1 else CONTINUE
    async with ctx.pool.connection() as conn:
        await check_limits(conn, ctx, 1)  # a child's limits hold for its tasks as for its requests
        run = await conversation_run(conn, ctx, conversation_id, lambda _id, outcome: outcome)
        engine_job = await build(
            ctx,
            conn,
            run,
            [*await history(conn, ctx, run), ("user", text, None)],
            functions=FUNCTIONS,
            extensions=Extensions(backstory=GUIDELINES),
            limits=None,
        )
    if task["max_calls"]:
        engine_job.limits.calls = max(0, min(engine_job.limits.calls, int(task["max_calls"]) - calls[0]))

    async def finishing(conn) -> None:
        if not await queue.held(conn, job):
            raise InternalError("the execution is no longer held here")  # rolls the iteration back
        await insert_messages(conn, ctx.account_id, conversation_id, [NewMessage("user", text)])
        await conn.execute(
            "UPDATE task_executions SET iterations = $2, calls = $3, updated_at = $4 WHERE id = $1",
            execution_id,
            n,
            made,
            now_ms(),
        )

    run.finishing = finishing
    outcome = None
    async for event in _events(ctx, run, engine_job):
        if isinstance(event, EngineMessage) and event.type == "activity":
            await _operation(ctx, task["id"], event)
        elif isinstance(event, Outcome):
            outcome = event
    assert outcome is not None
    made = calls[0] + len(outcome.messages)  # an activity message per call; `finishing` stores it
    await _store(ctx, run, outcome)
    calls[0] = made
    return outcome


async def _operation(ctx: Context, task_id: str, message: EngineMessage) -> None:
    """A function the model called, to the task's subscribers (begun and ended: the
    engine reports a call once it has its result)."""
    function = ((message.meta or {}).get("activity") or {}).get("function") or {}
    name = function.get("name")
    action = tasks.OperationAction(
        id=new_id(),
        kind="function" if name in OWN_FUNCTIONS else "skillset",  # the bot's abilities are its skillset's
        name=name,
        input=function.get("arguments"),
    )
    data = tasks.OperationData(id=action.id, action=action)
    now = now_ms()
    with contextlib.suppress(Exception):  # the events are a view; the execution goes on without them
        await tasks.publish_event(ctx, task_id, tasks.OperationBeginEvent(created_at=now, data=data))
        await tasks.publish_event(ctx, task_id, tasks.OperationEndEvent(created_at=now, data=data))


async def _iterate(ctx: Context, job: queue.Job, task, execution, conversation_id: str) -> None:
    """Iterations until the model exits or answers; raises _Ended with the outcome."""
    most = _bounded(task["max_iterations"], ITERATIONS_DEFAULT, ITERATIONS_MAX)
    calls = [execution["calls"]]
    for n in range(execution["iterations"] + 1, most + 1):
        outcome = await _iteration(ctx, job, task, execution["id"], conversation_id, n, calls)
        exited = _exit_of(outcome)
        if exited is not None:
            code, message = exited
            raise _Ended(code == 0, message or outcome.text or f"exited with code {code}")
        if task["max_calls"] and calls[0] >= task["max_calls"]:
            raise _Ended(False, f"maxCalls reached: {calls[0]} tool calls")
        if outcome.reason in ("stop", "length"):
            raise _Ended(True, outcome.text)
        if outcome.reason == "activity":
            raise _Ended(False, "the model called a function that nobody answers during a task")
    raise _Ended(False, f"the task did not complete within {most} iterations")


async def _end(ctx: Context, job: queue.Job, task_id: str, execution_id: str, success: bool, summary: str) -> None:
    outcome = "success" if success else "failure"
    async with ctx.pool.connection() as conn, conn.transaction():
        if not await queue.finish(conn, job):
            return  # canceled meanwhile (the cancel wrote the end), or taken over
        ended = await conn.fetchval(
            "UPDATE task_executions SET status = 'idle', outcome = $2, summary = $3, completed_at = now(), "
            "updated_at = $4 WHERE id = $1 AND completed_at IS NULL RETURNING id",
            execution_id,
            outcome,
            summary,
            now_ms(),
        )
        if ended is not None:
            await _ended_task(conn, ctx, task_id, execution_id, outcome)


async def _ended_task(conn, ctx: Context, task_id: str, execution_id: str, outcome: str) -> None:
    """The task shows its last outcome; the event log has the execution's end."""
    await conn.execute(
        "UPDATE tasks SET status = 'idle', outcome = $3, updated_at = $4 WHERE id = $1 AND account_id = $2 "
        "AND status = 'running'",
        task_id,
        ctx.account_id,
        outcome,
        now_ms(),
    )
    await ctx.services.events.record(
        conn,
        ctx.account_id,
        "task.execution.finish",
        meta={"executionId": execution_id, "outcome": outcome},
        refs={"task_id": task_id},
    )


def handler(services: Any) -> queue.Handler:
    async def run_execution(job: queue.Job) -> None:
        p = job.payload
        async with services.pool.connection() as conn, conn.transaction():
            acting = await in_background(conn, job.account_id, p["tokenId"])
            ctx = Context(acting, services.pool, job.id, services)
            execution = await conn.fetchrow(
                "SELECT id, conversation_id, iterations, calls, completed_at FROM task_executions "
                "WHERE id = $1 AND account_id = $2 FOR UPDATE",
                p["executionId"],
                job.account_id,
            )
            task = await conn.fetchrow(
                "SELECT id, name, description, bot_id, contact_id, session_duration, max_iterations, max_time, "
                "max_calls "
                "FROM tasks WHERE id = $1 AND account_id = $2",
                p["taskId"],
                job.account_id,
            )
            if execution is None or task is None or execution["completed_at"] is not None:
                await queue.finish(conn, job)  # deleted or canceled before it ran
                return
            conversation_id = await _conversation(conn, ctx, task, execution)
        deadline = _bounded(task["max_time"], TIME_DEFAULT_MS, TIME_MAX_MS) / 1000
        started = time.monotonic()
        async with services.channels.listen(job.account_id, tasks.cancel_channel(execution["id"])) as canceled:
            work = asyncio.ensure_future(_iterate(ctx, job, task, execution, conversation_id))
            stop = asyncio.ensure_future(canceled.next())
            try:
                done, _ = await asyncio.wait({work, stop}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:  # the runner stops (the job is handed back): so does the work
                work.cancel()
                raise
            finally:
                stop.cancel()
            if work not in done:
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                if stop in done:
                    return  # canceled: the cancel wrote the execution's end
                seconds = time.monotonic() - started
                await _end(ctx, job, task["id"], execution["id"], False, f"maxTime reached after {seconds:.1f} s")
                return
        try:
            work.result()
        except _Ended as ended:
            await _end(ctx, job, task["id"], execution["id"], ended.success, ended.summary)
        except ApiError as exc:  # the model failed, a limit was reached, the bot is gone, ...
            await _end(ctx, job, task["id"], execution["id"], False, f"{exc.code}: {exc.message}")
            with contextlib.suppress(Exception):
                await _publish_error(ctx, task["id"], exc.message, exc.code)
        except Exception as exc:
            log.exception("task execution %s failed", execution["id"])
            await _end(ctx, job, task["id"], execution["id"], False, "INTERNAL_SERVER_ERROR: the execution failed")
            with contextlib.suppress(Exception):
                await _publish_error(
                    ctx, task["id"], f"the execution failed: {type(exc).__name__}", "INTERNAL_SERVER_ERROR"
                )

    return run_execution


async def _publish_error(ctx: Context, task_id: str, message: str, code: str) -> None:
    await channel.publish(ctx, tasks.events_channel(task_id), [msgspec.json.decode(error_line(message, code))])


def give_up(services: Any) -> queue.GiveUp:
    """An execution whose runners kept dying ends as a failure."""

    async def fail(job: queue.Job) -> None:
        ctx = Context(Principal(job.account_id, job.payload["tokenId"]), services.pool, job.id, services)
        async with ctx.pool.connection() as conn, conn.transaction():
            ended = await conn.fetchval(
                "UPDATE task_executions SET status = 'idle', outcome = 'failure', summary = $2, completed_at = now(), "
                "updated_at = $3 WHERE id = $1 AND completed_at IS NULL RETURNING id",
                job.payload["executionId"],
                f"given up after {queue.MAX_ATTEMPTS} attempts",
                now_ms(),
            )
            if ended is not None:
                await _ended_task(conn, ctx, job.payload["taskId"], job.payload["executionId"], "failure")

    return fail
