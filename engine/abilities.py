"""Abilities that act, written as ChatBotKit writes them: the ability's `instruction`
holds a fenced action block, and the rest is free text for the model.

    Looks up the weather of a city.
    ```fetch
    GET https://api.example.com/weather?q=$[city! the city to look up]
    Authorization: ${SECRET_DEFAULT}
    ```

The fence's info string names the action and its options, `action[/key[=value]]...`
(```` ```dataset/search/id=ds_123 ````). The actions (ACTIONS):

- `fetch`: an HTTP request, written as a bare URL, a raw request (`METHOD URL
  [HTTP/1.1]`, header lines, a blank line, the body) or a YAML/JSON object (`url`,
  `method`, `headers`, `body`). It goes through the safe fetcher (engine/fetch.py:
  loopback and private addresses refused unless allowed, 10 s at most) and the model
  gets `{status, body}` (the body's text, at most RESULT_CHARS; a status outside 2xx
  adds `error`).
- `dataset/search`: searches the dataset `id` for the block's text (default: the
  model's `query`); the model gets the records.
- `bot/call`: asks the bot `id` (default: the ability's `botId`) the block's text
  (default: the model's `message`); the model gets the bot's answer.

Parameters are the model's to fill in: `$[name modifiers... description]`, where
`name!` is required, the modifiers are a type (`string`, `number`, `integer`,
`boolean`), `enum<a,b>`, `default<v>`, and an encoding (`euc`: URL-encoded, `js`: a
JSON value, quotes included); the rest is the description. They become the tool's
JSON Schema. Secrets are the account's: `${SECRET_<NAME>}` (the secret's name, upper
case, each run of other characters one `_`) and `${SECRET_DEFAULT}` (the ability's
`secretId`); each is put in formatted by its type (bearer: `Bearer <value>`, basic:
`Basic <base64>`). A fetch with the ability's secret and no secret reference sends it
as the Authorization header. They are filled in server-side, after the model has
spoken: the model never sees a value, a secret goes only to a host the ability names
(a URL whose host is a parameter gets no secret; a request with a secret follows no
redirect), and a value that comes back in an answer is masked before the model, a message or an event sees it.

Templates are filled in one pass, so a parameter's value is never read as a
parameter or a secret reference; a value put into a URL is percent-encoded and one
put into a header loses its line breaks, so the model cannot change where a request
goes or what it says beyond the values it was asked for.

Fenced blocks in a common language (json, yaml, text...) are examples for the
model, not actions; a block of any other kind is refused when the ability is saved
(`check`), so an unknown action is a 400 then, not a surprise at run time."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote

import msgspec
import yaml

from ..errors import BadRequest
from . import fetch as safe

RESULT_CHARS = 100_000  # of a fetched body given to the model
FETCH_BYTES = 512 * 1024  # read from a fetched answer at most
FETCH_TIMEOUT = 10.0  # seconds, for the whole request
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
METHODS = ("GET", "HEAD", "OPTIONS", *BODY_METHODS)
EXAMPLES = frozenset(  # fenced blocks that are examples for the model, not actions
    ("json", "yaml", "yml", "text", "txt", "markdown", "md", "html", "xml", "csv")
    + ("javascript", "js", "typescript", "ts", "python", "py", "sh", "bash", "sql")
)
ACTIONS = {
    "fetch": "an HTTP request (a URL, a raw request or a YAML object), through the safe fetcher",
    "dataset/search": "search a dataset (option id) for the block's text or the model's query",
    "bot/call": "ask a bot (option id, or the ability's botId) the block's text or the model's message",
}
EXAMPLES_OF = {  # what platform/action/list shows of each
    "fetch": [
        "```fetch\nGET https://api.example.com/weather?city=$[city! the city]\nAuthorization: ${SECRET_DEFAULT}\n```",
        "```fetch\nurl: https://api.example.com/orders\nmethod: POST\nbody:\n  count: $[count! number how many]\n```",
    ],
    "dataset/search": ["```dataset/search/id=<datasetId>\n$[query! what to look for]\n```"],
    "bot/call": ["```bot/call/id=<botId>\n$[question! what to ask the bot]\n```"],
}
OPTIONS_OF = {"fetch": [], "dataset/search": ["id"], "bot/call": ["id"]}  # the fence's key=value options
ALIASES = {"http/fetch": "fetch", "search/dataset": "dataset/search", "dataset/records/search": "dataset/search"}
ALIASES |= {"bot/ask": "bot/call", "bot/query": "bot/call"}

FENCE = re.compile(r"^```[ \t]*([^\s`]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_TYPES = {"string", "number", "integer", "boolean"}
_ENCODINGS = {"euc", "js", "ys"}
# one pass over a template: a parameter, or a secret reference
_TOKEN = re.compile(r"\$\[([^\]\n]{1,500})\]|\$\{SECRET_([A-Za-z0-9_]{1,100})\}")
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]{0,63})(!?)")
_URL = r"(?:\$\[[^\]\n]*\]|\S)+"  # a URL template: placeholders may hold spaces
_REQUEST_LINE = re.compile(rf"^({'|'.join(METHODS)})[ \t]+({_URL})(?:[ \t]+HTTP/\d(?:\.\d)?)?[ \t]*$", re.I)


class AbilityError(BadRequest):
    """What an action could not do; the model (or the execute route) gets the message."""


@dataclass(slots=True)
class Parameter:
    name: str
    required: bool = False
    type: str = "string"
    enum: list[str] | None = None
    default: str | None = None
    encoding: str | None = None  # euc | js | ys
    description: str = ""

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.description:
            out["description"] = self.description
        if self.enum:
            out["enum"] = self.enum
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclass(slots=True)
class Block:
    action: str  # one of ACTIONS
    options: dict[str, str]
    body: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    request: RequestTemplate | None = None  # a fetch block's request, read once when parsed

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.parameters.values()},
            "required": [p.name for p in self.parameters.values() if p.required],
        }


def _parameter(spec: str) -> Parameter:
    m = _NAME.match(spec.strip())
    if m is None:
        raise BadRequest(f"instruction: $[{spec[:50]}] does not start with a parameter name")
    p = Parameter(m.group(1), required=bool(m.group(2)))
    rest = spec.strip()[m.end() :]
    described: list[str] = []
    if "|" in rest:
        rest, description = rest.split("|", 1)
        described.append(description.strip())
    words = rest.split()
    for i, word in enumerate(words):
        if word in _TYPES:
            p.type = word
        elif word in _ENCODINGS:
            p.encoding = word
        elif word.startswith("enum<") and word.endswith(">"):
            p.enum = [v.strip() for v in word[5:-1].split(",") if v.strip()]
        elif word.startswith("default<") and word.endswith(">"):
            p.default = word[8:-1]
        else:
            described.insert(0, " ".join(words[i:]))
            break
    p.description = " ".join(d for d in described if d)
    return p


def parse(instruction: str) -> Block | None:
    """The instruction's action block, or None for an ability of free text only.
    Raises BadRequest for an unknown action or a block that cannot run."""
    for m in FENCE.finditer(instruction or ""):
        info, body = m.group(1).strip(), m.group(2)
        if not info or info.lower() in EXAMPLES:
            continue
        segments = [s for s in info.split("/") if s]
        path = "/".join(s for s in segments if "=" not in s).lower()
        options = dict(s.split("=", 1) for s in segments if "=" in s)
        action = ALIASES.get(path, path)
        if action not in ACTIONS:
            known = ", ".join(ACTIONS)
            raise BadRequest(f"instruction: the action {info[:60]!r} is not one botkit runs (it runs {known})")
        block = Block(action, options, body.strip())
        if action == "dataset/search" and not (options.get("id") or options.get("datasetId")):
            raise BadRequest("instruction: a dataset/search block names its dataset (```dataset/search/id=...)")
        if not block.body:
            block.body = {"dataset/search": "$[query! what to search for]", "bot/call": "$[message! what to ask]"}.get(
                action, ""
            )
        if action == "fetch" and not block.body:
            raise BadRequest("instruction: a fetch block holds the request (at least its URL)")
        for t in _TOKEN.finditer(block.body):
            if t.group(1) is not None:
                p = _parameter(t.group(1))
                block.parameters.setdefault(p.name, p)
        if action == "fetch":
            block.request = _request_template(block.body)  # a request it cannot read is a 400 now
        return block
    return None


def check(instruction: str) -> None:
    """For ability create and update (a body check): ValueError if the instruction's
    block cannot run."""
    try:
        parse(instruction)
    except BadRequest as exc:
        raise ValueError(exc.message) from None


def secret_names(block: Block) -> set[str]:
    """The secrets the block refers to ("DEFAULT" for the ability's own)."""
    return {t.group(2).upper() for t in _TOKEN.finditer(block.body) if t.group(2)}


def secret_key(name: str) -> str:
    """`${SECRET_<key>}` for a secret of this name."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def formatted(kind: str | None, value: str) -> str:
    """A secret's value as a request carries it."""
    if kind in ("bearer", "oauth") and not value.lower().startswith("bearer "):
        return f"Bearer {value}"
    if kind == "basic" and not value.lower().startswith("basic "):
        return "Basic " + base64.b64encode(value.encode()).decode()
    return value


# --- filling templates ------------------------------------------------------------


def _value(p: Parameter, arguments: dict[str, Any]) -> Any:
    value = arguments.get(p.name, p.default)
    if value is None:
        if p.required:
            raise AbilityError(f"the parameter {p.name!r} is required")
        return ""
    if p.type in ("number", "integer") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        try:
            value = float(str(value)) if p.type == "number" else int(str(value))
        except ValueError:
            raise AbilityError(f"the parameter {p.name!r} is a {p.type}, not {str(value)[:40]!r}") from None
    if p.type == "boolean" and not isinstance(value, bool):
        value = str(value).strip().lower() in ("true", "1", "yes")
    if p.enum and str(value) not in p.enum:
        raise AbilityError(f"the parameter {p.name!r} is one of {', '.join(p.enum)}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return msgspec.json.encode(value).decode()
    return str(value)


Secrets = dict[str, str]  # key (or "DEFAULT") -> formatted value


def fill(template: str, block: Block, arguments: dict[str, Any], secrets: Secrets, where: str = "body") -> str:
    """The template with parameters and secrets in, in one pass. `where`: "url" (values
    percent-encoded), "header" (line breaks dropped) or "body" (as the encoding says)."""

    def one(m: re.Match[str]) -> str:
        if m.group(2) is not None:
            key = m.group(2).upper()
            if key not in secrets:
                raise AbilityError(f"the secret {'of the ability' if key == 'DEFAULT' else key!r} has no value here")
            value = secrets[key]
            return quote(value, safe="") if where == "url" else value
        p = block.parameters[_parameter(m.group(1)).name]
        value = _value(p, arguments)
        if p.encoding == "js" or p.encoding == "ys":
            text = msgspec.json.encode(value).decode()
        else:
            text = _text(value)
        if where == "url" or p.encoding == "euc":
            return quote(text, safe="")
        if where == "header":
            return re.sub(r"[\r\n]+", " ", text)
        return text

    return _TOKEN.sub(one, template)


# --- fetch -------------------------------------------------------------------------


@dataclass(slots=True)
class RequestTemplate:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Any  # a template string, or a parsed YAML/JSON value whose strings are templates


def _request_template(text: str) -> RequestTemplate:
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    m = _REQUEST_LINE.match(first)
    if m:
        headers: list[tuple[str, str]] = []
        i = 1
        while i < len(lines) and lines[i].strip():
            name, sep, value = lines[i].partition(":")
            if not sep or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name.strip()):
                raise BadRequest(f"instruction: the fetch header line {lines[i][:60]!r} is not 'Name: value'")
            headers.append((name.strip(), value.strip()))
            i += 1
        return RequestTemplate(m.group(1).upper(), m.group(2), headers, "\n".join(lines[i + 1 :]).strip() or None)
    if len(lines) == 1 and re.fullmatch(rf"https?://{_URL}", first, re.I):
        return RequestTemplate("GET", first, [], None)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise BadRequest("instruction: a fetch block is a URL, a raw HTTP request or an object with a url")
    method = str(spec.get("method") or "GET").upper()
    if method not in METHODS:
        raise BadRequest(f"instruction: the fetch method {method[:20]!r} is not one of {', '.join(METHODS)}")
    raw_headers = spec.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadRequest("instruction: a fetch block's headers are an object")
    headers = [(str(k), _text(v)) for k, v in raw_headers.items()]
    return RequestTemplate(method, spec["url"], headers, spec.get("body"))


def _host_is_named(url: str) -> bool:
    """Whether the URL template's scheme and host are literal (no parameter in them)."""
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", url)
    return m is not None and "$[" not in m.group(1)


def _fill_value(value: Any, block: Block, arguments: dict[str, Any], secrets: Secrets) -> Any:
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\[([^\]\n]{1,500})\]", value.strip())
        if whole:  # a parameter standing alone keeps its type (a number stays a number)
            return _value(block.parameters[_parameter(whole.group(1)).name], arguments)
        return fill(value, block, arguments, secrets)
    if isinstance(value, dict):
        return {k: _fill_value(v, block, arguments, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_value(v, block, arguments, secrets) for v in value]
    return value


async def _fetch(block: Block, arguments: dict[str, Any], runtime: Runtime) -> Any:
    t = block.request
    assert t is not None  # parse() reads every fetch block's request
    named = secret_names(block)
    sending_default = runtime.has_default_secret and not named
    if (named or sending_default) and not _host_is_named(t.url):
        raise AbilityError("a secret is only sent to a host the ability names, not one a parameter gives")
    secrets = await runtime.secrets(named | ({"DEFAULT"} if sending_default else set()))
    url = fill(t.url, block, arguments, secrets, "url")
    headers = {name: fill(value, block, arguments, secrets, "header") for name, value in t.headers}
    if sending_default and "DEFAULT" in secrets and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = secrets["DEFAULT"]
    content: bytes | None = None
    if t.body is not None and t.method in BODY_METHODS:
        if isinstance(t.body, str):
            content = fill(t.body, block, arguments, secrets).encode()
        else:
            content = msgspec.json.encode(_fill_value(t.body, block, arguments, secrets))
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
    policy = replace(runtime.fetch_policy, total_timeout=min(runtime.fetch_policy.total_timeout, FETCH_TIMEOUT))
    if secrets:  # a secret may ride in any header: it is not followed to where a redirect points
        policy = replace(policy, max_redirects=0)
    try:
        async with safe.fetch(
            url, policy, max_bytes=FETCH_BYTES, headers=headers, method=t.method, content=content, any_status=True
        ) as response:
            body = await response.read()
            status = response.status
    except safe.FetchTooLarge:
        raise AbilityError(f"the answer is larger than {FETCH_BYTES} bytes") from None
    except safe.FetchTooManyRedirects:
        raise AbilityError("the request was redirected: one that carries a secret is not followed") from None
    except safe.FetchError as exc:  # its message names the host; masked all the same
        raise AbilityError(mask(exc.message, secrets.values())) from None
    text = body.decode("utf-8", "replace")
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + " [truncated]"
    result: dict[str, Any] = {"status": status, "body": text}
    if not 200 <= status < 300:
        result["error"] = f"Status code: {status}"
    return mask(result, secrets.values())


def mask(result: Any, values: Any) -> Any:
    """The result with every secret value in it replaced by `[secret]`."""
    hidden = sorted({v for v in values if len(v) >= 4} | {v.split(" ", 1)[1] for v in values if " " in v}, key=len)
    if not hidden:
        return result
    encoded = msgspec.json.encode(result).decode()
    for value in reversed(hidden):
        encoded = encoded.replace(msgspec.json.encode(value).decode()[1:-1], "[secret]")
    return msgspec.json.decode(encoded)


# --- running -----------------------------------------------------------------------


class Runtime(Protocol):
    """What an ability's actions reach beyond the engine (resources/completion/abilities.py)."""

    fetch_policy: safe.FetchPolicy
    has_default_secret: bool

    async def secrets(self, keys: set[str]) -> Secrets: ...

    async def search(self, dataset_id: str, query: str) -> list[dict[str, Any]]: ...

    async def ask(self, bot_id: str, message: str) -> str: ...


async def run(block: Block, arguments: Any, runtime: Runtime, *, bot_id: str | None = None) -> Any:
    """The block's action on the model's arguments, as the model gets its result."""
    if not isinstance(arguments, dict):
        names = list(block.parameters)
        if len(names) != 1:
            raise AbilityError("the arguments are a JSON object of the ability's parameters")
        arguments = {names[0]: arguments}
    if block.action == "fetch":
        return await _fetch(block, arguments, runtime)
    text = fill(block.body, block, arguments, {}).strip()
    if block.action == "dataset/search":
        dataset_id = block.options.get("id") or block.options["datasetId"]
        return {"records": await runtime.search(dataset_id, text)}
    target = block.options.get("id") or block.options.get("botId") or bot_id
    if not target:
        raise AbilityError("the ability names no bot to call (```bot/call/id=..., or its botId)")
    return {"text": await runtime.ask(target, text)}


def executor(block: Block, runtime: Runtime, bot_id: str | None = None) -> Callable[[Any], Awaitable[Any]]:
    async def execute(arguments: Any) -> Any:
        return await run(block, arguments, runtime, bot_id=bot_id)

    return execute
