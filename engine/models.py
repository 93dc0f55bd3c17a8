"""Which models exist, how a model string names one, and the parameters it carries.

Model strings are written as the reference and the official SDK write them:
`name` or `name/param=value/...`, e.g. `gpt-4o-mini/temperature=0.2/maxTokens=500`.

The model list comes from the environment (config.py documents every variable):
BOTKIT_MODEL_BASE_URL points at any OpenAI-compatible Chat Completions endpoint and
BOTKIT_MODELS names the models it serves (a comma-separated list, or JSON, or
`@/path/to/models.json`). With no provider configured, the one model is the embedded
retrieval responder (engine/retrieval.py), which needs no network and no weights."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadRequest

RETRIEVAL_MODEL = "botkit-retrieval-responder"

_NAME = re.compile(r"^[\w.:\-]{1,200}$")
_PARAM = re.compile(r"^(\w+)=([\w.\-]{1,64})$")


@dataclass(frozen=True)
class ModelInfo:
    name: str                     # the name requests use
    provider: str                 # "botkit", "openai", "openai-compatible", ...
    family: str
    max_tokens: int               # the context window (input + output)
    max_input_tokens: int
    max_output_tokens: int
    upstream: str = ""            # the model name sent to the provider
    base_url: str | None = None   # None: the embedded retrieval responder
    api_key: str | None = None
    description: str = ""
    created_at: int = 0

    @property
    def embedded(self) -> bool:
        return self.base_url is None


RETRIEVAL = ModelInfo(
    name=RETRIEVAL_MODEL, provider="botkit", family="retrieval", max_tokens=16384,
    max_input_tokens=12288, max_output_tokens=4096,
    description=("Built in, no network and no weights: not a generative model. It answers with the "
                 "dataset records that best match the user's message, and says so when nothing matches."))


@dataclass
class Params:
    """What a model string sets (None: the model's default)."""
    max_tokens: int | None = None
    temperature: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    interaction_max_messages: int | None = None


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"-?\d{1,12}", raw):
        raise BadRequest(f"model: {name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequest(f"model: {name} must be from {lo} to {hi}, got {value}")
    return value


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    if not re.fullmatch(r"-?\d{1,6}(?:\.\d{1,12})?", raw):
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
    "seed": ("seed", lambda raw: _int("seed", raw, -(2 ** 53), 2 ** 53)),
    "interactionMaxMessages": ("interaction_max_messages",
                               lambda raw: _int("interactionMaxMessages", raw, 1, 10_000)),
}


def parse(model: str) -> tuple[str, Params]:
    """`name/param=value/...` → (name, Params); 400 naming what is wrong."""
    name, *pairs = model.split("/")
    if not _NAME.match(name):
        raise BadRequest(f"model: {model[:80]!r} is not a model name "
                         "(write `name` or `name/param=value/...`)")
    params = Params()
    seen = set()
    for pair in pairs:
        m = _PARAM.match(pair)
        if m is None:
            raise BadRequest(f"model: {pair[:60]!r} is not a param=value pair")
        key, raw = m.groups()
        if key not in _SETTERS:
            raise BadRequest(f"model: unknown parameter {key[:40]!r} (known: {', '.join(_SETTERS)})")
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
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 2
    configured: bool = False  # a provider is configured (else the embedded responder only)
    embeddings: Any = None    # engine.embeddings.EmbeddingsInfo when configured

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
            raise BadRequest(f"model: {name!r} is not available here "
                             f"(platform/model/list lists the models; {', '.join(list(self.models)[:10])})")
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


def from_settings(s) -> Registry:
    """The registry the environment describes (see config.py)."""
    base_url = (getattr(s, "model_base_url", None) or "").rstrip("/") or None
    entries = _entries(getattr(s, "models", "") or "")
    window = int(getattr(s, "model_max_tokens", 8192))
    out_default = int(getattr(s, "model_max_output_tokens", 1024))
    models: dict[str, ModelInfo] = {}
    for e in entries:
        url = (e.get("baseUrl") or base_url or "").rstrip("/") or None
        if url is None:
            raise ValueError(f"model {e['name']!r}: no baseUrl and no BOTKIT_MODEL_BASE_URL")
        max_tokens = int(e.get("maxTokens", window))
        max_out = int(e.get("maxOutputTokens", min(out_default, max_tokens // 2)))
        name = str(e["name"])
        if not _NAME.match(name):
            raise ValueError(f"model name {name!r}: letters, digits and . : - _ only")
        models[name] = ModelInfo(
            name=name, provider=e.get("provider") or _provider(url), family=e.get("family") or _family(name),
            max_tokens=max_tokens, max_input_tokens=int(e.get("maxInputTokens", max_tokens - max_out)),
            max_output_tokens=max_out, upstream=e.get("model") or name, base_url=url,
            api_key=e.get("apiKey") or getattr(s, "model_api_key", None) or None,
            description=e.get("description") or f"{name} served by {urlsplit(url).netloc}")
    if base_url and not models:
        raise ValueError("BOTKIT_MODEL_BASE_URL is set but BOTKIT_MODELS names no model")
    configured = bool(models)
    if not configured:
        models[RETRIEVAL.name] = RETRIEVAL
    default = getattr(s, "model_default", None) or next(iter(models))
    if default not in models:
        raise ValueError(f"BOTKIT_MODEL_DEFAULT {default!r} is not one of BOTKIT_MODELS")
    embeddings = None
    if getattr(s, "embeddings_model", None):
        from .embeddings import EmbeddingsInfo
        url = (getattr(s, "embeddings_base_url", None) or base_url or "").rstrip("/")
        if not url:
            raise ValueError("BOTKIT_EMBEDDINGS_MODEL is set but neither BOTKIT_EMBEDDINGS_BASE_URL "
                             "nor BOTKIT_MODEL_BASE_URL")
        embeddings = EmbeddingsInfo(model=s.embeddings_model, base_url=url,
                                    api_key=getattr(s, "embeddings_api_key", None) or getattr(s, "model_api_key", None))
    return Registry(models=models, default=default, configured=configured, embeddings=embeddings,
                    connect_timeout=float(getattr(s, "model_connect_timeout", 5.0)),
                    read_timeout=float(getattr(s, "model_read_timeout", 60.0)),
                    retries=int(getattr(s, "model_retries", 2)))


_current: Registry | None = None


def registry() -> Registry:
    global _current
    if _current is None:
        from ..config import settings
        _current = from_settings(settings())
    return _current


def use(new: Registry | None) -> Registry | None:
    """Replace the registry (tests, embedding apps); returns the previous one."""
    global _current
    previous, _current = _current, new
    return previous


__all__ = ["ModelInfo", "Params", "Registry", "RETRIEVAL", "RETRIEVAL_MODEL", "parse", "registry", "use",
           "from_settings", "replace"]
