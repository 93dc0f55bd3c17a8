"""Request rate limits: fixed one-minute windows per token and per account, counted
in process memory (a dict lookup per request, no database round trip).

Several API processes: each process allows limit / BOTKIT_PROCESSES of every
window (rounded up). Behind a balancer that spreads a client's requests evenly over
N processes, the client gets the full limit (N x ceil(limit / N), at most N - 1
more); if all its requests land on one process it gets ceil(limit / N). README.md
shows this arithmetic; for exact global limits put the limiter in the balancer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..actions.base import Action, Principal

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Limits:
    per_token: int = 1200  # requests a minute for one token (0: no limit)
    per_account: int = 3000  # requests a minute for one account, all its tokens together
    messages: int = 60  # message-sending requests a minute per account
    history: int = 100  # message-history lists a minute per account
    processes: int = 1  # API processes sharing the load


class RateLimiter:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock
        self._window = -1
        self._counts: dict[tuple, int] = {}

    def _share(self, limit: int) -> int:
        return math.ceil(limit / max(1, self.limits.processes))

    def hit(self, principal: Principal, action: Action) -> tuple[bool, list[tuple[bytes, bytes]], int]:
        """Count one request; (allowed, headers, seconds until reset). The headers report
        the budget with the least left."""
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        if window != self._window:  # a new window: forget the old one's counts
            self._window = window
            self._counts = {}
        reset_in = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        budgets = [
            (("t", principal.token_id), self.limits.per_token),
            (("a", principal.account_id), self.limits.per_account),
        ]
        kind = action.budget  # the route's own budget, besides the general ones
        if kind == "messages":
            budgets.append((("m", principal.account_id), self.limits.messages))
        elif kind == "history":
            budgets.append((("h", principal.account_id), self.limits.history))
        counts = self._counts
        allowed = True
        tightest_limit = tightest_left = None
        for key, limit in budgets:
            if limit <= 0:
                continue
            limit = self._share(limit)
            used = counts.get(key, 0)
            if used >= limit:
                allowed = False
            left = limit - used - 1
            if tightest_left is None or left < tightest_left:
                tightest_limit, tightest_left = limit, left
        if allowed:
            for key, limit in budgets:
                if limit > 0:
                    counts[key] = counts.get(key, 0) + 1
        if tightest_limit is None or tightest_left is None:
            return True, [], reset_in
        headers = [
            (b"x-ratelimit-limit", str(tightest_limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, tightest_left)).encode()),
            (b"x-ratelimit-reset", str((window + 1) * WINDOW_SECONDS).encode()),
        ]
        return allowed, headers, reset_in
