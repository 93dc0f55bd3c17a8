"""What several resources share: the bot configuration. A bot, a conversation and
a completion request all carry it (a conversation's own values override its bot's),
so its fields are declared once, here."""

from __future__ import annotations

import functools
from typing import Annotated

import msgspec

from ..actions.fields import Body, Item, LongText, Ref, field_names
from ..engine.models import parse as parse_model
from ..errors import BadRequest

# `(?![\s\S])` is "end of input" in both Python and ECMA regexes; `$` would also
# match before a final newline in Python.
ModelName = Annotated[
    str,
    msgspec.Meta(
        max_length=256,
        # a name (providers use `/`, `@`, `:`, `.`, spaces) and then `/param=value` pairs,
        # as engine/models.py parses them (the known parameters' values are checked there)
        pattern=(
            r"^[^\s=/\x00-\x1f][^=/\x00-\x1f]{0,199}(?:/[^\s=/\x00-\x1f][^=/\x00-\x1f]{0,199})*"
            r"(?:/\w+=[^/\x00-\x1f]{0,200})*(?![\s\S])"
        ),
        examples=["gpt-4o", "gpt-4o/temperature=0.2", "meta-llama/Llama-3.1-8B@fast/temperature=0.7"],
    ),
]


@functools.lru_cache(maxsize=1024)  # a few model strings, sent again and again; a failure is not kept
def check_model(model: str) -> None:
    """A model string's parameters are checked when it is sent (bot, conversation,
    completion), so a completion never fails on them later."""
    try:
        parse_model(model)
    except BadRequest as exc:
        raise ValueError(exc.message) from None


class BotConfig(Body):
    """The configuration a completion runs with."""

    model: ModelName | None = None
    backstory: LongText | None = None
    dataset_id: Ref | None = None
    skillset_id: Ref | None = None
    privacy: bool | None = None
    moderation: bool | None = None


class ConfigBody(BotConfig):
    """The bot configuration as a request sends it (bot, conversation, completion):
    its model string checked at once. Stored rows are read as plain BotConfig."""

    checks = {"model": check_model}


BOT_CONFIG = field_names(BotConfig)  # the column names, in bots and conversations alike


class Configured(Item):
    """A stored resource with a bot configuration (bots, conversations)."""

    meta: dict
    model: str | None = None
    backstory: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    privacy: bool | None = None
    moderation: bool | None = None


def config_of(row) -> BotConfig:
    """The bot configuration in a bots or conversations row."""
    return BotConfig(**{f: row[f] for f in BOT_CONFIG})


def overlay(own: BotConfig, under: BotConfig | None) -> BotConfig:
    """`own`'s values, and `under`'s where `own` has none (a conversation over its bot)."""
    if under is None:
        return own
    return BotConfig(**{f: v if (v := getattr(own, f)) is not None else getattr(under, f) for f in BOT_CONFIG})
