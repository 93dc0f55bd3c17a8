"""One module per resource, each exporting its routes as ACTIONS; ROUTES is every
route botkit serves, in the reference's order (by path), handed to the app and the
spec builder alike (`botkit routes` prints it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..actions.base import Action
from . import (
    bot,
    channel,
    completion,
    contact,
    conversation,
    dataset,
    event,
    file,
    memory,
    partner,
    platform,
    secret,
    skillset,
    task,
    usage,
)

_MODULES = (
    bot,
    channel,
    completion,
    contact,
    conversation,
    dataset,
    event,
    file,
    memory,
    partner,
    platform,
    secret,
    skillset,
    task,
    usage,
)


def _ordered(actions: list[Action]) -> list[Action]:
    seen: dict[str, Action] = {}
    for action in actions:
        if action.path in seen:
            raise RuntimeError(f"two actions on one route: {action.path}")
        seen[action.path] = action
    return [seen[path] for path in sorted(seen)]


ROUTES: list[Action] = _ordered([a for m in _MODULES for a in m.ACTIONS])


@contextlib.asynccontextmanager
async def services(state: Any) -> AsyncIterator[None]:
    """What runs beside the requests of an API process: the event log (its taps and
    pruning)."""
    state.events = event.EventLog(state.pool, state.channels, state.settings.event_retention_days)
    await state.events.start()
    try:
        yield
    finally:
        await state.events.stop()
