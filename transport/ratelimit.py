"""Request rate limits: sliding one-minute windows per token and per account, and a
throttle on failed authentication per client address and per token prefix, counted
in process memory (a dict lookup per request, no database round trip).

A sliding window counts this minute's requests plus the last minute's, weighted by how
much of it still lies within the past 60 s (the two-counter estimate): a client cannot
spend a limit at the end of one minute and again at the start of the next, as a fixed
window lets it. Session tokens share one budget per account (a widget cannot mint its
way past the per-token limit), besides the account's.

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
MAX_KEYS = 200_000  # counters kept per window; past it the window starts over (bounded memory)
PREFIX_CHARS = 12  # a token is throttled by its first characters: a guess at one token, from anywhere


@dataclass(frozen=True)
class Limits:
    per_token: int = 1200  # requests a minute for one token (0: no limit)
    per_account: int = 3000  # requests a minute for one account, all its tokens together
    messages: int = 60  # message-sending requests a minute per account
    history: int = 100  # message-history lists a minute per account
    auth_failures: int = 30  # failed authentications a minute per client address and per token prefix
    processes: int = 1  # API processes sharing the load


class SlidingWindows:
    """Counters over sliding one-minute windows: this window's and the last one's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._window = -1
        self._counts: dict[tuple, int] = {}
        self._previous: dict[tuple, int] = {}

    def now(self) -> tuple[float, int, float]:
        """(now, the current window's number, the weight of the previous window's counts)."""
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        if window != self._window:
            self._previous = self._counts if window == self._window + 1 else {}
            self._counts = {}
            self._window = window
        return now, window, 1.0 - (now / WINDOW_SECONDS - window)

    def used(self, key: tuple, weight: float) -> float:
        return self._previous.get(key, 0) * weight + self._counts.get(key, 0)

    def add(self, key: tuple) -> None:
        counts = self._counts
        if len(counts) >= MAX_KEYS and key not in counts:
            counts.clear()
        counts[key] = counts.get(key, 0) + 1

    def wait(self, key: tuple, limit: int, weight: float) -> int:
        """Whole seconds until one more request fits under `limit` (none made meanwhile)."""
        previous, current = self._previous.get(key, 0), self._counts.get(key, 0)
        if current + 1 <= limit:  # within this window, once enough of the last one slides out
            fits_at = 1.0 - (limit - current - 1) / previous if previous else 0.0
            seconds = (fits_at - (1.0 - weight)) * WINDOW_SECONDS
        else:  # in the next window, once enough of this one slides out
            fits_at = 1.0 - (limit - 1) / current if current else 0.0
            seconds = (weight + max(0.0, fits_at)) * WINDOW_SECONDS
        return max(1, math.ceil(seconds))


class RateLimiter:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.windows = SlidingWindows(clock)
        self.failures = SlidingWindows(clock)

    @property
    def clock(self) -> Callable[[], float]:
        return self.windows.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:  # tests move time
        self.windows.clock = self.failures.clock = clock

    def _share(self, limit: int) -> int:
        return math.ceil(limit / max(1, self.limits.processes))

    def hit(self, principal: Principal, action: Action) -> tuple[bool, list[tuple[bytes, bytes]], int]:
        """Count one request; (allowed, headers, seconds until it would be). The headers
        report the budget with the least left."""
        windows = self.windows
        _, window, weight = windows.now()
        token = ("s", principal.account_id) if principal.session_routes is not None else ("t", principal.token_id)
        budgets = [(token, self.limits.per_token), (("a", principal.account_id), self.limits.per_account)]
        kind = action.budget  # the route's own budget, besides the general ones
        if kind == "messages":
            budgets.append((("m", principal.account_id), self.limits.messages))
        elif kind == "history":
            budgets.append((("h", principal.account_id), self.limits.history))
        allowed = True
        retry_in = 0
        tightest_limit = tightest_left = None
        for key, limit in budgets:
            if limit <= 0:
                continue
            limit = self._share(limit)
            used = windows.used(key, weight)
            if used + 1 > limit:
                allowed = False
                retry_in = max(retry_in, windows.wait(key, limit, weight))
            left = math.floor(limit - used - 1)
            if tightest_left is None or left < tightest_left:
                tightest_limit, tightest_left = limit, left
        if allowed:
            for key, limit in budgets:
                if limit > 0:
                    windows.add(key)
        if tightest_limit is None or tightest_left is None:
            return True, [], 0
        headers = [
            (b"x-ratelimit-limit", str(tightest_limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, tightest_left)).encode()),
            (b"x-ratelimit-reset", str((window + 1) * WINDOW_SECONDS).encode()),
        ]
        return allowed, headers, retry_in

    # --- failed authentication ---------------------------------------------------

    def _failure_keys(self, address: str | None, secret: str) -> list[tuple]:
        keys = [("p", secret[:PREFIX_CHARS])] if secret else []
        if address:
            keys.append(("c", address))
        return keys

    def throttled(self, address: str | None, secret: str) -> int:
        """Seconds to wait when this address or token prefix failed too often (else 0):
        checked before the token is looked up, so a flood of bad tokens costs no query."""
        limit = self.limits.auth_failures
        if limit <= 0:
            return 0
        limit = self._share(limit)
        _, _, weight = self.failures.now()
        wait = 0
        for key in self._failure_keys(address, secret):
            if self.failures.used(key, weight) + 1 > limit:
                wait = max(wait, self.failures.wait(key, limit, weight))
        return wait

    def failed(self, address: str | None, secret: str) -> None:
        if self.limits.auth_failures > 0:
            self.failures.now()
            for key in self._failure_keys(address, secret):
                self.failures.add(key)
