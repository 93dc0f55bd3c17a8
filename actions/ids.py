"""Resource ids: opaque, time-ordered strings, so the last id of a page is the cursor.

26 characters of Crockford base32 (lower case): 48 bits of epoch milliseconds, then
80 bits that are random per millisecond and incremented within it, so ids made by
one process are strictly increasing and ids from different processes interleave in
time order (a ULID, lower-cased)."""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0

ID_PATTERN = r"^[0-9a-hjkmnp-tv-z]{26}$"
_ID_RE = re.compile(ID_PATTERN)


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id() -> str:
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >> _RANDOM_BITS:  # 2**80 ids in one ms: borrow the next ms
                ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms, _last_rand = ms, rand
    return _encode((ms << _RANDOM_BITS) | rand, 26)


def is_id(value: str) -> bool:
    return _ID_RE.match(value) is not None


def floor_id(ms: int) -> str:
    """The smallest id made in millisecond `ms`: `id >= floor_id(t)` means created at or after t."""
    return _encode(ms << _RANDOM_BITS, 26)
