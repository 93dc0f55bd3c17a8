"""CSV exports: `Accept: text/csv` on every `*/export` route streams the whole
collection as RFC 4180 CSV, in the JSONL stream's keyset batches. Read back with the
csv module, it is exactly the items of the JSONL stream."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botkit.actions import standard
from botkit.resources import ROUTES
from botkit.testing import assert_error

CSV = {"Accept": "text/csv"}
COLUMNS = ["id", "createdAt", "updatedAt", "meta", "fingerprint", "name", "description", "email", "phone"]
COLUMNS += ["nick", "preferences", "verifiedAt"]


def jsonl(api, path: str, **params) -> list[dict]:
    response = api.get(path, params=params, headers={"Accept": "application/jsonl"})
    assert response.status_code == 200, response.text
    return [json.loads(line)["data"] for line in response.text.split("\n")[:-1]]


def exported(api, path: str, **params) -> tuple[list[str], list[dict]]:
    """(the header, the rows as the wire items they stand for)."""
    response = api.get(path, params=params, headers=CSV)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text == "" or response.text.endswith("\r\n")  # RFC 4180 line ends
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    header, body = rows[0], rows[1:]
    return header, [item_of(header, row) for row in body]


def item_of(header: list[str], row: list[str]) -> dict:
    """A CSV row as the item it was: empty is absent, text is text, the rest JSON."""
    assert len(row) == len(header)
    item = {}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        item[name] = json.loads(cell) if name in ("createdAt", "updatedAt", "meta", "verifiedAt") else cell
    return item


def without_empty(item: dict) -> dict:
    return {k: v for k, v in item.items() if v != ""}  # "" and absent are one empty cell


def test_every_export_route_answers_csv_and_says_so_in_the_spec(api):
    exports = [a for a in ROUTES if a.path.endswith("/export") and getattr(a, "answers_csv", False)]
    assert {"/contact/export", "/memory/export", "/task/export", "/event/log/export"} <= {a.path for a in exports}
    spec = api.get("spec.json").json()
    for action in exports:
        content = spec["paths"][action.path]["get"]["responses"]["200"]["content"]
        assert content["text/csv"]["schema"]["type"] == "string", action.path
        assert "application/jsonl" in content and "application/json" in content
    assert "text/csv" not in spec["paths"]["/contact/list"]["get"]["responses"]["200"]["content"]  # lists stay


def test_a_csv_export_is_its_jsonl_stream_across_batches(api, monkeypatch):
    monkeypatch.setattr(standard, "STREAM_BATCH", 4)  # the server runs in this process
    ids = [
        api.post(
            "contact/create",
            json={"name": f"n{i}", "email": f"{i}@example.com", "meta": {"i": i, "odd": i % 2 == 1, "l": [i, None]}},
        ).json()["id"]
        for i in range(11)
    ]
    for order in ("asc", "desc"):
        header, rows = exported(api, "contact/export", order=order)
        assert header == COLUMNS  # the struct's wire names, in its order
        assert rows == [without_empty(i) for i in jsonl(api, "contact/export", order=order)]
        assert [r["id"] for r in rows] == (ids if order == "asc" else ids[::-1])
    # the cursor and meta filters are the JSONL stream's
    _, after = exported(api, "contact/export", order="asc", cursor=ids[5])
    assert [r["id"] for r in after] == ids[6:]
    _, odd = exported(api, "contact/export", order="asc", **{"meta.odd": "true"})
    assert [r["id"] for r in odd] == ids[1::2]
    assert odd[0]["meta"] == {"i": 1, "odd": True, "l": [1, None]}
    # the JSON page and the JSONL stream are as they were
    assert api.get("contact/export").json()["items"][0]["id"] == ids[-1]


def test_more_rows_than_one_real_batch(api):
    """Over STREAM_BATCH (500) rows of a cheap kind, without patching it."""
    for i in range(standard.STREAM_BATCH + 7):
        assert api.post("contact/create", json={"name": f"c{i}"}).status_code == 200
    _, rows = exported(api, "contact/export", order="asc")
    assert len(rows) == standard.STREAM_BATCH + 7
    assert rows == [without_empty(i) for i in jsonl(api, "contact/export", order="asc")]
    assert [r["name"] for r in rows] == [f"c{i}" for i in range(standard.STREAM_BATCH + 7)]


def test_an_empty_collection_is_its_header_and_quoting_is_rfc_4180(api, other):
    assert api.get("contact/export", headers=CSV).text == ",".join(COLUMNS) + "\r\n"
    tricky = 'a "quoted", comma\nand a line\r\nbreak — ünïcødé ✓ 🤖'
    api.post("contact/create", json={"name": tricky, "description": "=1+1", "meta": {"q": 'x,"y"\n'}})
    response = api.get("contact/export", headers=CSV)
    assert '"a ""quoted"", comma\nand a line\r\nbreak — ünïcødé ✓ 🤖"' in response.text
    _, rows = exported(api, "contact/export")
    assert rows[0]["name"] == tricky and rows[0]["meta"] == {"q": 'x,"y"\n'}
    # another account's export holds none of it
    assert other.get("contact/export", headers=CSV).text == ",".join(COLUMNS) + "\r\n"


def test_a_nested_export_is_404_for_another_account_and_refuses_a_bad_query(api, other):
    skillset = api.post("skillset/create", json={}).json()["id"]
    api.post(f"skillset/{skillset}/ability/create", json={"name": "a,b", "instruction": 'say "hi"'})
    header, rows = exported(api, f"skillset/{skillset}/ability/export")
    assert header[:3] == ["id", "createdAt", "updatedAt"] and len(rows) == 1
    assert_error(other.get(f"skillset/{skillset}/ability/export", headers=CSV), 404, "NOT_FOUND")
    assert_error(api.get("contact/export", params={"take": "x"}, headers=CSV), 400, "BAD_REQUEST")
    assert_error(api.get("contact/export", params={"order": "up"}, headers=CSV), 400, "BAD_REQUEST")


def test_csv_wins_when_asked_beside_jsonl_and_has_no_end_line(api):
    api.post("contact/create", json={"name": "x"})
    response = api.get("contact/export", headers={"Accept": "application/jsonl; end=true, text/csv"})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert len(list(csv.reader(io.StringIO(response.text, newline="")))) == 2
    head = api.head("contact/export", headers=CSV)
    assert head.status_code == 200 and head.content == b""


TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT, description=TEXT, meta=st.dictionaries(st.sampled_from("abc"), TEXT, max_size=3))
def test_any_field_text_reads_back(make_api, name, description, meta):
    api = make_api()
    created = api.post("contact/create", json={"name": name, "description": description, "meta": meta})
    assert created.status_code == 200, created.text
    _, rows = exported(api, "contact/export")
    assert rows == [without_empty(i) for i in jsonl(api, "contact/export")]


@pytest.mark.parametrize("accept", ["text/csv;q=0.9", "TEXT/CSV", "application/json, text/csv"])
def test_the_accept_forms_of_csv(api, accept):
    response = api.get("memory/export", headers={"Accept": accept})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
