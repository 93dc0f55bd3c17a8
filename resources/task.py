"""Tasks (the records; running them on a schedule is later work)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Amount, Body, Description, IdResponse, Item, MetaDict, Name, Ref
from ..actions.standard import Table, crud, record
from ..errors import NotFound

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
]
