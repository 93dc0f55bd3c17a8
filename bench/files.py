"""The file benchmark (issue 12): a 100 MB file uploaded and downloaded through botkit
(1 worker, local-folder storage) against writing (fsynced) and reading the same bytes in
the same folder directly, with the server's RSS growth while it streams; and a 300-page PDF
synced into a dataset's records, with the time it takes.

Also measured, as a reference and not a target: the same transfers through a bare socket
server (`python files.py bare PORT FOLDER`: blocking sockets, no HTTP framework, the upload
hashed with SHA-256 as botkit does), so what is the framework's and what is the machine's
(the client shares the cores with the server) shows. The client is the standard library's
http.client in a thread, so that it is not what is measured. Each round runs botkit, the
bare server and the direct way, in alternating order (the disk's and the VM's memory speed
drift); the ratios are the medians of the rounds' ratios. Reads start with the file out of
the page cache. Bounded in time."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

try:
    from procs import free_port, rss_kb, stop_group
    from targets import TARGETS as TARGETS_ALL
except ImportError:  # run as the bare server, outside the bench's folder
    pass

SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024
RUNS = 5
PDF_PAGES = 300
TIME_LIMIT_S = 240

if "TARGETS_ALL" in globals():
    _T = {k: TARGETS_ALL[k] for k in ("file_upload_ratio", "file_download_ratio", "file_rss_mb")}
    TARGETS = (
        (
            f"files: 100 MB upload through botkit ≥ {_T['file_upload_ratio']['at_least']:g}× "
            "writing the folder directly",
            "upload_ratio",
            _T["file_upload_ratio"]["at_least"],
        ),
        (
            f"files: 100 MB download through botkit ≥ {_T['file_download_ratio']['at_least']:g}× reading it directly",
            "download_ratio",
            _T["file_download_ratio"]["at_least"],
        ),
        (
            f"files: server RSS growth while streaming 100 MB < {_T['file_rss_mb']['below']:g} MB",
            "rss_growth_mb",
            _T["file_rss_mb"]["below"],
        ),
    )

BLOCKS = [(i.to_bytes(4, "big") * (CHUNK // 4)) for i in range(SIZE // CHUNK)]


def _evict(path: Path) -> None:
    """Out of the page cache (the file is clean after its fsync): a read then comes from the
    disk, for botkit and for the direct read alike, rather than from memory at memcpy speed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --- the three ways: directly, through an HTTP server (botkit or the bare one) ------------------


def _direct_write(path: Path) -> float:
    """The same bytes into the same folder, as storage does it: a temp file, fsync, rename."""
    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        for block in BLOCKS:
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    tmp.rename(path)
    return SIZE / (time.perf_counter() - t0) / 1e6


def _direct_read(path: Path) -> float:
    _evict(path)
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass
    return SIZE / (time.perf_counter() - t0) / 1e6


def _http_upload(port: int, path: str, headers: dict) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        t0 = time.perf_counter()
        conn.request(
            "POST",
            path,
            body=iter(BLOCKS),
            headers={**headers, "Content-Type": "application/octet-stream", "Content-Length": str(SIZE)},
        )
        r = conn.getresponse()
        body = r.read()
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    if r.status != 200:
        raise RuntimeError(f"upload to {path} answered {r.status}: {body[:200]!r}")
    return SIZE / seconds / 1e6


def _http_download(port: int, path: str, headers: dict, stored: Path) -> float:
    _evict(stored)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    buf, got = memoryview(bytearray(CHUNK)), 0
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        while n := r.readinto(buf):
            got += n
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    if r.status != 200 or got != SIZE:
        raise RuntimeError(f"download of {path} answered {r.status} with {got} of {SIZE} bytes")
    return SIZE / seconds / 1e6


# --- the bare server: what a socket and the disk do without any framework -----------------------


def _bare_serve(port: int, folder: Path) -> None:
    """One connection at a time. `POST /<name>` with Content-Length: the body into
    folder/<name> (hashed, temp file, fsync, rename); `GET /<name>`: that file."""
    server = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = server.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (got := conn.recv(65536)):
                head += got
            if b"\r\n\r\n" not in head:
                continue  # a probe: connected and closed
            head, rest = head.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split()[:2]
            path = folder / target.strip("/")
            if method == "POST":
                length = next(
                    int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
                )
                digest, buf = hashlib.sha256(rest), memoryview(bytearray(CHUNK))
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb", buffering=0) as out:
                    out.write(rest)
                    got = len(rest)
                    while got < length:
                        n = conn.recv_into(buf)
                        if not n:
                            break
                        digest.update(buf[:n])
                        out.write(buf[:n])
                        got += n
                    os.fsync(out.fileno())
                tmp.rename(path)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                size = path.stat().st_size
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
                with open(path, "rb") as f:
                    while block := f.read(CHUNK):
                        conn.sendall(block)


def _pdf(pages: int) -> bytes:
    """A plain PDF with a paragraph of text on each page (no library needed to write one)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    font_id = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for n in range(pages):
        text = f"Page {n + 1}: the warehouse ships order batch {n * 7 % 101} on weekday {n % 5}.".encode()
        stream = b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (content_id, font_id)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % pages
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


async def _round(c: httpx.AsyncClient, port: int, bare: int, headers: dict, folder: Path, first: bool) -> dict:
    """One round: botkit, the bare server and directly, in this order or the reverse."""
    file_id = (await c.post("/v1/file/create", json={"name": "big.bin"})).json()["id"]

    async def botkit() -> tuple[float, float]:
        up = await asyncio.to_thread(_http_upload, port, f"/v1/file/{file_id}/upload", headers)
        stored = next(folder.glob(f"*/{file_id}"))
        down = await asyncio.to_thread(_http_download, port, f"/v1/file/{file_id}/download", headers, stored)
        return up, down

    async def bare_server() -> tuple[float, float]:
        up = await asyncio.to_thread(_http_upload, bare, "/.bench-bare", {})
        return up, await asyncio.to_thread(_http_download, bare, "/.bench-bare", {}, folder / ".bench-bare")

    async def direct() -> tuple[float, float]:
        path = folder / ".bench-direct"
        return await asyncio.to_thread(_direct_write, path), await asyncio.to_thread(_direct_read, path)

    ways = [botkit, bare_server, direct]
    got = {}
    for way in ways if first else reversed(ways):
        got[way.__name__] = await way()
    await c.post(f"/v1/file/{file_id}/delete", json={})
    for name in (".bench-bare", ".bench-direct"):
        (folder / name).unlink(missing_ok=True)
    return got


async def _run(base: str, token: str, pids: Callable[[], list[int]], folder: Path, started: float) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    rounds, peak = [], 0
    baseline = sum(rss_kb(p) for p in pids())
    folder.mkdir(parents=True, exist_ok=True)
    bare = free_port()
    bare_proc = subprocess.Popen(
        [sys.executable, __file__, "bare", str(bare), str(folder)], start_new_session=True, stdout=subprocess.DEVNULL
    )
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as c:

        async def watch_rss() -> None:
            nonlocal peak
            while True:
                peak = max(peak, sum(rss_kb(p) for p in pids()) - baseline)
                await asyncio.sleep(0.05)

        watcher = asyncio.get_running_loop().create_task(watch_rss())
        try:
            for _ in range(50):  # the bare server is listening within a second or two
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", bare)) == 0:
                        break
                await asyncio.sleep(0.1)
            for i in range(RUNS):
                if time.monotonic() - started > TIME_LIMIT_S:
                    break
                rounds.append(await _round(c, port, bare, headers, folder, first=i % 2 == 0))
        finally:
            watcher.cancel()
            stop_group(bare_proc)

        # a 300-page PDF into a dataset's records
        dataset = (await c.post("/v1/dataset/create", json={"name": "manual"})).json()["id"]
        pdf = (await c.post("/v1/file/create", json={"name": "manual.pdf"})).json()["id"]
        await c.post(f"/v1/dataset/{dataset}/file/{pdf}/attach", json={})
        t0 = time.perf_counter()
        await c.post(f"/v1/file/{pdf}/upload", content=_pdf(PDF_PAGES), headers={"Content-Type": "application/pdf"})
        status = None
        while time.perf_counter() - t0 < 120:
            status = (await c.get(f"/v1/file/{pdf}/fetch")).json().get("syncStatus")
            if status in ("synced", "error"):
                break
            await asyncio.sleep(0.05)
        pdf_seconds = time.perf_counter() - t0
        records = 0
        cursor = None
        while True:
            page = (
                await c.get(
                    f"/v1/dataset/{dataset}/record/list", params={"take": 100, **({"cursor": cursor} if cursor else {})}
                )
            ).json()
            records += len(page["items"])
            if not page["items"]:
                break
            cursor = page["cursor"]
    med = statistics.median

    def figure(way: str, i: int) -> float:
        return round(med(r[way][i] for r in rounds), 1)

    def ratio(way: str, i: int) -> float:
        return round(med(r["botkit"][i] / r[way][i] for r in rounds), 2)

    return {
        "upload_mb_s": figure("botkit", 0),
        "download_mb_s": figure("botkit", 1),
        "direct_write_mb_s": figure("direct", 0),
        "direct_read_mb_s": figure("direct", 1),
        "bare_upload_mb_s": figure("bare_server", 0),
        "bare_download_mb_s": figure("bare_server", 1),
        "upload_ratio": ratio("direct", 0),
        "download_ratio": ratio("direct", 1),
        "upload_bare_ratio": ratio("bare_server", 0),
        "download_bare_ratio": ratio("bare_server", 1),
        "rss_growth_mb": round(peak / 1024, 1),
        "runs": len(rounds),
        "pdf_pages": PDF_PAGES,
        "pdf_sync_s": round(pdf_seconds, 2),
        "pdf_status": status,
        "pdf_records": records,
    }


def measure(base: str, token: str, pids: Callable[[], list[int]], folder: Path) -> dict:
    """`base`: botkit 1 worker; `pids`: its processes; `folder`: its storage folder."""
    return asyncio.run(_run(base, token, pids, folder, time.monotonic()))


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    _bare_serve(int(sys.argv[2]), Path(sys.argv[3]))
