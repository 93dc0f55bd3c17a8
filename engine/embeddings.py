"""Embeddings for dataset search, from any OpenAI-compatible `/embeddings` endpoint
(BOTKIT_EMBEDDINGS_MODEL, BOTKIT_EMBEDDINGS_BASE_URL, BOTKIT_EMBEDDINGS_API_KEY).

Stored in PostgreSQL with pgvector (table record_embeddings, made by migration 0003
when the extension is available). A record's embedding is computed the first time
a search of its dataset runs after the record was created or its text changed (the
text's md5 is kept with it); until then, and whenever the endpoint fails, search
is full-text + trigram alone, so a record is searchable the moment it is created."""

from __future__ import annotations

import asyncio
import logging

import httpx
import msgspec

from ..errors import ModelError, ModelUnavailable
from . import http
from .provider import EmbeddingsInfo, Timeouts

log = logging.getLogger("botkit.engine")
MAX_CHARS = 8000  # per text sent (about the 8k-token input of common embedding models)


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Answer(msgspec.Struct):
    data: list[_Item]


_decode = msgspec.json.Decoder(_Answer).decode


async def embed(info: EmbeddingsInfo, texts: list[str], bounds: Timeouts) -> list[list[float]]:
    headers = {"Content-Type": "application/json"}
    if info.api_key:
        headers["Authorization"] = f"Bearer {info.api_key}"
    body = msgspec.json.encode({"model": info.model, "input": [t[:MAX_CHARS] or " " for t in texts]})
    timeout = http.timeout(bounds)
    retries = bounds.retries
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await http.client().post(
                f"{info.base_url}/embeddings", content=body, headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if attempt > retries:
                raise ModelUnavailable(f"the embeddings endpoint cannot be reached ({type(exc).__name__})") from None
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
            continue
        except httpx.HTTPError as exc:
            raise ModelError(f"the embeddings request failed ({type(exc).__name__})") from None
        if response.status_code >= 500 and attempt <= retries:
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
            continue
        if response.status_code != 200:
            raise ModelError(f"the embeddings endpoint answered {response.status_code}")
        try:
            items = sorted(_decode(response.content).data, key=lambda i: i.index)
        except msgspec.DecodeError:
            raise ModelError("the embeddings endpoint answered something that is not embeddings") from None
        if len(items) != len(texts):
            raise ModelError(f"the embeddings endpoint answered {len(items)} embeddings for {len(texts)} texts")
        return [i.embedding for i in items]


def vector_literal(values: list[float]) -> str:
    """pgvector's text form, for `$n::vector`."""
    return "[" + ",".join(repr(float(v)) for v in values) + "]"
