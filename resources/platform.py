"""The platform catalogues that describe this server, from code and configuration, not
the database: platform/model/list (the models it can call, engine/models.py; a model's
id is its name, what a model string names), platform/action/list (the action kinds
abilities can run, engine/abilities.py; an action's id is its kind), platform/ability/*
(ready-made abilities built from those kinds), platform/secret/* (the secret types an
ability's request can carry), platform/doc/* (the sections of botkit's README), and
platform/report/* (reports over the account's own rows, the one part that reads the
database). The hosted platform's other content catalogues (examples, guides, manuals,
tutorials, magic prompts) are its own content: botkit has none, and serves none."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ..actions.base import Action, Call, Context, Raw, Stream, now_ms
from ..actions.fields import Body, Item
from ..actions.ids import floor_id
from ..actions.query import ListQuery
from ..actions.stream import CSV, asks_csv, csv_rows, item_lines, one
from ..engine import abilities
from ..engine.models import Registry
from ..engine.provider import ModelInfo
from ..errors import NotFound


class PlatformModel(Item):
    name: str
    provider: str
    family: str
    type: Literal["language"]  # the kinds the SDKs know: decision, image, language, rerank, video
    default: bool
    max_tokens: int
    max_input_tokens: int
    max_output_tokens: int
    meta: dict
    description: str | None = None


class ModelListQuery(ListQuery, kw_only=True):
    cursor: (
        Annotated[str, msgspec.Meta(max_length=256, description="The id of the last item of the previous page")] | None
    ) = None


class PlatformModelList(msgspec.Struct):
    items: list[PlatformModel]
    cursor: str  # "" on an empty page, as every list


def _item(m: ModelInfo, default: str) -> PlatformModel:
    return PlatformModel(
        id=m.name,
        created_at=m.created_at,
        updated_at=m.created_at,
        name=m.name,
        provider=m.provider,
        family=m.family,
        type="language",
        default=m.name == default,
        max_tokens=m.max_tokens,
        max_input_tokens=m.max_input_tokens,
        max_output_tokens=m.max_output_tokens,
        meta={"default": m.name == default, "embedded": m.embedded, "vision": m.vision},
        description=m.description or None,
    )


def _select(items: list[Any], q: ModelListQuery) -> list[Any]:
    """A catalogue's items in id order, after the cursor, matching the meta filters (as strings)."""
    items = sorted(items, key=lambda i: i.id, reverse=q.desc)
    if q.meta:
        items = [i for i in items if all(str(i.meta.get(k)).lower() == v.lower() for k, v in q.meta.items())]
    if q.cursor is not None:
        items = [i for i in items if (i.id < q.cursor if q.desc else i.id > q.cursor)]
    return items


class ListCatalogue(Action):
    """A list of what the server itself is (`items`), paged and filtered as every list."""

    method = "GET"
    tag = "Platform"
    query = ModelListQuery

    def items(self, ctx: Context) -> list[Any]:
        raise NotImplementedError

    async def run(self, ctx: Context, call: Call) -> Any:
        q: ModelListQuery = call.query
        items = _select(self.items(ctx), q)
        if call.jsonl:
            return Stream(one(item_lines(items)))
        page = items[: q.take]
        assert self.response is not None  # each catalogue names its list struct
        return self.response(items=page, cursor=page[-1].id if page else "")


class ListPlatformModels(ListCatalogue):
    summary = "List the models this server offers (from its configuration)"
    response = PlatformModelList
    item = PlatformModel

    def items(self, ctx: Context) -> list[Any]:
        models: Registry = ctx.services.models
        return [_item(m, models.default) for m in models.models.values()]


class PlatformAction(Item):
    name: str
    description: str
    examples: list[str]
    meta: dict


class PlatformActionList(msgspec.Struct):
    items: list[PlatformAction]
    cursor: str


ACTION_KINDS = [
    PlatformAction(
        id=kind,
        created_at=0,
        updated_at=0,
        name=kind,
        description=description,
        examples=abilities.EXAMPLES_OF[kind],
        meta={
            "options": abilities.OPTIONS_OF[kind],
            "aliases": sorted(a for a, k in abilities.ALIASES.items() if k == kind),
        },
    )
    for kind, description in abilities.ACTIONS.items()
]


class ListPlatformActions(ListCatalogue):
    summary = "List the action kinds an ability's instruction can hold (the ones botkit runs)"
    response = PlatformActionList
    item = PlatformAction

    def items(self, ctx: Context) -> list[Any]:
        return ACTION_KINDS


# --- search: a simple, bounded ranking over a catalogue's text ----------------------

SEARCH_TERMS = 16  # the words of a query that count
EXCERPT_CHARS = 300
_WORD = re.compile(r"\w+")


class CatalogueSearch(Body):
    search: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, description="The words to look for")]
    take: Annotated[int, msgspec.Meta(ge=1, le=100, description="How many results at most")] = 10


def _terms(text: str) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:SEARCH_TERMS]


def _excerpt(text: str, terms: list[str]) -> str:
    """The first line of `text` holding a term (else its first line), at most EXCERPT_CHARS."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(t in line.lower() for t in terms):
            return line[:EXCERPT_CHARS]
    return lines[0][:EXCERPT_CHARS] if lines else ""


def rank(items: list[Any], search: str, take: int, fields: Any) -> list[tuple[Any, float, str]]:
    """(item, score, excerpt) of the best `take` items: each word of the query counts
    once, by the heaviest of the item's fields (`fields(item)`: (text, weight) pairs,
    the last one the excerpt's source) holding a word that starts with it; the score is
    that over the most there could be (0..1). Items holding no word are left out."""
    terms = _terms(search)
    found = []
    for item in items:
        texts = fields(item)
        words = [(set(w.lower() for w in _WORD.findall(text)), weight) for text, weight in texts]
        best = max(weight for _, weight in texts)
        hit = sum(max((w for ws, w in words if any(x.startswith(t) for x in ws)), default=0) for t in terms)
        if hit:
            found.append((item, round(hit / (best * len(terms)), 4), _excerpt(texts[-1][0], terms)))
    found.sort(key=lambda f: (-f[1], f[0].id))
    return found[:take]


class SearchCatalogue(Action):
    """A catalogue's items ranked by a query's words (`found` makes a result)."""

    tag = "Platform"
    body = CatalogueSearch

    def items(self) -> list[Any]:
        raise NotImplementedError

    def fields(self, item: Any) -> list[tuple[str, int]]:
        return [(item.name, 2), (item.description, 1)]

    def found(self, item: Any, score: float, excerpt: str) -> Any:
        raise NotImplementedError

    async def run(self, ctx: Context, call: Call) -> Any:
        body: CatalogueSearch = call.body
        assert self.response is not None
        ranked = rank(self.items(), body.search, body.take, self.fields)
        return self.response(items=[self.found(item, score, excerpt) for item, score, excerpt in ranked])


def _as(result: type, item: Any, **extra: Any) -> Any:
    """A catalogue item as its search result struct (the item's fields and `extra`)."""
    return result(**msgspec.structs.asdict(item), **extra)


# --- abilities: ready-made ones, built from the action kinds botkit runs -------------


class PlatformAbility(Item):
    name: str
    description: str
    instruction: str  # what a skillset ability copies (it holds the action block)
    schema: dict  # the parameters the instruction asks the model for, as the runtime reads them
    icon: str
    tags: list[str]
    meta: dict
    setup: str | None = None  # what to change before it runs


class PlatformAbilityList(msgspec.Struct):
    items: list[PlatformAbility]
    cursor: str


class PlatformAbilityFound(PlatformAbility, kw_only=True):
    score: float
    excerpt: str


class PlatformAbilitySearchResults(msgspec.Struct):
    items: list[PlatformAbilityFound]


def _ability(id: str, name: str, description: str, instruction: str, icon: str, setup: str | None) -> PlatformAbility:
    block = abilities.parse(instruction)  # each is one the runtime runs, checked at import
    assert block is not None
    return PlatformAbility(
        id=id,
        created_at=0,
        updated_at=0,
        name=name,
        description=description,
        instruction=instruction,
        schema=block.schema(),
        icon=icon,
        tags=[block.action, *sorted(p.name for p in block.parameters.values())],
        meta={"action": block.action},
        setup=setup,
    )


ABILITIES = [
    _ability(
        "fetch-web-page",
        "Read a web page",
        "Fetches the page at an address the model gives and hands it the page's text to read (public addresses only).",
        "Reads the web page at an address the user gives and answers from its text.\n"
        "```fetch\nGET $[url! the page's full address, https://...]\n```",
        "globe",
        None,
    ),
    _ability(
        "call-json-api",
        "Call a JSON API with a secret",
        "Sends a GET request to one API with the ability's secret as its Authorization header and gives the "
        "model the answer.",
        "Looks a term up in the API and answers from what it returns.\n"
        "```fetch\nGET https://api.example.com/search?q=$[query! what to look up]\n"
        "Authorization: ${SECRET_DEFAULT}\nAccept: application/json\n```",
        "plug",
        "Replace https://api.example.com/search with your API's address and give the ability a secret (secretId): "
        "it goes only to that host, formatted by its type (platform/secret/list).",
    ),
    _ability(
        "post-to-webhook",
        "Send a message to a webhook",
        "Posts a JSON object with the model's text to a webhook (a chat channel, an automation).",
        "Sends a short notification when the user asks for someone to be told.\n"
        "```fetch\nurl: https://hooks.example.com/notify\nmethod: POST\nbody:\n  text: $[text! the message to send]\n```",
        "bell",
        "Replace https://hooks.example.com/notify with your webhook's address.",
    ),
    _ability(
        "search-dataset",
        "Search a dataset",
        "Searches one of the account's datasets for the model's query and gives it the matching records.",
        "Searches the knowledge base for records about the user's question.\n"
        "```dataset/search/id=DATASET_ID\n$[query! what to look for]\n```",
        "search",
        "Replace DATASET_ID with the id of one of your datasets.",
    ),
    _ability(
        "ask-another-bot",
        "Ask another bot",
        "Asks another of the account's bots a question and gives the model its answer.",
        "Asks the specialist bot when a question is in its field, and relays its answer.\n"
        "```bot/call\n$[question! what to ask the bot]\n```",
        "robot",
        "Set the ability's botId to the bot to ask (or write ```bot/call/id=BOT_ID).",
    ),
]


class ListPlatformAbilities(ListCatalogue):
    summary = "List ready-made abilities (instructions a skillset ability can copy, all of kinds botkit runs)"
    response = PlatformAbilityList
    item = PlatformAbility

    def items(self, ctx: Context) -> list[Any]:
        return ABILITIES


class SearchPlatformAbilities(SearchCatalogue):
    summary = "Search the ready-made abilities by name and description"
    response = PlatformAbilitySearchResults

    def items(self) -> list[Any]:
        return ABILITIES

    def found(self, item: Any, score: float, excerpt: str) -> Any:
        return _as(PlatformAbilityFound, item, score=score, excerpt=excerpt)


# --- secrets: the types an ability's request can carry ------------------------------


class PlatformSecret(Item):
    name: str
    description: str
    type: str
    kind: str
    tags: list[str]
    meta: dict
    setup: str | None = None


class PlatformSecretList(msgspec.Struct):
    items: list[PlatformSecret]
    cursor: str


class PlatformSecretFound(PlatformSecret, kw_only=True):
    score: float
    excerpt: str


class PlatformSecretSearchResults(msgspec.Struct):
    items: list[PlatformSecretFound]


_PERSONAL = " A personal secret (kind personal, with a contactId) is that contact's own value."


def _secret(type_: str, name: str, description: str, sent_as: str) -> PlatformSecret:
    return PlatformSecret(
        id=type_,
        created_at=0,
        updated_at=0,
        name=name,
        description=description,
        type=type_,
        kind="shared",
        tags=[type_],
        meta={"sentAs": sent_as, "kinds": ["shared", "personal"]},
        setup="secret/create with this type and the value; an ability refers to it as its secretId "
        "(${SECRET_DEFAULT}) or by name (${SECRET_<NAME>})." + _PERSONAL,
    )


# as engine/abilities.py `formatted` puts each into a request; the reference's template and
# reference types are stored but not expanded by botkit (they would be sent as plain)
SECRETS = [
    _secret("plain", "Plain value", "A value put into the request exactly as stored (an API key header).", "<value>"),
    _secret(
        "bearer", "Bearer token", "A token sent as `Bearer <value>` (unless it already starts so).", "Bearer <value>"
    ),
    _secret(
        "basic",
        "Basic credentials",
        "`user:password`, sent as `Basic <base64>` (unless it already starts so).",
        "Basic <base64 of value>",
    ),
    _secret(
        "oauth",
        "OAuth access token",
        "An access token sent as `Bearer <value>`: given as the value, or obtained by secret/{id}/authenticate "
        "(OAuth 2.0 authorization code with PKCE; config: authorizeUrl, tokenUrl, clientId, scope). It is not refreshed.",
        "Bearer <value>",
    ),
    _secret("jwt", "JSON Web Token", "A signed token put into the request exactly as stored.", "<value>"),
]


class ListPlatformSecrets(ListCatalogue):
    summary = "List the secret types an ability's request can carry, and how each is sent"
    response = PlatformSecretList
    item = PlatformSecret

    def items(self, ctx: Context) -> list[Any]:
        return SECRETS


class SearchPlatformSecrets(SearchCatalogue):
    summary = "Search the secret types by name and description"
    response = PlatformSecretSearchResults

    def items(self) -> list[Any]:
        return SECRETS

    def found(self, item: Any, score: float, excerpt: str) -> Any:
        return _as(PlatformSecretFound, item, score=score, excerpt=excerpt)


# --- docs: the sections of botkit's README -------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"  # the package root is the repository's


class PlatformDoc(Item):
    name: str
    description: str
    category: str  # the top-level section it is in
    tags: list[str]
    index: int  # its place in the README
    link: str  # where its content is served
    meta: dict


class PlatformDocContent(PlatformDoc, kw_only=True):
    content: str  # the section's markdown


class PlatformDocList(msgspec.Struct):
    items: list[PlatformDoc]
    cursor: str


class PlatformDocFound(PlatformDoc, kw_only=True):
    score: float
    excerpt: str


class PlatformDocSearchResults(msgspec.Struct):
    items: list[PlatformDocFound]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _summary(markdown: str) -> str:
    """The first sentence of a section's first paragraph of prose."""
    prose = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.strip() and not line.startswith(("#", "|", "-", "(")):
            prose.append(line.strip())
        elif prose:
            break
    text = " ".join(prose)
    end = text.find(". ")
    return (text[: end + 1] if end >= 0 else text)[:EXCERPT_CHARS]


def readme_docs(text: str) -> list[PlatformDocContent]:
    """One doc per `##` and `###` section (the text before the first is the overview)."""
    sections: list[tuple[str, str, list[str]]] = [("botkit", "botkit", [])]  # (name, category, lines)
    category, fenced = "botkit", False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#{2,3}) (.+)", line)
        if heading is None:
            sections[-1][2].append(line)
            continue
        name = heading.group(2).strip()
        category = name if heading.group(1) == "##" else category
        sections.append((name, category, []))
    docs: list[PlatformDocContent] = []
    ids: set[str] = set()
    for index, (name, category, lines) in enumerate(sections):
        id_, n = _slug(name), 2
        while id_ in ids:
            id_, n = f"{_slug(name)}-{n}", n + 1
        ids.add(id_)
        content = "\n".join(lines).strip()
        if name == "botkit":
            content = re.sub(r"^# .*\n+", "", content)
        docs.append(
            PlatformDocContent(
                id=id_,
                created_at=0,
                updated_at=0,
                name=name,
                description=_summary(content),
                category=category,
                tags=["readme"],
                index=index,
                link=f"/v1/platform/doc/{id_}/fetch",
                meta={},
                content=content,
            )
        )
    return docs


DOCS = readme_docs(README.read_text(encoding="utf-8")) if README.is_file() else []
_DOC = {d.id: d for d in DOCS}
_DOC_LIST = [PlatformDoc(**{k: v for k, v in msgspec.structs.asdict(d).items() if k != "content"}) for d in DOCS]


class ListPlatformDocs(ListCatalogue):
    summary = "List the sections of botkit's README, its documentation"
    response = PlatformDocList
    item = PlatformDoc

    def items(self, ctx: Context) -> list[Any]:
        return _DOC_LIST


class SearchPlatformDocs(SearchCatalogue):
    summary = "Search the README's sections by their words"
    response = PlatformDocSearchResults

    def items(self) -> list[Any]:
        return DOCS

    def fields(self, item: Any) -> list[tuple[str, int]]:
        return [(item.name, 3), (item.description, 2), (item.content, 1)]

    def found(self, item: Any, score: float, excerpt: str) -> Any:
        fields = {k: v for k, v in msgspec.structs.asdict(item).items() if k != "content"}
        return PlatformDocFound(**fields, score=score, excerpt=excerpt)


class FetchPlatformDoc(Action):
    method = "GET"
    tag = "Platform"
    summary = "Fetch a section of botkit's README, with its markdown"
    response = PlatformDocContent

    async def run(self, ctx: Context, call: Call) -> Any:
        doc = _DOC.get(call.params["docId"])
        if doc is None:
            raise NotFound("doc not found")
        return doc


# --- reports: the account's own rows, counted per UTC day ----------------------------

DAY_MS = 86_400_000


class PlatformReport(Item):
    name: str
    description: str
    meta: dict  # `input`: what generate takes


class PlatformReportList(msgspec.Struct):
    items: list[PlatformReport]
    cursor: str


class ReportInput(Body):
    period_days: Annotated[int, msgspec.Meta(ge=1, le=366, description="Days up to and including today (UTC)")] = 30


class ReportPoint(msgspec.Struct):
    date: str  # YYYY-MM-DD, UTC
    total: int


class ReportResult(msgspec.Struct, rename="camel", omit_defaults=True):
    """The period's total, its days (every one, zeros too), and the change against the
    period before it in percent (absent when that one had none)."""

    value: int
    period: str  # "<periodDays>d"
    breakdown: list[ReportPoint]
    change: float | None = None


# Each report is one parameterised query: $1 the account, $2 where the period begins,
# an id bound (ids are time-ordered: the (account_id, id) index serves it) or ms (usage's
# (account_id, created_at) index); it answers (day, total) rows.
_BY_ID = "SELECT created_at / 86400000 AS day, count(*) AS total FROM {table} WHERE account_id = $1 AND id >= $2"
_MESSAGES = _BY_ID.format(table="messages")
REPORTS: dict[str, tuple[PlatformReport, str, bool]] = {}  # id -> (item, SQL, by id)


def _report(id: str, name: str, description: str, sql: str, by_id: bool = True) -> None:
    item = PlatformReport(
        id=id,
        created_at=0,
        updated_at=0,
        name=name,
        description=description,
        meta={"input": {"periodDays": "days up to and including today (1-366, default 30)"}},
    )
    REPORTS[id] = (item, sql + " GROUP BY 1", by_id)


# the ids are the hosted platform's for the same reports (the Node SDK's generateTyped knows them)
_report(
    "clr3m5n8k000508jq2j9k0l6f",
    "Total conversations",
    "Conversations started per day",
    _BY_ID.format(table="conversations"),
)
_report("clr3m5n8k000608jq3k0l1m7g", "Total messages", "Messages of every type per day", _MESSAGES)
_report("clr3m5n8k000708jq4l1m2n8h", "User messages", "Messages users sent per day", _MESSAGES + " AND type = 'user'")
_report("clr3m5n8k000808jq5m2n3o9i", "Bot messages", "Messages bots answered per day", _MESSAGES + " AND type = 'bot'")
_report(
    "clr3m5n8k000908jq6n3o4p0j",
    "Activity messages",
    "Activity messages (ability and function calls) per day",
    _MESSAGES + " AND type = 'activity'",
)
_report(
    "tokens-per-day",
    "Tokens used",
    "Model tokens the account's completions used per day (the usage rows)",
    "SELECT created_at / 86400000 AS day, sum(count) AS total FROM usage "
    "WHERE account_id = $1 AND created_at >= $2 AND type = 'token'",
    by_id=False,
)


def _date(day: int) -> str:
    return datetime.date.fromordinal(datetime.date(1970, 1, 1).toordinal() + day).isoformat()


async def generate(ctx: Context, report_id: str, days: int) -> ReportResult:
    _, sql, by_id = REPORTS[report_id]
    today = now_ms() // DAY_MS
    first = today - days + 1
    since = (first - days) * DAY_MS  # the period before too, for the change
    rows = await ctx.pool.fetch(sql, ctx.account_id, floor_id(since) if by_id else since)
    totals = {int(r["day"]): int(r["total"]) for r in rows}
    breakdown = [ReportPoint(_date(day), totals.get(day, 0)) for day in range(first, today + 1)]
    value = sum(p.total for p in breakdown)
    before = sum(total for day, total in totals.items() if day < first)
    change = round((value - before) * 100 / before, 1) if before else None
    return ReportResult(value=value, period=f"{days}d", breakdown=breakdown, change=change)


class ListPlatformReports(ListCatalogue):
    summary = "List the reports botkit generates over the account's own data"
    response = PlatformReportList
    item = PlatformReport

    def items(self, ctx: Context) -> list[Any]:
        return [item for item, _, _ in REPORTS.values()]


class GeneratePlatformReport(Action):
    tag = "Platform"
    summary = "Generate a report over the account's data (JSON, or its days as CSV with Accept: text/csv)"
    body = ReportInput
    response = ReportResult
    raw_response = "text/csv"  # the breakdown as `date,total` rows

    async def run(self, ctx: Context, call: Call) -> Any:
        report_id = call.params["reportId"]
        if report_id not in REPORTS:
            raise NotFound("report not found")
        result = await generate(ctx, report_id, call.body.period_days)
        if call.headers is not None and asks_csv(call.headers.get(b"accept", b"")):
            return Raw(200, [(b"content-type", CSV)], csv_rows(result.breakdown, ["date", "total"]))
        return result


def _field(report_id: str) -> str:
    return "r_" + report_id.replace("-", "_")


# generate's batch: one optional input per report id, unknown ids refused (a 400 naming it)
ReportsInput = msgspec.defstruct(
    "PlatformReportsInput",
    [(_field(i), ReportInput | msgspec.UnsetType, msgspec.UNSET) for i in REPORTS],
    bases=(Body,),
    rename={_field(i): i for i in REPORTS},
    kw_only=True,
    forbid_unknown_fields=True,
)
ReportsResult = msgspec.defstruct(
    "PlatformReportsResult",
    [(_field(i), ReportResult | msgspec.UnsetType, msgspec.UNSET) for i in REPORTS],
    rename={_field(i): i for i in REPORTS},
    kw_only=True,
    omit_defaults=True,
)


class GeneratePlatformReports(Action):
    tag = "Platform"
    summary = "Generate several reports at once: {reportId: input}, answered {reportId: result}"
    body = ReportsInput
    response = ReportsResult

    async def run(self, ctx: Context, call: Call) -> Any:
        results = {}
        for report_id in REPORTS:
            given = getattr(call.body, _field(report_id))
            if given is not msgspec.UNSET:
                results[_field(report_id)] = await generate(ctx, report_id, given.period_days)
        return ReportsResult(**results)


ACTIONS: list[Action] = [
    ListPlatformAbilities("/platform/ability/list"),
    SearchPlatformAbilities("/platform/ability/search"),
    ListPlatformActions("/platform/action/list"),
    FetchPlatformDoc("/platform/doc/{docId}/fetch"),
    ListPlatformDocs("/platform/doc/list"),
    SearchPlatformDocs("/platform/doc/search"),
    ListPlatformModels("/platform/model/list"),
    GeneratePlatformReport("/platform/report/{reportId}/generate"),
    GeneratePlatformReports("/platform/report/generate"),
    ListPlatformReports("/platform/report/list"),
    ListPlatformSecrets("/platform/secret/list"),
    SearchPlatformSecrets("/platform/secret/search"),
]
