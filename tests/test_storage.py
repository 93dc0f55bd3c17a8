"""File-content storage (store/files.py): one contract, run against both backends — the
local folder and S3Storage on a real SeaweedFS (the `seaweedfs` fixture) — plus what
only S3 has (signed URLs, multipart clean-up, start-up checks) and the configuration.

Each backend's client lives on one event loop for the whole module (an aiobotocore
client belongs to the loop that made it), driven from the tests by `run`."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botkit.errors import BadRequest, ContentTooLarge, NotFound, StartupError
from botkit.store.files import (
    PART_SIZE,
    LocalStorage,
    S3Storage,
    Storage,
    content_disposition,
    from_url,
)

MiB = 1024 * 1024
BIG = 20 * MiB  # three S3 parts: 8 + 8 + 4 MiB


@pytest.fixture(scope="module")
def runner():
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module", params=["local", "s3"])
def storage(request, runner, tmp_path_factory) -> Iterable[Storage]:
    if request.param == "local":
        store: Storage = LocalStorage(tmp_path_factory.mktemp("files"))
    else:
        s3 = request.getfixturevalue("seaweedfs")
        store = from_url(s3.storage_url("botkit-files"), Path("/nonexistent"), env=s3.env())
    runner.run(store.start())
    yield store
    runner.run(store.close())


@pytest.fixture
def run(runner):
    def run(coro, timeout: float = 120):
        async def bounded():
            with anyio.fail_after(timeout):
                return await coro

        return runner.run(bounded())

    return run


def key(name: str = "f") -> str:
    return f"acct-{uuid.uuid4().hex[:12]}/{name}"


def body(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def generated(total: int, *, fail_after: int | None = None, hang_after: int | None = None):
    """`total` bytes in 64 KiB chunks, made on the fly (never held whole)."""
    rng = random.Random(total)
    sent = 0
    while sent < total:
        if fail_after is not None and sent >= fail_after:
            raise ConnectionResetError("the client went away")
        if hang_after is not None and sent >= hang_after:
            await anyio.sleep_forever()
        n = min(64 * 1024, total - sent)
        sent += n
        yield rng.randbytes(n)


def expected_sha256(total: int) -> str:
    rng, digest, sent = random.Random(total), hashlib.sha256(), 0
    while sent < total:
        n = min(64 * 1024, total - sent)
        digest.update(rng.randbytes(n))
        sent += n
    return digest.hexdigest()


async def read_all(store: Storage, k: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in store.read(k, start, end)])


async def read_digest(store: Storage, k: str) -> tuple[int, str, int]:
    """Size, sha256 and the largest chunk, read in constant memory."""
    digest, size, largest = hashlib.sha256(), 0, 0
    async for chunk in store.read(k):
        digest.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    return size, digest.hexdigest(), largest


async def leftovers(store: Storage) -> list[str]:
    """What a failed write could have left: temporary files, or open multipart uploads."""
    if isinstance(store, LocalStorage):
        return [str(p) for p in store.root.rglob("*.part")]
    assert isinstance(store, S3Storage)
    client = store._c()
    uploads = await client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in uploads.get("Uploads", [])]


# --- the contract, on both backends ----------------------------------------------------------


@pytest.fixture(scope="module")
def big(storage, runner) -> str:
    k = key("big.bin")
    written = runner.run(storage.write(k, generated(BIG), limit=BIG, content_type="application/octet-stream"))
    assert (written.size, written.sha256) == (BIG, expected_sha256(BIG))
    return k


def test_a_multipart_sized_body_round_trips(storage, big, run):
    size, sha, largest = run(read_digest(storage, big))
    assert (size, sha) == (BIG, expected_sha256(BIG))
    assert largest <= 1 * MiB  # streamed, not read whole
    info = run(storage.stat(big))
    assert info is not None and info.size == BIG and info.content_type == "application/octet-stream"
    assert info.etag
    if isinstance(storage, S3Storage):
        assert info.etag.endswith("-3")  # a multipart upload of 8 + 8 + 4 MiB


def test_a_body_of_whole_parts(storage, run):
    k = key()
    written = run(storage.write(k, generated(2 * PART_SIZE), limit=2 * PART_SIZE, content_type="text/plain"))
    assert (written.size, written.sha256) == (2 * PART_SIZE, expected_sha256(2 * PART_SIZE))
    assert run(read_digest(storage, k))[:2] == (2 * PART_SIZE, expected_sha256(2 * PART_SIZE))
    run(storage.delete(k))


def test_writes_and_reads_run_in_constant_memory(storage, run):
    k = key()
    tracemalloc.start()
    try:
        run(storage.write(k, generated(5 * PART_SIZE), limit=BIG * 4, content_type="application/octet-stream"))
        wrote = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        run(read_digest(storage, k))
        read = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    run(storage.delete(k))
    # S3: the part being gathered, the part being sent, and the client's copy of it
    assert wrote < (4 * PART_SIZE if isinstance(storage, S3Storage) else 4 * MiB)
    assert read < 4 * MiB


@pytest.mark.parametrize(
    "start, end",
    [
        (0, 0),  # the first byte
        (BIG - 1, BIG - 1),  # the last byte
        (BIG - 1, None),
        (PART_SIZE - 3, PART_SIZE + 2),  # across a part boundary
        (1_000, 5 * MiB),  # the middle
        (BIG - 10, BIG + 100),  # an end past the end is clamped
        (0, None),
    ],
)
def test_ranges_agree_with_slicing(storage, big, run, start, end):
    whole = expected_body(BIG)
    assert run(read_all(storage, big, start, end)) == whole[start : (None if end is None else end + 1)]


def test_local_reads_agree_whether_the_kernel_has_the_bytes_in_memory_or_not(tmp_path, run, monkeypatch):
    """A download takes what the page cache has without a thread (RWF_NOWAIT) and reads the
    rest in one: both ways give the same bytes, also where RWF_NOWAIT does not exist."""
    import botkit.store.files as files

    storage = LocalStorage(tmp_path)
    run(storage.start())
    body = expected_body(3 * files.READ_CHUNK + 17)
    run(storage.write("a/b", chunks(body), limit=len(body), content_type="application/octet-stream"))
    assert run(read_all(storage, "a/b", 5, None)) == body[5:]
    monkeypatch.setattr(files, "_NOWAIT", None)  # every chunk through the worker thread
    assert run(read_all(storage, "a/b", 5, None)) == body[5:]
    assert (
        run(read_all(storage, "a/b", files.READ_CHUNK - 1, files.READ_CHUNK))
        == body[files.READ_CHUNK - 1 : files.READ_CHUNK + 1]
    )


def test_a_range_starting_past_the_end_is_empty(storage, big, run):
    assert run(read_all(storage, big, BIG)) == b""
    assert run(read_all(storage, big, BIG + 5, BIG + 10)) == b""


def test_a_bad_range_is_refused(storage, big, run):
    for start, end in ((-1, None), (10, 9)):
        with pytest.raises(BadRequest):
            run(read_all(storage, big, start, end))


_BODIES: dict[int, bytes] = {}


def expected_body(total: int) -> bytes:
    if total not in _BODIES:
        rng, out, sent = random.Random(total), bytearray(), 0
        while sent < total:
            n = min(64 * 1024, total - sent)
            out += rng.randbytes(n)
            sent += n
        _BODIES[total] = bytes(out)
    return _BODIES[total]


def test_an_empty_file(storage, run):
    k = key()
    written = run(storage.write(k, chunks(b""), limit=10, content_type="text/plain"))
    assert (written.size, written.sha256) == (0, hashlib.sha256().hexdigest())
    assert run(read_all(storage, k)) == b""
    assert run(read_all(storage, k, 0, 10)) == b""
    assert run(storage.stat(k)).size == 0


def test_a_body_of_exactly_the_limit_is_stored(storage, run):
    k = key()
    run(storage.write(k, chunks(b"x" * 1000, 7), limit=1000, content_type="text/plain"))
    assert run(storage.stat(k)).size == 1000


@pytest.mark.parametrize("limit", [100_000, 12 * MiB])  # under one part; past the first part
def test_exceeding_the_limit_mid_stream_stores_nothing(storage, run, limit):
    k = key()
    with pytest.raises(ContentTooLarge):
        run(storage.write(k, generated(BIG), limit=limit, content_type="application/octet-stream"))
    assert run(storage.stat(k)) is None
    with pytest.raises(NotFound):
        run(read_all(storage, k))
    assert k not in str(run(leftovers(storage)))


@pytest.mark.parametrize("fail_after", [0, 1 * MiB, 10 * MiB])
def test_a_producer_that_fails_mid_stream_stores_nothing_and_keeps_the_old_content(storage, run, fail_after):
    k = key()
    run(storage.write(k, chunks(b"version one"), limit=BIG, content_type="text/plain"))
    with pytest.raises(ConnectionResetError):
        run(storage.write(k, generated(BIG, fail_after=fail_after), limit=BIG, content_type="text/plain"))
    assert run(read_all(storage, k)) == b"version one"
    assert k not in str(run(leftovers(storage)))


def test_a_cancelled_write_stores_nothing(storage, run):
    k = key()

    async def cancelled():
        with anyio.move_on_after(1.5):
            await storage.write(k, generated(BIG, hang_after=10 * MiB), limit=BIG, content_type="text/plain")
            raise AssertionError("the write finished")

    run(cancelled())
    assert run(storage.stat(k)) is None
    assert k not in str(run(leftovers(storage)))


def test_an_overwrite_replaces_the_content(storage, run):
    k = key()
    run(storage.write(k, chunks(b"one"), limit=100, content_type="text/plain"))
    run(storage.write(k, chunks(b"two!"), limit=100, content_type="application/json"))
    assert run(read_all(storage, k)) == b"two!"
    info = run(storage.stat(k))
    assert (info.size, info.content_type) == (4, "application/json")


def test_delete(storage, run):
    k = key()
    run(storage.write(k, chunks(b"bytes"), limit=100, content_type="text/plain"))
    run(storage.delete(k))
    assert run(storage.stat(k)) is None
    with pytest.raises(NotFound):
        run(read_all(storage, k))
    run(storage.delete(k))  # a missing key is fine
    run(storage.delete(key()))


def test_a_missing_key(storage, run):
    k = key()
    assert run(storage.stat(k)) is None
    with pytest.raises(NotFound):
        run(read_all(storage, k))
    with pytest.raises(NotFound):
        run(read_all(storage, k, 5, 10))


def test_delete_prefix_removes_more_than_a_page_and_nothing_beside_it(storage, run):
    account = f"acct-{uuid.uuid4().hex[:12]}"
    keys = [f"{account}/f{i:04d}" for i in range(1_010)] + [f"{account}/nested/deeper/f"]
    neighbours = [f"{account}0/f", f"{account}-x/f"]  # share the string prefix, not the folder

    async def fill():
        limiter = anyio.Semaphore(32)

        async def one(k: str) -> None:
            async with limiter:
                await storage.write(k, chunks(k.encode()), limit=100, content_type="text/plain")

        async with anyio.create_task_group() as tg:
            for k in keys + neighbours:
                tg.start_soon(one, k)

    run(fill())
    assert run(storage.delete_prefix(account)) == len(keys)
    for k in (keys[0], keys[-1], keys[500]):
        assert run(storage.stat(k)) is None
    for k in neighbours:
        assert run(read_all(storage, k)) == k.encode()
    assert run(storage.delete_prefix(account + "/")) == 0  # again, and with the slash
    assert run(storage.delete_prefix(f"acct-{uuid.uuid4().hex}")) == 0


BAD_KEYS = ["", "/abs/path", "a//b", "a/", "../x", "a/../b", "a/./b", "./a", "a/.hidden", "a\\b", "a\x00b", "x" * 1100]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_bad_keys_are_refused(storage, run, bad):
    for call in (
        lambda: storage.write(bad, chunks(b"x"), limit=10, content_type="text/plain"),
        lambda: read_all(storage, bad),
        lambda: storage.stat(bad),
        lambda: storage.delete(bad),
        lambda: storage.presign_put(bad, "text/plain", 60),
        lambda: storage.presign_get(bad, 60),
    ):
        with pytest.raises(BadRequest):
            run(call())
    if bad not in ("a/",):  # a folder with its trailing slash is a fine prefix
        with pytest.raises(BadRequest):
            run(storage.delete_prefix(bad))


def test_bad_content_types_are_refused(storage, run):
    for bad in ("text", "text/plain\r\nX-Evil: 1", ""):
        with pytest.raises(BadRequest):
            run(storage.write(key(), chunks(b"x"), limit=10, content_type=bad))


@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    ranges=st.lists(st.tuples(st.integers(0, 3100), st.one_of(st.none(), st.integers(0, 3100))), max_size=4),
)
def test_any_chunking_stores_the_same_bytes_and_ranges_agree_with_slicing(storage, run, data, cuts, ranges):
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)] + [b""]  # empty chunks too

    async def given_chunks():
        for p in pieces:
            yield p

    k = key()
    written = run(storage.write(k, given_chunks(), limit=len(data), content_type="application/octet-stream"))
    assert (written.size, written.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert run(read_all(storage, k)) == data
    for start, end in ranges:
        if end is not None and end < start:
            start, end = end, start
        assert run(read_all(storage, k, start, end)) == data[start : (None if end is None else end + 1)]
    run(storage.delete(k))


# --- signed URLs ------------------------------------------------------------------------


def test_presigned_urls(storage, run):
    k = key("report.pdf")
    put = run(storage.presign_put(k, "application/pdf", 60))
    got = run(storage.presign_get(k, 60, "Quarterly report – €.pdf", "application/pdf"))
    if isinstance(storage, LocalStorage):
        assert put is None and got is None  # botkit signs its own URLs for the local folder
        return
    url, headers = put
    assert headers == {"Content-Type": "application/pdf"}
    content = body(300_000, seed=7)
    with httpx.Client(timeout=30) as http:
        # the content type is part of the signature
        assert http.put(url, content=b"x", headers={"Content-Type": "text/html"}).status_code == 403
        assert run(storage.stat(k)) is None
        assert http.put(url, content=content, headers=headers).status_code == 200
        info = run(storage.stat(k))
        assert (info.size, info.content_type) == (len(content), "application/pdf")
        answer = http.get(got)
        assert answer.status_code == 200 and answer.content == content
        assert answer.headers["content-type"] == "application/pdf"
        assert answer.headers["content-disposition"] == content_disposition("Quarterly report – €.pdf")
        assert http.get(got, headers={"Range": "bytes=10-19"}).content == content[10:20]
        assert http.get(got.replace("Signature=", "Signature=0")).status_code == 403  # tampered


def test_an_expired_presigned_url_is_refused(storage, run):
    if isinstance(storage, LocalStorage):
        pytest.skip("the local backend makes no signed URLs")
    k = key()
    run(storage.write(k, chunks(b"secret"), limit=100, content_type="text/plain"))
    lasting = run(storage.presign_get(k, 60))
    get = run(storage.presign_get(k, 1))
    put, headers = run(storage.presign_put(key(), "text/plain", 1))
    with httpx.Client(timeout=30) as http:
        assert http.get(lasting).status_code == 200  # the same URL with time left works
        time.sleep(2.1)  # (a 1 s URL may already be stale on a loaded machine, so it is only tried late)
        assert http.get(get).status_code == 403
        assert http.put(put, content=b"late", headers=headers).status_code == 403
        assert http.get(lasting).status_code == 200


def test_presign_lifetimes_are_bounded(storage, run):
    for seconds in (0, -1, 7 * 24 * 3600 + 1):
        with pytest.raises(BadRequest):
            run(storage.presign_get(key(), seconds))
        with pytest.raises(BadRequest):
            run(storage.presign_put(key(), "text/plain", seconds))


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name():
    assert content_disposition('a "b".txt') == "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
    assert content_disposition("ü.pdf", "inline") == "inline; filename=\"_.pdf\"; filename*=UTF-8''%C3%BC.pdf"


# --- S3 only: start-up -----------------------------------------------------------------------


def test_a_missing_bucket_is_created_at_start_unless_told_not_to(seaweedfs, run):
    bucket = f"botkit-{uuid.uuid4().hex[:10]}"
    refused = from_url(seaweedfs.storage_url(bucket) + "&create=false", Path("/x"), env=seaweedfs.env())
    with pytest.raises(StartupError, match="does not exist"):
        run(refused.start())
    store = from_url(seaweedfs.storage_url(bucket), Path("/x"), env=seaweedfs.env())
    run(store.start())
    try:
        run(store.write("a/b", chunks(b"hi"), limit=10, content_type="text/plain"))
        assert run(read_all(store, "a/b")) == b"hi"
    finally:
        run(store.close())
    again = from_url(seaweedfs.storage_url(bucket) + "&create=false", Path("/x"), env=seaweedfs.env())
    run(again.start())  # now it exists
    run(again.close())


def test_a_key_prefix_in_the_url_keeps_botkit_in_its_folder(seaweedfs, run):
    store = from_url(
        seaweedfs.storage_url("botkit-files").replace("?", "/tenant-a/botkit?"), Path("/x"), env=seaweedfs.env()
    )
    assert isinstance(store, S3Storage)
    run(store.start())
    try:
        run(store.write("acct/f", chunks(b"hi"), limit=10, content_type="text/plain"))

        async def listed():
            page = await store._c().list_objects_v2(Bucket="botkit-files", Prefix="tenant-a/")
            return [o["Key"] for o in page.get("Contents", [])]

        assert run(listed()) == ["tenant-a/botkit/acct/f"]
        assert run(store.delete_prefix("acct")) == 1
    finally:
        run(store.close())


def test_no_credentials_stop_the_start(run, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = from_url("s3://botkit-files?endpoint=http://127.0.0.1:9", Path("/x"), env={})
    with pytest.raises(StartupError, match="no credentials"):
        run(store.start())


def test_presigned_urls_name_the_public_endpoint(seaweedfs, run):
    public = seaweedfs.endpoint.replace("127.0.0.1", "localhost")
    store = from_url(seaweedfs.storage_url("botkit-files") + f"&public={public}", Path("/x"), env=seaweedfs.env())
    run(store.start())
    try:
        k = key()
        run(store.write(k, chunks(b"through the front door"), limit=100, content_type="text/plain"))
        url = run(store.presign_get(k, 60))
        put, headers = run(store.presign_put(key(), "text/plain", 60))
        assert url.startswith(public + "/botkit-files/") and put.startswith(public + "/botkit-files/")
        with httpx.Client(timeout=30) as http:
            assert http.get(url).content == b"through the front door"
            assert http.put(put, content=b"in", headers=headers).status_code == 200
    finally:
        run(store.close())


def test_wrong_credentials_stop_the_start(seaweedfs, run):
    env = {**seaweedfs.env(), "BOTKIT_STORAGE_SECRET_ACCESS_KEY": "wrong"}
    store = from_url(seaweedfs.storage_url("botkit-files"), Path("/x"), env=env)
    with pytest.raises(StartupError, match="access denied"):
        run(store.start())


def test_a_store_that_does_not_answer_times_out(run):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = S3Storage(
            "botkit-files", endpoint=f"http://127.0.0.1:{port}", access_key_id="a", secret_access_key="b", timeout=0.5
        )
        began = time.monotonic()
        with pytest.raises(StartupError, match="did not answer"):
            run(store.start())
        assert time.monotonic() - began < 3


# --- configuration ----------------------------------------------------------------------------


def test_from_url_defaults_to_the_data_folder(tmp_path):
    store = from_url(None, tmp_path)
    assert isinstance(store, LocalStorage) and store.root == tmp_path / "files"
    assert isinstance(from_url("", tmp_path), LocalStorage)
    other = from_url("file:///srv/botkit-files", tmp_path)
    assert isinstance(other, LocalStorage) and other.root == Path("/srv/botkit-files")


def test_from_url_reads_an_s3_url():
    env = {"BOTKIT_STORAGE_ACCESS_KEY_ID": "id", "BOTKIT_STORAGE_SECRET_ACCESS_KEY": "secret"}
    store = from_url(
        "s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:8333&region=eu-west-1&public=https://files.example.com"
        "&timeout=5",
        Path("/x"),
        env=env,
    )
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix, store.endpoint, store.region) == (
        "my-bucket",
        "some/prefix/",
        "http://127.0.0.1:8333",
        "eu-west-1",
    )
    assert (store.public_endpoint, store.timeout, store.create_bucket) == ("https://files.example.com", 5.0, True)
    aws = from_url("s3://my-bucket", Path("/x"), env={"AWS_REGION": "ap-south-1"})
    assert isinstance(aws, S3Storage) and (aws.endpoint, aws.region, aws.prefix) == (None, "ap-south-1", "")


@pytest.mark.parametrize(
    "url, problem",
    [
        ("ftp://host/x", "unknown scheme"),
        ("file://relative/path", "file:///absolute"),
        ("s3://", "not a valid bucket"),
        ("s3://Upper_Case", "not a valid bucket"),
        ("s3://ab", "not a valid bucket"),
        ("s3://key:secret@bucket", "no credentials in the URL"),
        ("s3://bucket?endpoint=127.0.0.1:8333", "endpoint must be an http"),
        ("s3://bucket?endpont=http://x", "unknown option endpont"),
        ("s3://bucket?create=maybe", "create must be"),
        ("s3://bucket?timeout=soon", "timeout must be"),
        ("s3://bucket?timeout=0", "timeout must be"),
        ("s3://bucket/a/../b", "the key prefix"),
    ],
)
def test_a_malformed_url_is_a_clear_startup_error(url, problem):
    with pytest.raises(StartupError, match=problem.replace("(", r"\(")):
        from_url(url, Path("/x"), env={})


def test_half_the_credentials_is_an_error():
    with pytest.raises(StartupError, match="both"):
        from_url("s3://bucket", Path("/x"), env={"BOTKIT_STORAGE_ACCESS_KEY_ID": "id"})
