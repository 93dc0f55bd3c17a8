"""Spaces: the workspace rows (CRUD, export, a contact's spaces) and their storage
(upload, list, download, copy, move, delete by path) on both storage backends, what
paths are refused, and the official SDKs driving them."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from urllib.parse import quote

import httpx
import msgspec
import pytest
from chatbotkit import APIError, ChatBotKit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sdk import run_node

from botkit.resources import space
from botkit.testing import Api, assert_error, new_account, start_app

# --- the space rows ------------------------------------------------------------------


def test_space_crud_meta_and_ownership(api, other):
    contact = api.post("contact/create", json={"name": "Ada"}).json()["id"]
    made = api.post("space/create", json={"name": "work", "alias": "w", "contactId": contact, "meta": {"a": 1}})
    assert made.status_code == 200, made.text
    space_id = made.json()["id"]
    got = api.get(f"space/{space_id}/fetch").json()
    assert got["name"] == "work" and got["alias"] == "w" and got["contactId"] == contact and got["meta"] == {"a": 1}
    assert isinstance(got["createdAt"], int) and got["updatedAt"] >= got["createdAt"]
    assert api.post(f"space/{space_id}/update", json={"meta": {"$update": {"b": 2}}}).status_code == 200
    assert api.get(f"space/{space_id}/fetch").json()["meta"] == {"a": 1, "b": 2}
    assert api.post(f"space/{space_id}/update", json={"description": "d", "contactId": None}).status_code == 200
    got = api.get(f"space/{space_id}/fetch").json()
    assert got["description"] == "d" and "contactId" not in got
    # another account's space is not found, for every route that names it
    assert_error(other.get(f"space/{space_id}/fetch"), 404, "NOT_FOUND")
    assert_error(other.post(f"space/{space_id}/update", json={"name": "x"}), 404, "NOT_FOUND")
    assert_error(other.post(f"space/{space_id}/delete", json={}), 404, "NOT_FOUND")
    assert_error(other.get(f"space/{space_id}/storage/list"), 404, "NOT_FOUND")
    assert_error(other.post(f"space/{space_id}/storage/upload/a.txt", json={"file": "data:,x"}), 404, "NOT_FOUND")
    # ... and so are references into another account
    theirs = other.post("contact/create", json={}).json()["id"]
    assert_error(api.post("space/create", json={"contactId": theirs}), 404, "NOT_FOUND")
    assert_error(api.post("space/create", json={"blueprintId": "01arz3ndektsv4rrffq69g5fav"}), 404, "NOT_FOUND")
    assert api.post(f"space/{space_id}/delete", json={}).json() == {"id": space_id}
    assert_error(api.get(f"space/{space_id}/fetch"), 404, "NOT_FOUND")


def test_space_list_export_and_a_contacts_spaces(api, other):
    contact = api.post("contact/create", json={}).json()["id"]
    ids = [api.post("space/create", json={"name": f"s{i}", "meta": {"n": str(i % 2)}}).json()["id"] for i in range(5)]
    mine = api.post("space/create", json={"contactId": contact}).json()["id"]
    other.post("space/create", json={"name": "theirs"})
    seen, cursor = [], ""
    while True:
        page = api.get("space/list", params={"take": 2, "order": "asc", "cursor": cursor}).json()
        if not page["items"]:
            break
        seen += [s["id"] for s in page["items"]]
        cursor = page["cursor"]
    assert seen == [*ids, mine]
    assert [s["id"] for s in api.get("space/list", params={"meta.n": "1"}).json()["items"]] == [ids[3], ids[1]]
    lines = api.get("space/export", headers={"Accept": "application/jsonl"}).text.splitlines()
    assert sorted(msgspec.json.decode(line)["data"]["id"] for line in lines) == sorted([*ids, mine])
    csv = api.get("space/export", headers={"Accept": "text/csv"}).text.splitlines()
    assert "id" in csv[0] and len(csv) == 7
    assert [s["id"] for s in api.get(f"contact/{contact}/space/list").json()["items"]] == [mine]
    assert_error(other.get(f"contact/{contact}/space/list"), 404, "NOT_FOUND")


def test_scopes_name_the_storage_routes(api, server):
    child = api.post("partner/user/create", json={"name": "kid"}).json()["id"]

    def token(scopes):
        made = api.post(f"partner/user/{child}/token/create", json={"scopes": scopes})
        assert made.status_code == 200, made.text
        return Api(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {made.json()['token']}"})

    full = token([{"resource": "space"}, {"resource": "space/storage"}])
    space_id = full.post("space/create", json={}).json()["id"]
    assert full.post(f"space/{space_id}/storage/upload/a.txt", json={"file": "data:,hi"}).status_code == 200
    reader = token([{"resource": "space/storage", "actions": ["list", "download"]}])
    assert reader.get(f"space/{space_id}/storage/list").status_code == 200
    assert reader.get(f"space/{space_id}/storage/download/a.txt").content == b"hi"
    assert_error(reader.post(f"space/{space_id}/storage/delete/a.txt", json={}), 401, "NOT_AUTHORIZED")
    assert_error(reader.get(f"space/{space_id}/fetch"), 401, "NOT_AUTHORIZED")
    rows_only = token([{"resource": "space"}])
    assert rows_only.get(f"space/{space_id}/fetch").status_code == 200
    assert_error(rows_only.get(f"space/{space_id}/storage/list"), 401, "NOT_AUTHORIZED")
    for c in (full, reader, rows_only):
        c.close()


# --- storage, on both backends -------------------------------------------------------

FILE_MAX = 4 * 1024 * 1024  # the storage servers' BOTKIT_FILE_MAX_BYTES


@pytest.fixture(scope="module", params=["local", "s3"])
def backend(request, database, tmp_path_factory):
    overrides: dict = {"file_max_bytes": FILE_MAX, "rate_limit": 0, "rate_limit_account": 0}
    if request.param == "s3":
        overrides.update(request.getfixturevalue("s3_storage")(f"spaces-{uuid.uuid4().hex[:8]}"))
    data_dir = tmp_path_factory.mktemp("data")
    srv = start_app(database, data_dir=data_dir, **overrides)
    srv.kind, srv.data_dir = request.param, data_dir
    yield srv
    srv.stop()


@pytest.fixture
def sapi(backend, database):
    account, secret = asyncio.run(new_account(database, None, None))
    api = Api(base_url=backend.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    api.account_id, api.token = account, secret
    yield api
    api.close()


def new_space(api) -> str:
    return api.post("space/create", json={"name": "ws"}).json()["id"]


def upload_raw(api, space_id: str, path: str, data: bytes, content_type: str = "text/plain") -> httpx.Response:
    return api.post(f"space/{space_id}/storage/upload/{path}", content=data, headers={"Content-Type": content_type})


def upload(api, space_id: str, path: str, data: bytes, content_type: str = "text/plain") -> dict:
    r = upload_raw(api, space_id, path, data, content_type)
    assert r.status_code == 200, r.text
    return r.json()


def listing(api, space_id: str, path: str = "", **params) -> list[tuple[str, bool]]:
    r = api.get(f"space/{space_id}/storage/list" + (f"/{path}" if path else ""), params=params)
    assert r.status_code == 200, r.text
    return [(e["path"], e["isDirectory"]) for e in r.json()["items"]]


def test_every_way_of_uploading_then_downloading(sapi):
    s = new_space(sapi)
    data = os.urandom(300_000)
    answer = upload(sapi, s, "bin/raw.bin", data, "application/octet-stream")
    assert answer["path"] == "bin/raw.bin" and answer["id"]
    got = sapi.get(f"space/{s}/storage/download/bin/raw.bin")
    assert got.status_code == 200 and got.content == data
    assert (
        got.headers["content-type"] == "application/octet-stream"
        and 'filename="raw.bin"' in (got.headers["content-disposition"])
    )
    ranged = sapi.get(f"space/{s}/storage/download/bin/raw.bin", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    encoded = "data:text/markdown;base64," + base64.b64encode(b"# hi").decode()
    assert sapi.post(f"space/{s}/storage/upload/docs/readme.md", json={"file": encoded}).status_code == 200
    form = sapi.post(f"space/{s}/storage/upload/docs/form.txt", files={"file": ("x.txt", b"form", "text/plain")})
    assert form.status_code == 200, form.text
    assert sapi.get(f"space/{s}/storage/download/docs/readme.md").content == b"# hi"
    assert sapi.get(f"space/{s}/storage/download/docs/form.txt").content == b"form"
    # an upload to a path replaces its content, keeps its id
    again = upload(sapi, s, "bin/raw.bin", b"new")
    assert again["id"] == answer["id"]
    assert sapi.get(f"space/{s}/storage/download/bin/raw.bin").content == b"new"
    # the JSON answer is a URL that works without the token (presigned, or botkit's own)
    link = sapi.get(f"space/{s}/storage/download/docs/readme.md", headers={"Accept": "application/json"}).json()
    assert link["id"] and httpx.get(link["url"], timeout=30).content == b"# hi"
    if "/storage/signed/" in link["url"]:
        forged = link["url"].replace("signature=", "signature=0")
        assert httpx.get(forged, timeout=30).status_code == 401
    # the size limit, and a missing file
    assert_error(upload_raw(sapi, s, "big", b"x" * (FILE_MAX + 1)), 413, "CONTENT_TOO_LARGE")
    assert_error(sapi.get(f"space/{s}/storage/download/big"), 404, "NOT_FOUND")
    assert listing(sapi, s) == [("bin", True), ("docs", True)]


def test_folders_list_like_folders_and_page(sapi):
    s = new_space(sapi)
    for path in ["a-x", "a/b/c.txt", "a/b/d.txt", "a/e.txt", "a0", "z/y"]:
        upload(sapi, s, path, path.encode())
    assert listing(sapi, s) == [("a-x", False), ("a", True), ("a0", False), ("z", True)]
    assert listing(sapi, s, "a") == [("a/b", True), ("a/e.txt", False)]
    assert listing(sapi, s, "a", recursive="true") == [("a/b/c.txt", False), ("a/b/d.txt", False), ("a/e.txt", False)]
    # the Python SDK's form: the folder as a query parameter
    r = sapi.get(f"space/{s}/storage/list", params={"path": "a"})
    assert [e["path"] for e in r.json()["items"]] == ["a/b", "a/e.txt"]
    entry = sapi.get(f"space/{s}/storage/list/a/e.txt").json()["items"]
    assert entry[0]["size"] == 7 and entry[0]["id"] and entry[0]["updatedAt"] > 0
    assert_error(sapi.get(f"space/{s}/storage/list/nothing"), 404, "NOT_FOUND")
    # pages of one, through folders and files alike
    seen, token = [], None
    while True:
        page = sapi.get(f"space/{s}/storage/list", params={"take": 1, **({"nextToken": token} if token else {})}).json()
        seen += [e["path"] for e in page["items"]]
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == ["a-x", "a", "a0", "z"]
    assert_error(sapi.get(f"space/{s}/storage/list/a", params={"nextToken": "zzz"}), 400, "BAD_REQUEST")


def test_copy_move_and_delete_keep_rows_and_bytes_together(sapi):
    s = new_space(sapi)
    upload(sapi, s, "a/one.txt", b"one")
    upload(sapi, s, "a/sub/two.txt", b"two")
    copied = sapi.post(f"space/{s}/storage/copy/a/one.txt", json={"destinationPath": "b/copy.txt"})
    assert copied.json() == {"path": "b/copy.txt"}
    assert sapi.get(f"space/{s}/storage/download/b/copy.txt").content == b"one"
    upload(sapi, s, "a/one.txt", b"changed")  # the copy has bytes of its own
    assert sapi.get(f"space/{s}/storage/download/b/copy.txt").content == b"one"
    assert_error(sapi.post(f"space/{s}/storage/copy/a", json={"destinationPath": "c"}), 400, "BAD_REQUEST")
    # a file moves; a folder moves with everything under it
    assert sapi.post(f"space/{s}/storage/move/b/copy.txt", json={"destinationPath": "b/moved.txt"}).status_code == 200
    assert_error(sapi.get(f"space/{s}/storage/download/b/copy.txt"), 404, "NOT_FOUND")
    assert sapi.post(f"space/{s}/storage/move/a", json={"destinationPath": "c/a"}).status_code == 200
    assert listing(sapi, s, "c/a", recursive="true") == [("c/a/one.txt", False), ("c/a/sub/two.txt", False)]
    assert sapi.get(f"space/{s}/storage/download/c/a/sub/two.txt").content == b"two"
    assert_error(sapi.post(f"space/{s}/storage/move/c", json={"destinationPath": "c/d"}), 400, "BAD_REQUEST")
    assert_error(sapi.post(f"space/{s}/storage/move/c", json={"destinationPath": "b"}), 409, "CONFLICT")
    # a file cannot go where a folder is, nor under a file
    assert_error(upload_raw(sapi, s, "c", b"x"), 409, "CONFLICT")
    assert_error(upload_raw(sapi, s, "b/moved.txt/x", b"x"), 409, "CONFLICT")
    assert_error(sapi.post(f"space/{s}/storage/copy/b/moved.txt", json={"destinationPath": "c"}), 409, "CONFLICT")
    # delete: a file; a folder only when recursive
    assert_error(sapi.post(f"space/{s}/storage/delete/c", json={}), 409, "CONFLICT")
    assert sapi.post(f"space/{s}/storage/delete/c", json={"recursive": True}).json() == {"path": "c"}
    assert sapi.post(f"space/{s}/storage/delete/b/moved.txt", json={}).status_code == 200
    assert_error(sapi.post(f"space/{s}/storage/delete/b/moved.txt", json={}), 404, "NOT_FOUND")
    assert listing(sapi, s) == []


def _blobs(backend, api, space_id: str) -> int | None:
    """How many blobs the local folder holds for the space (None on S3: not looked at)."""
    if backend.kind != "local":
        return None
    folder = backend.data_dir / "files" / api.account_id / "spaces" / space_id
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) if folder.exists() else 0


def test_deleting_a_space_deletes_its_bytes(sapi, backend):
    s = new_space(sapi)
    upload(sapi, s, "a.txt", b"a")
    upload(sapi, s, "a.txt", b"b")  # the replaced blob is gone
    upload(sapi, s, "d/b.txt", b"b")
    assert _blobs(backend, sapi, s) in (None, 2)
    link = sapi.get(f"space/{s}/storage/download/a.txt", headers={"Accept": "application/json"}).json()["url"]
    assert sapi.post(f"space/{s}/delete", json={}).status_code == 200
    assert _blobs(backend, sapi, s) in (None, 0)
    assert httpx.get(link, timeout=30).status_code in (403, 404)  # the bucket's answer, or botkit's


BAD_PATHS = ["..", "a/../b", "./a", "a/.", "a//b", "a\\b", "a\x01b", "x" * 256, "a/" * 600 + "a", "/a"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_refused(api, path):
    s = new_space(api)
    quoted = "/".join(quote(p, safe="").replace(".", "%2E") for p in path.split("/"))
    r = upload_raw(api, s, quoted, b"x")
    assert r.status_code in (400, 404), r.text  # "a/./b" may be resolved by a client: then it is another path
    assert_error(api.post(f"space/{s}/storage/copy/ok", json={"destinationPath": path}), 400, "BAD_REQUEST")


# --- free-form paths ------------------------------------------------------------------

PATH_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(list("/.\\\x00\x7f %?#"))


@given(st.text(PATH_CHARS, max_size=40) | st.text(st.sampled_from("a./"), max_size=12))
def test_the_path_check_is_the_specs_pattern(path):
    """check_path takes exactly what the spec's pattern and bounds say."""
    takes = bool(re.match(space.PATH_PATTERN, path)) and 1 <= len(path) <= space.PATH_MAX
    try:
        space.check_path(path)
        assert takes, path
    except Exception as exc:
        assert getattr(exc, "code", None) == "BAD_REQUEST" and not takes, (path, exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(PATH_CHARS, min_size=1, max_size=30), data=st.binary(max_size=64))
def test_junk_paths_are_a_4xx_or_a_round_trip(api, path, data):
    """Any path in the route or in destinationPath: a 4xx, or stored, listed and read back."""
    s = getattr(test_junk_paths_are_a_4xx_or_a_round_trip, "space", None) or new_space(api)
    test_junk_paths_are_a_4xx_or_a_round_trip.space = s
    quoted = "/".join(quote(p, safe="").replace(".", "%2E") for p in path.split("/"))
    r = upload_raw(api, s, quoted, data, "application/octet-stream")
    assert r.status_code < 500, (path, r.text)
    if r.status_code == 200:
        stored = r.json()["path"]
        space.check_path(stored)
        got = api.get(f"space/{s}/storage/download/{quoted}")
        assert got.status_code == 200 and got.content == data, (path, got.text)
        assert api.post(f"space/{s}/storage/delete/{quoted}", json={"recursive": True}).status_code == 200
    moved = api.post(f"space/{s}/storage/move/nothing", json={"destinationPath": path})
    assert moved.status_code in (400, 404), (path, moved.text)


# --- the official SDKs ----------------------------------------------------------------


def test_the_node_sdk_drives_spaces(server, make_api):
    out = run_node("spaces.mjs", server.url, make_api().token)
    assert out.count("ok ") == 5, out


def test_the_python_sdk_drives_spaces(server, make_api):
    api = make_api()

    async def drive() -> None:
        client = ChatBotKit(secret=api.token, base_url=server.url)
        contact = await client.contact.create({"name": "Ada"})
        made = await client.space.create({"name": "work", "contactId": contact.id})
        await client.space.update(made.id, {"meta": {"a": "1"}})
        got = await client.space.fetch(made.id)
        assert got.name == "work" and got.contact_id == contact.id and got.meta == {"a": "1"}
        assert made.id in [s.id for s in (await client.space.list({"meta": {"a": "1"}})).items]
        streamed = [item.data.id async for item in client.space.list().stream()]
        assert made.id in streamed
        assert [s.id for s in (await client.contact.space.list(contact.id)).items] == [made.id]
        # storage: this SDK lists (the folder as `path`) and deletes; bytes go up over HTTP
        api.post(f"space/{made.id}/storage/upload/docs/a.txt", json={"file": "data:,a"})
        listed = await client.space.storage.list(made.id)
        assert [(e.path, e.is_directory) for e in listed.items] == [("docs", True)] and listed.next_token is None
        inside = await client.space.storage.list(made.id, {"path": "docs", "recursive": True})
        assert [e.path for e in inside.items] == ["docs/a.txt"] and inside.items[0].size == 1
        assert (await client.space.storage.delete(made.id, "docs/a.txt")).path == "docs/a.txt"
        with pytest.raises(APIError) as e:
            await client.space.storage.delete(made.id, "docs/a.txt")
        assert e.value.code == "NOT_FOUND"
        assert (await client.space.delete(made.id)).id == made.id
        with pytest.raises(APIError) as e:
            await client.space.fetch(made.id)
        assert e.value.code == "NOT_FOUND"

    asyncio.run(drive())
