"""Which models exist, how a model string names one, and the parameters it carries.

Model strings are written as the reference and the official SDK write them:
`name` or `name/param=value/...`, e.g. `gpt-4o-mini/temperature=0.2/maxTokens=500`.

The model list comes from the app's settings (config.py documents every variable;
create_app builds one Registry per app):
BOTKIT_MODEL_BASE_URL points at any OpenAI-compatible Chat Completions endpoint and
BOTKIT_MODELS names the models it serves (a comma-separated list, or JSON, or
`@/path/to/models.json`). With no provider configured, the one model is the embedded
retrieval responder (engine/responder.py), which needs no network and no weights."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import BadRequest
from .embeddings import LOCAL_MODEL
from .provider import EmbeddingsInfo, ModelInfo, Params, Timeouts

RETRIEVAL_MODEL = "botkit-retrieval-responder"

log = logging.getLogger("botkit.engine")
# One `/`-separated segment of a model name: providers use `/` (org/model), `@`, `:`, `.`, spaces.
_NAME_SEGMENT = re.compile(r"[^\s=/\x00-\x1f][^=/\x00-\x1f]{0,199}")
_PARAM = re.compile(r"^(\w+)=([^/\x00-\x1f]{0,200})$")
_ignored: set[str] = set()  # parameters botkit does not use, logged once each


RETRIEVAL = ModelInfo(
    name=RETRIEVAL_MODEL,
    provider="botkit",
    family="retrieval",
    max_tokens=16384,
    max_input_tokens=12288,
    max_output_tokens=4096,
    description=(
        "Built in, no network and no weights: not a generative model. It answers with the "
        "dataset records that best match the user's message, and says so when nothing matches."
    ),
)


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"-?\d{1,12}", raw):
        raise BadRequest(f"model: {name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequest(f"model: {name} must be from {lo} to {hi}, got {value}")
    return value


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    # As JavaScript writes numbers (the Node SDK's model helpers): 0.30000000000000004, 1e-7.
    if not re.fullmatch(r"-?\d{1,20}(?:\.\d{1,20})?(?:[eE][-+]?\d{1,3})?", raw):
        raise BadRequest(f"model: {name} must be a number, got {raw[:40]!r}")
    value = float(raw)
    if not lo <= value <= hi:
        raise BadRequest(f"model: {name} must be from {lo:g} to {hi:g}, got {raw}")
    return value


_SETTERS = {
    "maxTokens": ("max_tokens", lambda raw: _int("maxTokens", raw, 1, 10_000_000)),
    "temperature": ("temperature", lambda raw: _float("temperature", raw, 0, 2)),
    "frequencyPenalty": ("frequency_penalty", lambda raw: _float("frequencyPenalty", raw, -2, 2)),
    "presencePenalty": ("presence_penalty", lambda raw: _float("presencePenalty", raw, -2, 2)),
    "seed": ("seed", lambda raw: _int("seed", raw, -(2**53), 2**53)),
    "interactionMaxMessages": ("interaction_max_messages", lambda raw: _int("interactionMaxMessages", raw, 1, 10_000)),
}


def parse(model: str) -> tuple[str, Params]:
    """`name/param=value/...` → (name, Params); 400 naming what is wrong. The name is
    every segment before the first `param=value` (so `org/model` is a name).
    Parameters botkit does not use (e.g. the SDK model helpers' `region`) are
    accepted and ignored, logged once each."""
    segments = model.split("/")
    first = next((i for i, seg in enumerate(segments) if "=" in seg), len(segments))
    name, pairs = "/".join(segments[:first]), segments[first:]
    if not name or not all(_NAME_SEGMENT.fullmatch(seg) for seg in segments[:first]):
        raise BadRequest(f"model: {model[:80]!r} is not a model name (write `name` or `name/param=value/...`)")
    params = Params()
    seen = set()
    for pair in pairs:
        m = _PARAM.match(pair)
        if m is None:
            raise BadRequest(f"model: {pair[:60]!r} is not a param=value pair")
        key, raw = m.groups()
        if key not in _SETTERS:
            if key not in _ignored and len(_ignored) < 100:
                _ignored.add(key)
                log.info("model parameter %r is not used by botkit: ignored", key[:40])
            continue
        if key in seen:
            raise BadRequest(f"model: {key} is given twice")
        seen.add(key)
        attr, convert = _SETTERS[key]
        setattr(params, attr, convert(raw))
    return name, params


@dataclass
class Registry:
    models: dict[str, ModelInfo]
    default: str
    timeouts: Timeouts = Timeouts()
    configured: bool = False  # a provider is configured (else the embedded responder only)
    embeddings: EmbeddingsInfo | None = None

    def resolve(self, model: str | None) -> tuple[ModelInfo, Params, str]:
        """(the model to call, its params, the name the request asked for)."""
        if not model:
            return self.models[self.default], Params(), self.default
        name, params = parse(model)
        info = self.models.get(name)
        if info is None:
            if not self.configured:
                # Nothing but the embedded responder: it answers, and says which model
                # was asked for and is not configured.
                return self.models[self.default], params, name
            raise BadRequest(
                f"model: {name!r} is not available here "
                f"(platform/model/list lists the models; {', '.join(list(self.models)[:10])})"
            )
        return info, params, name


def _family(name: str) -> str:
    m = re.match(r"[A-Za-z]+\d*(?:\.\d+)?", name)
    return (m.group() if m else name).lower()


def _provider(base_url: str) -> str:
    host = urlsplit(base_url).hostname or ""
    return "openai" if host.endswith("openai.com") else "openai-compatible"


def _entries(raw: str) -> list[dict[str, Any]]:
    raw = raw.strip()
    if raw.startswith("@"):
        with open(raw[1:], encoding="utf-8") as f:
            raw = f.read().strip()
    if raw.startswith("["):
        data = json.loads(raw)
        if not isinstance(data, list) or not all(isinstance(e, dict) and e.get("name") for e in data):
            raise ValueError("BOTKIT_MODELS: a JSON list of objects with a name")
        return data
    return [{"name": part.strip()} for part in raw.split(",") if part.strip()]


def _model(e: dict[str, Any], s: Settings, base_url: str | None) -> ModelInfo:
    url = (e.get("baseUrl") or base_url or "").rstrip("/") or None
    if url is None:
        raise ValueError(f"model {e['name']!r}: no baseUrl and no BOTKIT_MODEL_BASE_URL")
    max_tokens = int(e.get("maxTokens", s.model_max_tokens))
    max_out = int(e.get("maxOutputTokens", min(s.model_max_output_tokens, max_tokens // 2)))
    name = str(e["name"])
    if "=" in name or not all(_NAME_SEGMENT.fullmatch(seg) for seg in name.split("/")):
        raise ValueError(f"model name {name!r}: no `=`, no empty `/` segments, no control characters")
    return ModelInfo(
        name=name,
        provider=e.get("provider") or _provider(url),
        family=e.get("family") or _family(name),
        max_tokens=max_tokens,
        max_input_tokens=int(e.get("maxInputTokens", max_tokens - max_out)),
        max_output_tokens=max_out,
        upstream=e.get("model") or name,
        base_url=url,
        api_key=e.get("apiKey") or s.model_api_key or None,
        description=e.get("description") or f"{name} served by {urlsplit(url).netloc}",
        vision=bool(e.get("vision", False)),
    )


def _embeddings(s: Settings, base_url: str | None) -> EmbeddingsInfo | None:
    """Unset or the built-in model's name: the built-in model; `off`: none; any other
    name: that model at BOTKIT_EMBEDDINGS_BASE_URL (or the models' endpoint)."""
    name = s.embeddings_model or LOCAL_MODEL
    if name.lower() in ("off", "none"):
        return None
    if name == LOCAL_MODEL and not s.embeddings_base_url:
        return EmbeddingsInfo(model=LOCAL_MODEL)
    url = (s.embeddings_base_url or base_url or "").rstrip("/")
    if not url:
        raise ValueError(
            f"BOTKIT_EMBEDDINGS_MODEL is {name}, which is not built in ({LOCAL_MODEL} is), "
            "and neither BOTKIT_EMBEDDINGS_BASE_URL nor BOTKIT_MODEL_BASE_URL is set"
        )
    return EmbeddingsInfo(model=name, base_url=url, api_key=s.embeddings_api_key or s.model_api_key)


def from_settings(s: Settings) -> Registry:
    """The registry the app's settings describe (config.py names every variable)."""
    base_url = (s.model_base_url or "").rstrip("/") or None
    models: dict[str, ModelInfo] = {}
    for e in _entries(s.models or ""):
        info = _model(e, s, base_url)
        models[info.name] = info
    if base_url and not models:
        raise ValueError("BOTKIT_MODEL_BASE_URL is set but BOTKIT_MODELS names no model")
    configured = bool(models)
    if not configured:
        models[RETRIEVAL.name] = RETRIEVAL
    default = s.model_default or next(iter(models))
    if default not in models:
        raise ValueError(f"BOTKIT_MODEL_DEFAULT {default!r} is not one of BOTKIT_MODELS")
    return Registry(
        models=models,
        default=default,
        configured=configured,
        embeddings=_embeddings(s, base_url),
        timeouts=Timeouts(connect=s.model_connect_timeout, read=s.model_read_timeout, retries=s.model_retries),
    )
