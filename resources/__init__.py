"""One module per resource, each exporting its routes as ACTIONS; ROUTES is every
route botkit serves, in the reference's order (by path), handed to the app and the
spec builder alike (`botkit routes` prints it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from ..actions.base import Action
from ..engine import fetch, http, vectors
from ..errors import StartupError
from ..store import files, queue
from . import (
    blueprint,
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
    policy,
    portal,
    secret,
    skillset,
    space,
    task,
    team,
    usage,
)
from .completion import abilities, dispatch, execution, speech

_MODULES = (
    abilities,
    blueprint,
    bot,
    channel,
    completion,
    contact,
    conversation,
    dataset,
    dispatch,
    event,
    file,
    memory,
    partner,
    platform,
    policy,
    portal,
    secret,
    skillset,
    space,
    speech,
    task,
    team,
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
    pruning), the job runner (BOTKIT_JOB_CONCURRENCY jobs at once; 0: none here,
    `botkit worker` processes run them) and, beside it, the tasks' scheduler and the
    records' embedder and the retention policies' sweep."""
    settings = state.settings
    credentials = {
        "BOTKIT_STORAGE_ACCESS_KEY_ID": settings.storage_access_key_id,
        "BOTKIT_STORAGE_SECRET_ACCESS_KEY": settings.storage_secret_access_key,
    }
    env = {**os.environ, **{k: v for k, v in credentials.items() if v}}
    state.storage = files.from_url(settings.storage_url, settings.data_dir, env)
    await state.storage.start()
    try:
        state.fetch_policy = fetch.FetchPolicy.parse(settings.fetch_allow)
    except ValueError as exc:
        raise StartupError(f"BOTKIT_FETCH_ALLOW: {exc}") from None
    # the models' tokenizers (a BPE file read once), now rather than in a first request
    await asyncio.to_thread(lambda: [m.counter for m in state.models.models.values()])
    state.events = event.EventLog(state.pool, state.channels, settings.event_retention_days)
    await state.events.start()
    state.jobs = queue.Runner(
        state.pool,
        {
            dispatch.KIND: dispatch.handler(state),
            file.SYNC: dataset.sync_handler(state),
            task.EXECUTION: execution.handler(state),
        },
        give_up={dispatch.KIND: dispatch.give_up(state), task.EXECUTION: execution.give_up(state)},
        concurrency=settings.job_concurrency,
        lease=settings.job_lease_seconds,
    )
    scheduler = task.scheduler(state)
    embedder = vectors.Embedder(state)
    retention = policy.sweeper(state.pool)
    if settings.job_concurrency > 0:
        await state.jobs.start()
        await scheduler.start()  # where jobs run, tasks' schedules fire
        await embedder.start()  # records are embedded
        await retention.start()  # and retention policies applied
    try:
        yield
    finally:
        await retention.stop()
        await embedder.stop()
        await scheduler.stop()
        await state.jobs.stop()
        await state.events.stop()
        await state.storage.close()
        await http.close()
