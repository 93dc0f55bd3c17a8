"""Documents into records (engine/documents.py): every format from real files made
here (DOCX by python-docx, PDF by pypdf with a hand-written text stream), the limits
(a zip bomb refused from its directory, a truncated PDF, a large text, the clock), and
chunking's promises as properties: records fit, lose no text, and are deterministic."""

from __future__ import annotations

import io
import re
import struct
import time
import zipfile
import zlib
from pathlib import Path

import docx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from botkit.engine import tokens
from botkit.engine.documents import (
    DEFAULT_RECORD_MAX_TOKENS,
    RECORD_MAX_CHARS,
    Chunk,
    DocumentError,
    Limits,
    Section,
    chunk,
    extract,
    record_max_tokens,
)
from botkit.errors import BadRequest

LIMITS = Limits()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def pdf_bytes(pages: list[str], outline: list[tuple[str, int]] | None = None) -> bytes:
    """A PDF whose pages show `pages` in Helvetica (a real text content stream; pypdf
    writes no text itself, and `_add_object` is how its writer takes a new object)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        lines = text.split("\n")
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops += [f"({escaped}) Tj", "T*"]
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
    for title, number in outline or []:
        writer.add_outline_item(title=title, page_number=number)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_paragraph("Acme Handbook", style="Title")
    document.add_paragraph("Welcome to the handbook.")
    document.add_heading("Refunds", level=1)
    document.add_paragraph("Refunds are possible within 30 days.")
    document.add_heading("Policy", level=2)
    document.add_paragraph("Keep the receipt.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([["Plan", "Price"], ["Gold", "10 EUR"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Shipping", level=1)
    document.add_paragraph("Parcels leave within two days.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def records(sections: list[Section], max_tokens: int = 300, separators: str | None = None) -> list[Chunk]:
    return chunk(sections, max_tokens, separators)


# --- formats ----------------------------------------------------------------------


def test_plain_text_in_its_charset_or_utf8_with_replacement(tmp_path):
    latin = write(tmp_path, "a.txt", "Café crème".encode("latin-1"))
    assert extract(latin, "text/plain; charset=ISO-8859-1", "a.txt", LIMITS)[0].text == "Café crème"
    utf16 = write(tmp_path, "b.txt", "Grüße aus Köln".encode("utf-16"))  # with its BOM
    assert extract(utf16, "text/plain", "b.txt", LIMITS)[0].text == "Grüße aus Köln"
    broken = write(tmp_path, "c.txt", b"caf\xe9 ok")  # latin-1 bytes with no charset: utf-8, replaced
    assert extract(broken, "", "c.txt", LIMITS)[0].text == "caf\ufffd ok"
    assert extract(write(tmp_path, "empty.txt", ""), "text/plain", "empty.txt", LIMITS) == []


def test_markdown_sections_follow_the_headings_not_code(tmp_path):
    md = (
        "Intro line.\n\n# Refunds\n\nWithin 30 days.\n\n## Policy\n\nKeep the receipt.\n\n"
        "```\n# not a heading\n```\n\nShipping\n========\n\nTwo days.\n"
    )
    sections = extract(write(tmp_path, "faq.md", md), "application/octet-stream", "faq.md", LIMITS)
    assert [(s.section, s.title) for s in sections] == [
        (None, None),
        ("Refunds", "Refunds"),
        ("Refunds > Policy", "Policy"),
        ("Shipping", "Shipping"),
    ]
    assert "# not a heading" in sections[2].text
    out = records(sections)
    assert out[2].text.startswith("Refunds > Policy\n\nKeep the receipt.")
    assert out[2].meta == {"section": "Refunds > Policy"}


def test_html_keeps_visible_text_only(tmp_path):
    html = """<!doctype html><html><head><title>Shop</title>
    <style>body { color: red }</style><script>var secret = "do not index";</script></head>
    <body><nav>Home</nav><h1>Refunds &amp; returns</h1><p>Within <b>30</b> days.</p>
    <script type="module">alert("x")</script><h2>Policy</h2><ul><li>Keep the receipt</li><li>Be nice</li></ul>
    <table><tr><td>Gold</td><td>10 EUR</td></tr></table><noscript>enable js</noscript></body></html>"""
    sections = extract(write(tmp_path, "page", html), "text/html; charset=utf-8", "page", LIMITS)
    text = "\n".join(s.text for s in sections)
    for hidden in ("color", "secret", "alert", "enable js", "Shop"):
        assert hidden not in text
    assert [s.section for s in sections] == [None, "Refunds & returns", "Refunds & returns > Policy"]
    assert sections[1].text == "Within 30 days."
    assert "- Keep the receipt" in sections[2].text and "Gold | 10 EUR" in sections[2].text


def test_csv_records_each_carry_the_header_row(tmp_path):
    rows = ["name,city,note"] + [f'person{i},"Berlin, DE",note {i}' for i in range(1, 46)]
    path = write(tmp_path, "people.csv", "\r\n".join(rows) + "\r\n")
    sections = extract(path, "application/vnd.ms-excel", "people.csv", LIMITS)
    assert [s.rows for s in sections] == [(1, 20), (21, 40), (41, 45)]
    out = records(sections, max_tokens=40)
    assert len(out) > len(sections)  # a group split further still carries the header
    for r in out:
        assert r.text.startswith("name,city,note\n\n") and tokens.count(r.text) <= 40
    assert '"Berlin, DE"' in out[0].text and out[0].meta == {"rows": "1-20"}
    semi = write(tmp_path, "semi.csv", "a;b\n1;2\n")
    assert extract(semi, "text/csv", "semi.csv", LIMITS)[0].text == "1,2"


def test_json_items_and_key_paths(tmp_path):
    data = '[{"q": "Refunds?", "a": {"text": "Within 30 days", "tags": ["money", 1]}}, {"q": "Shipping?"}]'
    sections = extract(write(tmp_path, "faq.json", data), "application/json", "faq.json", LIMITS)
    assert [s.path for s in sections] == ["[0]", "[1]"]
    assert sections[0].text == "q: Refunds?\na.text: Within 30 days\na.tags[0]: money\na.tags[1]: 1"
    obj = '{"company": {"name": "Acme"}, "data": [{"id": 1}, {"id": 2}]}'
    sections = extract(write(tmp_path, "o.json", obj), "", "o.json", LIMITS)
    assert [(s.path, s.text) for s in sections] == [
        ("company", "company.name: Acme"),
        ("data[0]", "id: 1"),
        ("data[1]", "id: 2"),
    ]
    lines = extract(write(tmp_path, "l.jsonl", '{"a": 1}\n\n{"a": 2}\n'), "", "l.jsonl", LIMITS)
    assert [s.text for s in lines] == ["a: 1", "a: 2"]
    with pytest.raises(DocumentError, match=r"bad\.json: it is not valid JSON"):
        extract(write(tmp_path, "bad.json", '{"a": '), "application/json", "bad.json", LIMITS)
    deep = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DocumentError, match="not valid JSON"):
        extract(deep, "application/json", "deep.json", LIMITS)


def test_pdf_a_section_per_page_named_by_its_bookmark(tmp_path):
    pages = ["Acme handbook\nWelcome.", "Refunds are possible\nwithin 30 days.", "", "Keep the receipt."]
    path = write(tmp_path, "h.pdf", pdf_bytes(pages, outline=[("Intro", 0), ("Refunds", 1)]))
    sections = extract(path, "application/pdf", "h.pdf", LIMITS)
    assert [(s.page, s.section) for s in sections] == [(1, "Intro"), (2, "Refunds"), (4, "Refunds")]
    assert "within 30 days" in sections[1].text
    out = records(sections)
    assert out[1].meta == {"page": 2, "section": "Refunds"} and out[1].text.startswith("Refunds\n\n")
    with pytest.raises(DocumentError, match=r"h\.pdf: the PDF has 4 pages, more than the 3 allowed"):
        extract(path, "application/pdf", "h.pdf", Limits(max_pages=3))


def test_a_password_protected_pdf_says_so(tmp_path):
    for user, readable in (("secret", False), ("", True)):  # an owner password alone only restricts
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["Hidden text"]))))
        writer.encrypt(user_password=user, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        path = write(tmp_path, "e.pdf", out.getvalue())
        if readable:
            assert [s.text.strip() for s in extract(path, "application/pdf", "e.pdf", LIMITS)] == ["Hidden text"]
        else:
            with pytest.raises(DocumentError, match=r"e\.pdf: the PDF is password-protected"):
                extract(path, "application/pdf", "e.pdf", LIMITS)


def test_a_truncated_or_fake_pdf_is_a_document_error(tmp_path):
    whole = pdf_bytes(["Hello world"] * 3)
    for cut in (len(whole) // 2, 40, 9):
        path = write(tmp_path, "t.pdf", whole[:cut])
        with pytest.raises(DocumentError, match=r"t\.pdf: .*PDF") as err:
            extract(path, "application/pdf", "t.pdf", LIMITS)
        assert isinstance(err.value, BadRequest)  # a 400 with the message, not a 500
    fake = write(tmp_path, "f.pdf", b"this is not a pdf at all")
    with pytest.raises(DocumentError, match="could not be read"):
        extract(fake, "", "f.pdf", LIMITS)


def test_docx_headings_become_sections(tmp_path):
    path = write(tmp_path, "h.docx", docx_bytes())
    sections = extract(path, "application/octet-stream", "h.docx", LIMITS)
    assert [(s.section, s.text) for s in sections] == [
        ("Acme Handbook", "Welcome to the handbook."),
        ("Acme Handbook > Refunds", "Refunds are possible within 30 days."),
        ("Acme Handbook > Refunds > Policy", "Keep the receipt.\n\nPlan | Price\nGold | 10 EUR"),
        ("Acme Handbook > Shipping", "Parcels leave within two days."),
    ]
    sniffed = write(tmp_path, "upload", docx_bytes())  # no type, no extension: the zip says
    assert len(extract(sniffed, "", "upload", LIMITS)) == 4


def _rezip(original: bytes, replace: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info)))
        for name, data in replace.items():
            if name not in src.namelist():
                dst.writestr(name, data)
    return out.getvalue()


def test_a_docx_zip_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    bomb = _rezip(docx_bytes(), {"word/media/filler.bin": b"\0" * (40 * 1024 * 1024)})
    path = write(tmp_path, "bomb.docx", bomb)
    assert path.stat().st_size < 200_000

    def no_inflating(*args, **kwargs):
        raise AssertionError("decompressed a zip bomb")

    with monkeypatch.context() as m:
        m.setattr(zipfile.ZipFile, "open", no_inflating)
        with pytest.raises(DocumentError, match=r"bomb\.docx: the DOCX looks like a zip bomb"):
            extract(path, "", "bomb.docx", LIMITS)
        with pytest.raises(DocumentError, match=r"unpacks to 4\d MiB, more than the 10 MiB allowed"):
            extract(path, "", "bomb.docx", Limits(max_unzipped_bytes=10 * 1024 * 1024))


def test_a_docx_whose_directory_lies_is_read_in_bounded_steps(tmp_path):
    """A directory that states 100 bytes for 50 MiB: zipfile stops at 100 bytes, the
    document is then broken XML: an error, without inflating the 50 MiB."""
    content = b"<" + b" " * (50 * 1024 * 1024)
    data = bytearray(_rezip(docx_bytes(), {"word/document.xml": content}))
    at = data.index(b"PK\x01\x02")  # the central directory entry of word/document.xml
    while data[at + 46 : at + 46 + 17] != b"word/document.xml":
        at = data.index(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + 16, zlib.crc32(content[:100]))  # a CRC that matches the lie
    struct.pack_into("<I", data, at + 24, 100)  # the uncompressed size
    path = write(tmp_path, "liar.docx", bytes(data))
    started = time.monotonic()
    with pytest.raises(DocumentError, match=r"liar\.docx: the DOCX could not be read"):
        extract(path, "", "liar.docx", LIMITS)
    assert time.monotonic() - started < 5


def test_a_truncated_or_fake_docx_is_a_document_error(tmp_path):
    whole = docx_bytes()
    for data in (whole[: len(whole) // 2], whole[:100], b"PK\x03\x04 nothing else"):
        path = write(tmp_path, "t.docx", data)
        with pytest.raises(DocumentError, match=r"t\.docx: the DOCX could not be read"):
            extract(path, "", "t.docx", LIMITS)
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    path = write(tmp_path, "sheet.docx", other.getvalue())
    with pytest.raises(DocumentError, match="could not be read"):
        extract(path, "", "sheet.docx", LIMITS)


def test_unsupported_types_name_the_supported_ones(tmp_path):
    path = write(tmp_path, "x.bin", bytes(range(256)) * 4)
    with pytest.raises(DocumentError, match=r"x\.bin: .*not supported; use plain text, Markdown, HTML, CSV"):
        extract(path, "application/octet-stream", "x.bin", LIMITS)
    legacy = write(tmp_path, "old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))
    with pytest.raises(DocumentError, match="application/msword.*not supported.*DOCX"):
        extract(legacy, "application/msword", "old.doc", LIMITS)


# --- limits -----------------------------------------------------------------------


def test_a_large_text_is_bounded_by_the_limits(tmp_path):
    path = tmp_path / "big.txt"
    with path.open("w") as f:
        for _ in range(110):
            f.write("lorem ipsum dolor sit amet " * 2000 + "\n")  # ~6 MB
    with pytest.raises(DocumentError, match=r"big\.txt: the file is 5\.7 MiB, more than the 5\.0 MiB allowed"):
        extract(path, "text/plain", "big.txt", Limits(max_bytes=5 * 1024 * 1024))
    with pytest.raises(DocumentError, match="more than the 1,000,000 characters of text allowed"):
        extract(path, "text/plain", "big.txt", Limits(max_chars=1_000_000))
    with pytest.raises(DocumentError, match=r"longer than the 0 s allowed"):
        extract(path, "text/markdown", "big.txt", Limits(seconds=0))
    pdf = write(tmp_path, "p.pdf", pdf_bytes(["page"] * 5))
    with pytest.raises(DocumentError, match="characters of text allowed"):
        extract(pdf, "application/pdf", "p.pdf", Limits(max_chars=6))
    sections = extract(path, "text/plain", "big.txt", LIMITS)
    assert sum(len(s.text) for s in sections) > 5_000_000
    out = records(sections, max_tokens=DEFAULT_RECORD_MAX_TOKENS)
    assert all(tokens.count(r.text) <= DEFAULT_RECORD_MAX_TOKENS for r in out)


def test_file_names_in_messages_are_cleaned(tmp_path):
    path = write(tmp_path, "x.bin", bytes(range(256)))
    with pytest.raises(DocumentError) as err:
        extract(path, "", "evil\nname\x00.bin", LIMITS)
    assert err.value.message.startswith("evilname.bin: ")


# --- chunk ------------------------------------------------------------------------


def test_chunk_prefers_the_datasets_separators():
    text = "Q1 refunds?\nA1 yes.---Q2 shipping?\nA2 two days.---Q3 returns?\nA3 free."
    out = records([Section(text=text)], max_tokens=12, separators="---")
    assert [r.text for r in out] == [
        "Q1 refunds?\nA1 yes.---",
        "Q2 shipping?\nA2 two days.---",
        "Q3 returns?\nA3 free.",
    ]
    words = "one two three. four five six. seven eight nine."
    assert [r.text for r in records([Section(text=words)], max_tokens=9)] == [
        "one two three. four five six.",
        "seven eight nine.",
    ]


def test_chunk_cuts_a_word_longer_than_a_record_and_drops_control_characters():
    out = records([Section(text="x" * 100 + "\x00 tail")], max_tokens=5)
    assert [r.text for r in out] == ["x" * 20] * 5 + ["tail"]
    huge = records([Section(text="word " * 200_000)], max_tokens=record_max_tokens(1e12))
    assert all(len(r.text) <= RECORD_MAX_CHARS for r in huge)
    assert record_max_tokens(None) == DEFAULT_RECORD_MAX_TOKENS and record_max_tokens(0) == 1


WORDS = st.sampled_from(["alpha", "beta", "x", "longerwordhere" * 3, "1234", "!", "?.", "é", "日本", "---", ";"])
SPACE = st.sampled_from([" ", "\n", "\n\n", "  ", "\t", "\n \n\n"])
TEXT = st.lists(st.tuples(WORDS, SPACE), max_size=60).map(lambda pairs: "".join(w + s for w, s in pairs))
SEPARATORS = st.none() | st.sampled_from(["\n\n", "---", ".;", "\n", " ", "x"])


def _ink(text: str) -> str:
    return re.sub(r"\s+", "", text)


@given(texts=st.lists(TEXT, max_size=5), max_tokens=st.integers(1, 60), separators=SEPARATORS)
def test_chunks_fit_lose_no_text_and_are_deterministic(texts, max_tokens, separators):
    sections = [Section(text=t) for t in texts]
    out = chunk(sections, max_tokens, separators)
    assert out == chunk(sections, max_tokens, separators)
    for r in out:
        assert r.text.strip() and r.text == r.text.strip()
        assert tokens.count(r.text) <= max_tokens and len(r.text) <= RECORD_MAX_CHARS
    assert "".join(_ink(r.text) for r in out) == "".join(_ink(t) for t in texts)


@given(
    items=st.lists(st.tuples(st.none() | TEXT, TEXT), max_size=4),
    max_tokens=st.integers(1, 60),
    separators=SEPARATORS,
)
def test_every_record_of_a_section_starts_with_its_heading(items, max_tokens, separators):
    sections = [Section(text=t, section=h) for h, t in items]
    out = chunk(sections, max_tokens, separators)
    i = 0
    for heading, text in items:
        head = tokens.truncate(" ".join((heading or "").split())[:1000], max_tokens // 2)
        ink = ""
        while i < len(out) and _ink(ink) != _ink(text):
            r = out[i]
            assert tokens.count(r.text) <= max_tokens
            if head:
                assert r.text.startswith(head + "\n\n") and r.meta == {"section": heading[:500]}
                ink += r.text[len(head) + 2 :]
            else:
                ink += r.text
            i += 1
        assert _ink(ink) == _ink(text)
    assert i == len(out)
