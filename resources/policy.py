"""Policies: rules over an account's data. The one type is `retention` (as the
reference's): with `config.days` (1 to 365), conversations of the account (of its
`botId` when the policy names one) that have been idle that long — neither they nor
any of their messages changed — are deleted by a sweep in every process that runs
jobs. A policy without `config.days` is stored and does nothing."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, now_ms
from ..actions.fields import Alias, Body, Description, Item, MetaDict, Name, Ref
from ..actions.ids import floor_id
from ..actions.standard import Table, crud
from ..store import queue

log = logging.getLogger("botkit")

DAY_MS = 86_400_000
SWEEP_SECONDS = 60.0
SWEEP_BATCH = 500  # conversations deleted per statement


class RetentionConfig(msgspec.Struct, rename="camel", kw_only=True):
    days: Annotated[int, msgspec.Meta(ge=1, le=365, description="Delete conversations idle this many days")] | None = (
        None
    )


def _check_config(config: dict[str, Any]) -> None:
    try:
        msgspec.convert(config, RetentionConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"config: {exc}") from None


class Policy(Item):
    meta: dict
    type: str
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    bot_id: str | None = None
    config: dict | None = None


class PolicyCreate(Body):
    type: Literal["retention"]
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    bot_id: (
        Annotated[str, msgspec.Meta(max_length=64, description="The bot it applies to; none: every bot of the account")]
        | None
    ) = None
    config: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(
                max_length=50,
                description='For `retention`: `{"days": 1..365}`, the idle time after which a conversation is '
                "deleted (without it the policy does nothing)",
            ),
        ]
        | None
    ) = None

    checks = {"config": _check_config}  # on update too (the update struct keeps checks)


TABLE = Table(
    name="policies",
    noun="policy",
    item=Policy,
    create=PolicyCreate,
    tag="Policy",
    refs={
        "blueprint_id": ("blueprints", "blueprint"),
        "bot_id": ("bots", "bot"),
    },
)


async def sweep(pool: Any, now: int | None = None) -> int:
    """One pass of the retention policies: the conversations it deleted."""
    now = now_ms() if now is None else now
    async with pool.connection() as conn:
        policies = await conn.fetch(
            "SELECT account_id, bot_id, (config->>'days')::int AS days FROM policies "
            # a row another version let through must not stop the sweep of every account
            "WHERE type = 'retention' AND config->>'days' ~ '^[0-9]{1,3}$' "
            "AND (config->>'days')::int BETWEEN 1 AND 365 ORDER BY id"
        )
    deleted = 0
    for p in policies:
        cutoff = now - p["days"] * DAY_MS
        while True:
            async with pool.connection() as conn:
                n = len(
                    await conn.fetch(
                        "DELETE FROM conversations WHERE id IN (SELECT c.id FROM conversations c "
                        "WHERE c.account_id = $1 AND c.updated_at < $2 AND ($3::text IS NULL OR c.bot_id = $3) "
                        "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.id >= $4) "
                        "LIMIT $5) RETURNING id",
                        p["account_id"],
                        cutoff,
                        p["bot_id"],
                        floor_id(cutoff),
                        SWEEP_BATCH,
                    )
                )
            deleted += n
            if n < SWEEP_BATCH:
                break
    if deleted:
        log.info("retention policies: %d idle conversations deleted", deleted)
    return deleted


def sweeper(pool: Any, every: float = SWEEP_SECONDS) -> queue.Every:
    """Applies the retention policies every `every` seconds, in each process that runs
    jobs (two processes sweeping at once delete the same rows once)."""
    return queue.Every("retention policies", every, lambda: sweep(pool))


ACTIONS: list[Action] = crud(
    TABLE,
    list="/policy/list",
    fetch="/policy/{policyId}/fetch",
    create="/policy/create",
    update="/policy/{policyId}/update",
    delete="/policy/{policyId}/delete",
)
