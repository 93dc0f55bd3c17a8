"""The file benchmark (issue 12): a 100 MB file uploaded and downloaded through botkit
(1 worker, local-folder storage) against writing (fsynced) and reading the same bytes
in the same folder directly, with the server's RSS growth while it streams; and a
300-page PDF synced into a dataset's records, with the time it takes. Reads on both
sides start with the file out of the page cache. Bounded in time."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from procs import rss_kb
from targets import TARGETS as TARGETS_ALL

SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024
RUNS = 3
PDF_PAGES = 300
TIME_LIMIT_S = 180

_T = {k: TARGETS_ALL[k] for k in ("file_upload_ratio", "file_download_ratio", "file_rss_mb")}
TARGETS = (
    (
        f"files: 100 MB upload through botkit ≥ {_T['file_upload_ratio']['at_least']:g}× writing the folder directly",
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


def _block(i: int) -> bytes:
    return (i.to_bytes(4, "big") * (CHUNK // 4))[:CHUNK]


async def _body():
    for i in range(SIZE // CHUNK):
        yield _block(i)


def _direct_write(folder: Path) -> float:
    """The same bytes into the same folder, as storage does it: a temp file, fsync, rename."""
    t0 = time.perf_counter()
    tmp = folder / ".bench-direct.tmp"
    with open(tmp, "wb") as out:
        for i in range(SIZE // CHUNK):
            out.write(_block(i))
        out.flush()
        os.fsync(out.fileno())
    tmp.rename(folder / ".bench-direct")
    return SIZE / (time.perf_counter() - t0) / 1e6


def _evict(path: Path) -> None:
    """Out of the page cache (the file is clean after its fsync): a read then comes from the
    disk, for botkit and for the direct read alike, rather than from memory at memcpy speed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _direct_read(folder: Path) -> float:
    _evict(folder / ".bench-direct")
    t0 = time.perf_counter()
    with open(folder / ".bench-direct", "rb") as f:
        while f.read(CHUNK):
            pass
    return SIZE / (time.perf_counter() - t0) / 1e6


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


async def _run(base: str, token: str, pids: Callable[[], list[int]], folder: Path, started: float) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    ups, downs, writes, reads, peak = [], [], [], [], 0
    baseline = sum(rss_kb(p) for p in pids())
    folder.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as c:

        async def watch_rss() -> None:
            nonlocal peak
            while True:
                peak = max(peak, sum(rss_kb(p) for p in pids()) - baseline)
                await asyncio.sleep(0.05)

        watcher = asyncio.get_running_loop().create_task(watch_rss())
        try:
            for _ in range(RUNS):
                if time.monotonic() - started > TIME_LIMIT_S:
                    break
                file_id = (await c.post("/v1/file/create", json={"name": "big.bin"})).json()["id"]
                t0 = time.perf_counter()
                r = await c.post(
                    f"/v1/file/{file_id}/upload", content=_body(), headers={"Content-Type": "application/octet-stream"}
                )
                ups.append(SIZE / (time.perf_counter() - t0) / 1e6)
                if r.status_code != 200:
                    raise RuntimeError(f"upload answered {r.status_code}: {r.text[:200]}")
                for stored in folder.glob(f"*/{file_id}"):
                    _evict(stored)
                t0 = time.perf_counter()
                got = 0
                async with c.stream("GET", f"/v1/file/{file_id}/download") as d:
                    async for chunk in d.aiter_raw(CHUNK):
                        got += len(chunk)
                downs.append(SIZE / (time.perf_counter() - t0) / 1e6)
                if got != SIZE:
                    raise RuntimeError(f"downloaded {got} of {SIZE} bytes")
                await c.post(f"/v1/file/{file_id}/delete", json={})
                # directly, in the same round (the disk's speed drifts on a shared machine)
                writes.append(await asyncio.to_thread(_direct_write, folder))
                reads.append(await asyncio.to_thread(_direct_read, folder))
                (folder / ".bench-direct").unlink(missing_ok=True)
        finally:
            watcher.cancel()
        direct_w, direct_r = statistics.median(writes), statistics.median(reads)

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
    return {
        "upload_mb_s": round(med(ups), 1),
        "download_mb_s": round(med(downs), 1),
        "direct_write_mb_s": round(direct_w, 1),
        "direct_read_mb_s": round(direct_r, 1),
        "upload_ratio": round(med(ups) / direct_w, 2),
        "download_ratio": round(med(downs) / direct_r, 2),
        "rss_growth_mb": round(peak / 1024, 1),
        "runs": len(ups),
        "pdf_pages": PDF_PAGES,
        "pdf_sync_s": round(pdf_seconds, 2),
        "pdf_status": status,
        "pdf_records": records,
    }


def measure(base: str, token: str, pids: Callable[[], list[int]], folder: Path) -> dict:
    """`base`: botkit 1 worker; `pids`: its processes; `folder`: its storage folder."""
    return asyncio.run(_run(base, token, pids, folder, time.monotonic()))
