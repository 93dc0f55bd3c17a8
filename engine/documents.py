"""Documents: an uploaded file's bytes turned into dataset records (plain data in,
plain data out; the caller runs `extract` in a thread and stores what `chunk` gives).

`extract` reads a file into `Section`s, following the document's own structure:
headings (Markdown, HTML, DOCX), pages (PDF), groups of rows (CSV, each group
carrying the header row), items (JSON). It is bounded by `Limits`: the file's size,
the characters extracted, PDF pages, a DOCX's uncompressed size (checked in the zip's
central directory before anything is decompressed, and again while reading, because a
directory can lie) and a wall-clock budget checked between pages, paragraphs and rows.
Whatever goes wrong, a limit or a corrupt file, is one `DocumentError` whose message
names the file and what was wrong, fit to show the user.

`chunk` turns sections into records of at most `max_tokens` tokens (by the offline
estimate of engine/tokens.py) and at most RECORD_MAX_CHARS characters (what a record's
text may hold). Sections never share a record; inside one, text is cut at the
dataset's `separators` first, then at paragraphs, lines, sentences, clauses and
words, and only a word longer than a record is cut inside. Pieces are packed greedily
up to the bound, so records are as large as allowed. Every record of a section starts
with its heading path (or a CSV's header row), so a record stands alone in a search
result, and carries `meta` (page, section, rows, path) for citations.

`separators` (the dataset's setting, a string; the reference calls it "a list of
separators"): the whole string is the preferred cut (e.g. "\\n\\n" or "---"), then each
of its characters in order (e.g. ".;" cuts at "." then at ";"), then the defaults
above. A cut keeps its separator with the text before it, so no text is lost."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from . import tokens

MiB = 1024 * 1024
RECORD_MAX_CHARS = 100_000  # a record's text (resources: LongText)
DEFAULT_RECORD_MAX_TOKENS = 300  # 10 records (search's default count) fill search's default 3000 tokens
RECORD_MAX_TOKENS_CAP = 25_000  # beyond it RECORD_MAX_CHARS binds first anyway
CSV_ROWS_PER_SECTION = 20
META_MAX_CHARS = 500  # a meta string value (actions/fields.py)
SUPPORTED = "plain text, Markdown, HTML, CSV, JSON (and JSON Lines), PDF and DOCX"


class DocumentError(BadRequest):
    """A file that cannot be read into records; the message names the file and why."""


@dataclass(frozen=True)
class Limits:
    """What one file may cost. The defaults fit a large manual or report: a bigger
    file is almost always scanned images, which hold no text to extract anyway."""

    max_bytes: int = 50 * MiB  # the file's size
    max_chars: int = 20_000_000  # the text extracted (about 5M tokens)
    max_pages: int = 2_000  # PDF pages
    seconds: float = 60.0  # wall clock, checked between pages, paragraphs and rows
    max_unzipped_bytes: int = 200 * MiB  # DOCX: the members' total uncompressed size
    max_zip_ratio: float = 100.0  # DOCX: uncompressed / compressed, for a member above 1 MiB
    max_zip_members: int = 10_000  # DOCX: files in the zip


@dataclass(frozen=True)
class Section:
    """A piece of a document that records do not cross."""

    text: str
    title: str | None = None  # the nearest heading; for CSV the header row
    section: str | None = None  # the heading path, "Refunds > Policy"
    page: int | None = None  # PDF page, from 1
    rows: tuple[int, int] | None = None  # CSV data rows (from 1, the header not counted)
    path: str | None = None  # JSON: the item ("[3]") or top-level key


@dataclass(frozen=True)
class Chunk:
    """One record: its text and the meta that cites where it came from."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)


# --- limits -----------------------------------------------------------------------


class _Work:
    """The budget of one extraction: characters so far and the deadline."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.chars = 0
        self.deadline = time.monotonic() + limits.seconds

    def fail(self, why: str) -> DocumentError:
        return DocumentError(f"{self.name}: {why}")

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(f"reading it took longer than the {self.limits.seconds:g} s allowed")

    def add(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > self.limits.max_chars:
            raise self.fail(f"it holds more than the {self.limits.max_chars:,} characters of text allowed")
        self.check()
        return text


def _display(name: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip() or "the file"
    return name if len(name) <= 200 else name[:199] + "…"


# --- the format -------------------------------------------------------------------

_TYPES = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/json": "json",
    "text/json": "json",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}
_EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".pdf": "pdf",
    ".docx": "docx",
}


def _media_type(content_type: str) -> tuple[str, str | None]:
    """(the media type, its charset parameter)."""
    kind, _, params = content_type.partition(";")
    m = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.I)
    return kind.strip().lower(), m.group(1) if m else None


def _format(path: Path, media: str, name: str, work: _Work) -> str:
    """The content type when it is specific, else the file name's extension, else
    any text/* type, else the first bytes (%PDF, a zip, text)."""
    if media in _TYPES:
        return _TYPES[media]
    ext = Path(name).suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if media.startswith("text/"):
        return "text"
    with path.open("rb") as f:
        head = f.read(4096)
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04") and _is_docx(path):
        return "docx"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut by the 4096-byte read
                return "text"
    raise work.fail(f"this kind of file ({media or 'no content type'}) is not supported; use {SUPPORTED}")


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "word/document.xml" in zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# --- text -------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.I)


def _encoding(path: Path, charset: str | None, html: bool) -> str:
    """A byte-order mark, else the declared charset (the content type's, or an HTML
    <meta>), else utf-8. No charset guessing: no detector is a dependency, and
    utf-8 with replacement characters loses little of a mislabelled file."""
    with path.open("rb") as f:
        head = f.read(2048)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if charset is None and html:
        m = _META_CHARSET.search(head)
        charset = m.group(1).decode("ascii") if m else None
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"


def _read_text(path: Path, charset: str | None, work: _Work, *, html: bool = False, newline: str | None = None) -> str:
    """The file as text, reading no more than max_chars + 1 characters."""
    encoding = _encoding(path, charset, html)
    with path.open(encoding=encoding, errors="replace", newline=newline) as f:
        text = f.read(work.limits.max_chars + 1)
    if len(text) > work.limits.max_chars:
        raise work.fail(f"it holds more than the {work.limits.max_chars:,} characters of text allowed")
    work.check()
    return text


class _Headings:
    """The heading path as headings arrive (a heading closes deeper ones)."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))

    def section(self, text: str) -> Section | None:
        if not text.strip():
            return None
        text = text.strip("\n")
        path = " > ".join(t for _, t in self.stack if t)
        return Section(text=text, title=self.stack[-1][1] or None if self.stack else None, section=path or None)


def _heading_text(raw: str) -> str:
    return " ".join(raw.split())


_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown(text: str, work: _Work) -> list[Section]:
    """Sections at ATX (#) and setext (===, ---) headings, outside fenced code."""
    out: list[Section] = []
    headings = _Headings()
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        s = headings.section("\n".join(body))
        if s is not None:
            out.append(s)
        body.clear()

    for n, line in enumerate(text.split("\n")):
        if n % 1000 == 0:
            work.check()
        f = _FENCE.match(line)
        if f and (fence is None or f.group(1) == fence):
            fence = f.group(1) if fence is None else None
        elif fence is None and (m := _ATX.match(line)):
            close()
            headings.push(len(m.group(1)), _heading_text(m.group(2) or ""))
            continue
        elif fence is None and _SETEXT.match(line) and body and body[-1].strip():
            title = _heading_text(body.pop())
            close()
            headings.push(1 if line.strip()[0] == "=" else 2, title)
            continue
        body.append(line)
    close()
    return out


# --- HTML -------------------------------------------------------------------------

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "title"})
_BLOCK = re.compile(  # the elements a browser shows on lines of their own
    r"p|div|section|article|main|header|footer|nav|aside|blockquote|pre|ul|ol|dl|dt|dd|table|thead|tbody|tr"
    r"|form|fieldset|figure|figcaption|address|hr|br|li|caption|details|summary"
)
_HEADING = re.compile(r"^h([1-6])$")


class _HTMLText(HTMLParser):
    """Visible text; headings (h1-h6) start sections; script, style and the like are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.headings = _Headings()
        self.body: list[str] = []
        self.skip = 0
        self.heading: tuple[int, list[str]] | None = None

    def close_section(self) -> None:
        s = self.headings.section(_html_lines("".join(self.body)))
        if s is not None:
            self.sections.append(s)
        self.body.clear()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif self.skip:
            return
        elif m := _HEADING.match(tag):
            self.close_section()
            self.heading = (int(m.group(1)), [])
        elif _BLOCK.fullmatch(tag):
            self.body.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.body.append(" | ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP:  # <br/>, <hr/>; a self-closed <script/> holds nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif _HEADING.match(tag) and self.heading is not None:
            level, parts = self.heading
            self.heading = None
            self.headings.push(level, _heading_text("".join(parts)) or f"Heading {level}")
        elif _BLOCK.fullmatch(tag):
            self.body.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        (self.heading[1] if self.heading is not None else self.body).append(data)


def _html_lines(text: str) -> str:
    """Whitespace as a browser shows it: runs collapsed, a blank line between blocks."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n\n".join(line for line in lines if line and line != "-")


def _html(text: str, work: _Work) -> list[Section]:
    parser = _HTMLText()
    step = 1 << 20
    for start in range(0, len(text), step):
        parser.feed(text[start : start + step])
        work.check()
    parser.close()
    parser.close_section()
    return parser.sections


# --- CSV --------------------------------------------------------------------------


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([" ".join(cell.split()) for cell in row])
    return out.getvalue()


def _delimiter(text: str) -> str:
    """The likeliest of , ; tab | in the first line (csv.Sniffer can take very long on
    some input, and the wall-clock budget cannot interrupt it)."""
    first = next((line for line in text[:65536].split("\n") if line.strip()), "")
    counts = {d: first.count(d) for d in ",;\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv(text: str, work: _Work, tabs: bool) -> list[Section]:
    """Groups of CSV_ROWS_PER_SECTION rows, each headed by the header row (the
    section's title, which every record of it starts with)."""
    out: list[Section] = []
    header: str | None = None
    group: list[str] = []
    n = 0  # data rows so far (blank rows and the header not counted)
    try:
        for i, row in enumerate(csv.reader(io.StringIO(text), delimiter="\t" if tabs else _delimiter(text))):
            if i % 1000 == 0:
                work.check()
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _csv_line(row)
                continue
            n += 1
            group.append(_csv_line(row))
            if len(group) == CSV_ROWS_PER_SECTION:
                out.append(Section(text="\n".join(group), title=header, rows=(n - len(group) + 1, n)))
                group = []
    except csv.Error as exc:
        raise work.fail(f"it is not a well-formed CSV file ({exc})") from None
    if group:
        out.append(Section(text="\n".join(group), title=header, rows=(n - len(group) + 1, n)))
    elif header is not None and not out:  # a header alone is the only text there is
        out.append(Section(text=header))
    return out


# --- JSON -------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, work: _Work) -> Iterator[str]:
    """`key.path[0]: value` lines, depth first, iteratively (no recursion limit)."""
    stack: list[tuple[str, Any]] = [(prefix, value)]
    n = 0
    while stack:
        key, v = stack.pop()
        n += 1
        if n % 1000 == 0:
            work.check()
        if isinstance(v, dict) and v:
            stack.extend(reversed([(f"{key}.{k}" if key else str(k), x) for k, x in v.items()]))
        elif isinstance(v, list) and v:
            stack.extend(reversed([(f"{key}[{i}]", x) for i, x in enumerate(v)]))
        else:
            shown = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            yield f"{key}: {shown}" if key else shown


def _json(text: str, work: _Work, lines: bool) -> list[Section]:
    """A section per item of a top-level array (or JSON Lines, or an array under a
    top-level key), else per top-level key; lines are `key.path: value`."""
    try:
        if lines:
            value: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            value = json.loads(text) if text.strip() else []
    except (ValueError, RecursionError) as exc:
        raise work.fail(f"it is not valid JSON ({str(exc)[:200]})") from None
    items: list[tuple[str, str, Any]] = []  # (where, the key path its lines start with, value)
    if isinstance(value, list):
        items = [(f"[{i}]", "", x) for i, x in enumerate(value)]
    elif isinstance(value, dict):
        for k, x in value.items():
            if isinstance(x, list) and x:  # {"data": [...]}: the items, as in an array
                items += [(f"{k}[{i}]", "", y) for i, y in enumerate(x)]
            else:
                items.append((str(k), str(k), x))
    else:
        items = [("", "", value)]
    out = []
    for where, prefix, item in items:
        text = "\n".join(_flatten(item, prefix, work))
        if text.strip():
            out.append(Section(text=text, path=where or None))
    return out


# --- PDF --------------------------------------------------------------------------


def _outline(reader: Any, work: _Work) -> list[tuple[int, str]]:
    """(first page, heading path) of the PDF's bookmarks, by page; [] when broken."""
    found: list[tuple[int, str]] = []
    stack: list[tuple[list[Any], tuple[str, ...]]] = []
    try:
        stack.append((list(reader.outline), ()))
        while stack and len(found) < 10_000:
            entries, parents = stack.pop()
            path = parents
            for entry in entries:
                if isinstance(entry, list):
                    stack.append((entry, path))
                    continue
                path = (*parents, _heading_text(str(entry.title)))
                page = reader.get_destination_page_number(entry)
                if page is not None and page >= 0:
                    found.append((page + 1, " > ".join(p for p in path if p)))
            work.check()
    except DocumentError:
        raise
    except Exception:  # a broken outline costs the section names, not the text
        return []
    found.sort(key=lambda f: f[0])
    return found


def _pdf(path: Path, work: _Work) -> list[Section]:
    """A section per page with text, named by the bookmark in force on it."""
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise work.fail("the PDF is password-protected")
        pages = len(reader.pages)
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise work.fail("the PDF is password-protected") from None
    except (DependencyError, NotImplementedError):  # AES without the `cryptography` package
        raise work.fail("the PDF is encrypted in a way this server cannot decrypt") from None
    except Exception as exc:  # pypdf raises many kinds on broken input; all mean "unreadable"
        raise work.fail(f"the PDF could not be read; it may be corrupt or truncated ({_brief(exc)})") from None
    if pages > work.limits.max_pages:
        raise work.fail(f"the PDF has {pages:,} pages, more than the {work.limits.max_pages:,} allowed")
    outline = _outline(reader, work)
    out: list[Section] = []
    mark = 0
    for number in range(1, pages + 1):
        work.check()
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception as exc:  # as above: a broken page is an unreadable file
            raise work.fail(f"page {number} of the PDF could not be read ({_brief(exc)})") from None
        while mark < len(outline) and outline[mark][0] <= number:
            mark += 1
        heading = outline[mark - 1][1] if mark else None
        if text.strip():
            title = heading.rsplit(" > ", 1)[-1] if heading else None
            out.append(Section(text=work.add(text), title=title, section=heading or None, page=number))
    return out


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- DOCX -------------------------------------------------------------------------


def _zip_members(path: Path, work: _Work) -> dict[str, bytes]:
    """The members of a DOCX, refused as a zip bomb from its central directory
    (count, total size, ratio) before any decompression; then read in bounded
    steps, so a directory that understates a size cannot make a read larger."""
    limits = work.limits
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_zip_members:
                raise work.fail(
                    f"the DOCX holds {len(infos):,} files, more than the {limits.max_zip_members:,} allowed"
                )
            total = sum(i.file_size for i in infos)
            if total > limits.max_unzipped_bytes:
                raise work.fail(
                    f"the DOCX unpacks to {total / MiB:,.0f} MiB, more than the "
                    f"{limits.max_unzipped_bytes / MiB:,.0f} MiB allowed"
                )
            for i in infos:
                if i.file_size > MiB and i.file_size > limits.max_zip_ratio * max(1, i.compress_size):
                    raise work.fail(
                        f"the DOCX looks like a zip bomb: {i.filename[:100]} unpacks "
                        f"{i.file_size / max(1, i.compress_size):,.0f} times its size "
                        f"(at most {limits.max_zip_ratio:g} allowed)"
                    )
            members: dict[str, bytes] = {}
            for i in infos:
                members[i.filename] = _read_member(zf, i, work)
            return members
    except DocumentError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise work.fail(f"the DOCX could not be read; it may be corrupt or truncated ({_brief(exc)})") from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, work: _Work) -> bytes:
    if info.filename.startswith("word/media/"):
        return b""  # images hold no text; python-docx only keeps their bytes
    out = bytearray()
    with zf.open(info) as f:  # 64 KiB reads inflate 64 KiB at a time; zipfile stops at the directory's size
        while data := f.read(1 << 16):
            out += data
            work.check()
    return bytes(out)


def _docx(path: Path, work: _Work) -> list[Section]:
    """Sections at Title and Heading 1-9 paragraphs; tables as "a | b" lines."""
    import docx
    from docx.table import Table

    members = _zip_members(path, work)
    safe = io.BytesIO()
    with zipfile.ZipFile(safe, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    del members
    try:
        document = docx.Document(safe)
        blocks = list(document.iter_inner_content())
    except Exception as exc:  # python-docx and lxml on a broken package: many kinds, one meaning
        raise work.fail(f"the DOCX could not be read; it may be corrupt ({_brief(exc)})") from None
    out: list[Section] = []
    headings = _Headings()
    body: list[str] = []

    def close() -> None:
        s = headings.section("\n\n".join(body))
        if s is not None:
            out.append(s)
        body.clear()

    for block in blocks:
        if isinstance(block, Table):
            body.append(work.add(_docx_table(block)))
            continue
        text = work.add(block.text)
        level = _docx_heading(block)
        if level is not None and text.strip():
            close()
            headings.push(level, _heading_text(text))
        elif text.strip():
            body.append(text)
    close()
    return out


def _docx_heading(paragraph: Any) -> int | None:
    try:
        name = (paragraph.style.name or "").strip().lower() if paragraph.style is not None else ""
    except (KeyError, ValueError, AttributeError):
        return None
    if name == "title":
        return 0
    m = re.fullmatch(r"heading ([1-9])", name)
    return int(m.group(1)) if m else None


def _docx_table(table: Any) -> str:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:  # a merged cell repeats across the grid: once is enough
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


# --- extract ----------------------------------------------------------------------


def extract(path: Path, content_type: str, name: str, limits: Limits) -> list[Section]:
    """The sections of the file at `path` (synchronous and blocking: run it in a
    thread). [] when the file holds no text (an empty file, a scanned PDF)."""
    shown = _display(name)
    work = _Work(shown, limits)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise work.fail(f"the file could not be opened ({_brief(exc)})") from None
    if size > limits.max_bytes:
        raise work.fail(f"the file is {size / MiB:,.1f} MiB, more than the {limits.max_bytes / MiB:,.1f} MiB allowed")
    media, charset = _media_type(content_type)
    kind = _format(path, media, name, work)
    if kind == "pdf":
        return _pdf(path, work)
    if kind == "docx":
        return _docx(path, work)
    text = _read_text(path, charset, work, html=kind == "html", newline="" if kind in ("csv", "tsv") else None)
    if kind == "markdown":
        return _markdown(text, work)
    if kind == "html":
        return _html(text, work)
    if kind in ("csv", "tsv"):
        return _csv(text, work, tabs=kind == "tsv")
    if kind in ("json", "jsonl"):
        return _json(text, work, lines=kind == "jsonl")
    return [Section(text=text)] if text.strip() else []


# --- chunk ------------------------------------------------------------------------

_DEFAULT_CUTS = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？]+"),  # sentences
    re.compile(r"[;:,]\s+|[；：，、]"),  # clauses
    re.compile(r"\s+"),  # words
)
_PIECE = re.compile(r"\w+|[^\w\s]|\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
_LONG_SPACE = re.compile(r"[^\S\n]{33,}")


def record_max_tokens(setting: float | None) -> int:
    """A dataset's recordMaxTokens as a bound: unset → the default; between 1 and the cap."""
    if setting is None or math.isnan(setting):
        return DEFAULT_RECORD_MAX_TOKENS
    return int(max(1, min(setting, RECORD_MAX_TOKENS_CAP)))


def _clean(text: str) -> str:
    """Newlines as \\n, no control characters (PostgreSQL text holds no NUL), trailing
    spaces gone, at most one blank line and 32 spaces in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").replace("\v", "\n")
    text = _CONTROL.sub("", text)
    text = _LONG_SPACE.sub(" ", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _cuts(separators: str | None) -> tuple[re.Pattern[str], ...]:
    mine: list[str] = []
    if separators:
        mine = [separators] if len(separators) > 1 else []
        mine += [c for c in dict.fromkeys(separators) if c not in mine]
    return tuple(re.compile(re.escape(s)) for s in mine) + _DEFAULT_CUTS


def _cut(text: str, at: re.Pattern[str]) -> list[str]:
    """`text` cut after each match (the separator stays with the text before it)."""
    ends = [m.end() for m in at.finditer(text) if m.end() > m.start()]
    starts = [0, *ends]
    return [text[a:b] for a, b in zip(starts, [*ends, len(text)], strict=True) if a < b]


def _hard(text: str, budget: int, max_chars: int) -> list[str]:
    """Cut at token pieces; a word longer than a record is cut every 4 × budget characters."""
    out: list[str] = []
    current, cost = "", 0
    width = max(1, min(4 * budget, max_chars))
    for m in _PIECE.finditer(text):
        piece = m.group()
        pieces = [piece[i : i + width] for i in range(0, len(piece), width)] if len(piece) > width else [piece]
        for p in pieces:
            c = tokens.count(p)
            if current and (cost + c > budget or len(current) + len(p) > max_chars):
                out.append(current)
                current, cost = "", 0
            current += p
            cost += c
    if current:
        out.append(current)
    return out


def _split(text: str, budget: int, max_chars: int, cuts: tuple[re.Pattern[str], ...]) -> list[str]:
    """Pieces of `text`, each at most `budget` tokens and `max_chars` characters,
    cut at the first of `cuts` that occurs, and packed greedily. A packed piece costs
    at most the sum of its parts (joining never adds pieces), so the sum is the bound."""
    if len(text) <= max_chars and tokens.count(text) <= budget:
        return [text]
    for i, at in enumerate(cuts):  # noqa: B007  (i names the cut that worked)
        parts = _cut(text, at)
        if len(parts) > 1:
            break
    else:
        return _hard(text, budget, max_chars)
    rest = cuts[i + 1 :]
    out: list[str] = []
    current, cost = "", 0
    for part in parts:
        c = tokens.count(part)
        if current and (cost + c > budget or len(current) + len(part) > max_chars):
            out.append(current)
            current, cost = "", 0
        if c > budget or len(part) > max_chars:
            *done, current = _split(part, budget, max_chars, rest)
            out.extend(done)
            cost = tokens.count(current)
        else:
            current += part
            cost += c
    if current:
        out.append(current)
    return out


def _meta(section: Section) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if section.page is not None:
        meta["page"] = section.page
    if section.section:
        meta["section"] = section.section[:META_MAX_CHARS]
    if section.rows is not None:
        meta["rows"] = f"{section.rows[0]}-{section.rows[1]}"
    if section.path:
        meta["path"] = section.path[:META_MAX_CHARS]
    return meta


def chunk(sections: list[Section], max_tokens: int, separators: str | None) -> list[Chunk]:
    """Records of at most `max_tokens` tokens (and RECORD_MAX_CHARS characters), in
    document order; each starts with its section's heading path (or title) when it
    has one, which takes at most half of the budget. Never an empty record."""
    max_tokens = max(1, max_tokens)
    cuts = _cuts(separators)
    out: list[Chunk] = []
    for section in sections:
        body = _clean(section.text)
        if not body:
            continue
        head = " ".join((section.section or section.title or "").split())[:1000]
        head = tokens.truncate(head, max_tokens // 2)
        budget = max_tokens - tokens.count(head)
        max_chars = RECORD_MAX_CHARS - (len(head) + 2 if head else 0)
        meta = _meta(section)
        for piece in _split(body, budget, max_chars, cuts):
            text = piece.strip()
            if text:
                out.append(Chunk(text=f"{head}\n\n{text}" if head else text, meta=dict(meta)))
    return out
