"""Abilities as completions and task executions run them, and
`skillset/{id}/ability/{id}/execute`, which runs one without a model.

engine/abilities.py reads an ability's action block and runs it; what the actions
reach beyond the engine is here (`AccountRuntime`): the account's secrets, its
datasets and its bots, always the caller's own. A bot that an ability calls answers
as a stateless completion of that bot (its usage recorded like any other); bots call
bots at most CALL_DEPTH deep, so two bots that call each other stop. The execute
route lives here rather than in skillset.py for that reason: it may run a completion,
and completions read skillsets."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import yaml

from ...actions.base import Action, Call, Context
from ...actions.fields import Body, LongText, Ref
from ...engine import abilities
from ...engine import job as engine_job
from ...errors import ApiError, BadRequest, NotFound
from .. import bot, contact, dataset, secret, skillset
from . import run as completion_run

log = logging.getLogger("botkit")
CALL_DEPTH = 2


class AccountRuntime:
    """engine.abilities.Runtime for one ability of one account (and contact)."""

    def __init__(self, ctx: Context, *, secret_id: str | None, contact_id: str | None, depth: int) -> None:
        self.ctx = ctx
        self.fetch_policy = ctx.services.fetch_policy
        self.has_default_secret = secret_id is not None
        self.secret_id = secret_id
        self.contact_id = contact_id
        self.depth = depth
        self.tokens = 0  # model tokens the actions spent (a called bot's)

    async def secrets(self, keys: set[str]) -> dict[str, str]:
        async with self.ctx.pool.connection() as conn:
            return await secret.values_for(
                conn, self.ctx.account_id, keys, default_id=self.secret_id, contact_id=self.contact_id
            )

    async def search(self, dataset_id: str, query: str) -> list[dict[str, Any]]:
        async with self.ctx.pool.connection() as conn:
            settings, records = await dataset.search(conn, self.ctx, dataset_id, query)
        if settings is None:
            raise abilities.AbilityError("the ability's dataset is not found")
        return [{"id": r.id, "text": r.text, "score": round(r.score, 4), "source": r.source} for r in records]

    async def ask(self, bot_id: str, message: str) -> str:
        if self.depth >= CALL_DEPTH:
            raise abilities.AbilityError(f"bots call bots at most {CALL_DEPTH} deep")
        if not message:
            raise abilities.AbilityError("there is no message for the bot")
        async with self.ctx.pool.connection() as conn:
            config = await bot.config(conn, self.ctx.account_id, bot_id)
            if config is None:
                raise abilities.AbilityError("the ability's bot is not found")
            await completion_run.check_limits(conn, self.ctx, 0)
            run = completion_run.Run(
                config, lambda _id, outcome: outcome, bot_id=bot_id, contact_id=self.contact_id, depth=self.depth + 1
            )
            job = await completion_run.build(
                self.ctx, conn, run, [("user", message, None)], functions=None, extensions=None, limits=None
            )
        outcome = await completion_run.collect(self.ctx, run, job)
        self.tokens += outcome.input_tokens + outcome.output_tokens
        return outcome.text


def _free_text(instruction: str) -> str:
    """What the instruction says around its blocks, for the model's description."""
    return abilities.FENCE.sub("", instruction).strip()


def engine_ability(
    ctx: Context,
    name: str,
    description: str,
    instruction: str,
    *,
    secret_id: str | None,
    bot_id: str | None,
    contact_id: str | None,
    depth: int,
) -> engine_job.Ability:
    try:
        block = abilities.parse(instruction)
    except BadRequest as exc:  # saved before botkit checked blocks: offered as free text, said once
        log.warning("ability %r: %s; offered as free text", name, exc.message)
        block = None
    if block is None:
        return engine_job.Ability(name, description, instruction)
    runtime = AccountRuntime(ctx, secret_id=secret_id, contact_id=contact_id, depth=depth)
    said = _free_text(instruction)
    return engine_job.Ability(
        name,
        f"{description}\n\n{said}".strip() if said else description,
        instruction,
        parameters=block.schema(),
        execute=abilities.executor(block, runtime, bot_id=bot_id),
    )


async def of_skillset(ctx: Context, conn, run: completion_run.Run, skillset_id: str) -> list[engine_job.Ability]:
    return [
        engine_ability(
            ctx,
            r["name"],
            r["description"],
            r["instruction"],
            secret_id=r["secret_id"],
            bot_id=r["bot_id"],
            contact_id=run.contact_id,
            depth=run.depth,
        )
        for r in await skillset.abilities_of(conn, ctx.account_id, skillset_id)
    ]


# --- skillset/{id}/ability/{id}/execute ---------------------------------------------


class AbilityExecute(Body):
    input: LongText | None = None  # JSON or YAML parameters, or the one parameter's text
    contact_id: Ref | None = None


class AbilityExecuteMessage(msgspec.Struct, omit_defaults=True):
    type: str
    text: str
    meta: dict | None = None


class AbilityExecuteUsage(msgspec.Struct):
    token: float


class AbilityExecuteResult(msgspec.Struct, omit_defaults=True):
    usage: AbilityExecuteUsage
    result: Any = None
    error: str | None = None
    messages: list[AbilityExecuteMessage] | None = None


def _arguments(block: abilities.Block, text: str | None) -> dict[str, Any]:
    """The parameters an execute request gives: a JSON or YAML object, or, for an
    ability of one parameter, that parameter's text."""
    if text is None or not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError:
        value = None
    if isinstance(value, dict):
        return value
    names = list(block.parameters)
    if len(names) == 1:
        return {names[0]: text}
    if not names:
        return {}
    raise BadRequest(f"input: give the parameters as a JSON or YAML object ({', '.join(names)})")


class ExecuteAbility(Action):
    tag = "Skillset"
    summary = "Run one ability on the given parameters, without a model"
    body = AbilityExecute
    response = AbilityExecuteResult
    budget = "messages"

    async def run(self, ctx: Context, call: Call) -> AbilityExecuteResult:
        body: AbilityExecute = call.body
        async with ctx.pool.connection() as conn:
            row = await conn.fetchrow(
                "SELECT instruction, secret_id, bot_id FROM abilities "
                "WHERE id = $1 AND skillset_id = $2 AND account_id = $3",
                call.params["abilityId"],
                call.params["skillsetId"],
                ctx.account_id,
            )
            if row is None:
                raise NotFound("ability not found")
            contact_id = await contact.resolve(conn, ctx, body.contact_id) if body.contact_id else None
        block = abilities.parse(row["instruction"])
        if block is None:  # free text: what a model calling it would get
            return AbilityExecuteResult(usage=AbilityExecuteUsage(0), result={"instruction": row["instruction"]})
        arguments = _arguments(block, body.input)
        runtime = AccountRuntime(ctx, secret_id=row["secret_id"], contact_id=contact_id, depth=0)
        try:
            result = await abilities.run(block, arguments, runtime, bot_id=row["bot_id"])
        except ApiError as exc:  # the action's failure is the answer's error, as the reference has it
            return AbilityExecuteResult(usage=AbilityExecuteUsage(runtime.tokens), error=exc.message)
        return AbilityExecuteResult(usage=AbilityExecuteUsage(runtime.tokens), result=result)


ACTIONS: list[Action] = [ExecuteAbility("/skillset/{skillsetId}/ability/{abilityId}/execute")]
