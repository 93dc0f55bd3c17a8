"""File content: the bytes of uploaded files, in a local folder (the default) or in any
S3-compatible object store. The rows that describe files live in PostgreSQL; this
module only keeps bytes under keys that botkit makes (`<accountId>/<fileId>`).

Both backends behave the same (tests/test_storage.py runs one contract against both):
- `write` streams an async iterator of chunks in constant memory, computes the size and
  the SHA-256 on the way, and stores the object only when it is complete: a body over
  `limit` (errors.ContentTooLarge), a failing producer or a cancellation leaves nothing
  (and an earlier object under the same key untouched);
- `read` streams a byte range (inclusive end, as in HTTP) in constant memory; a missing
  key raises errors.NotFound at the first iteration, a range that starts past the end
  yields nothing, an end past the end is clamped;
- `stat`, `delete` (a missing key is fine), `delete_prefix` (every key under a folder:
  `delete_prefix("acct")` removes "acct/..." and never "acct2/...");
- `presign_put` / `presign_get`: URLs a client uses to move the bytes directly to or
  from the object store; None from the local backend (botkit serves those itself).

Keys are checked anyway (`check_key`): no empty segments, no segment starting with a
dot (so no `..`, and no clash with the local backend's temporary and side files), no
absolute paths, backslashes or control characters.

Configuration: `from_url(BOTKIT_STORAGE_URL, data_dir)` (see its docstring)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
import anyio.to_thread

from ..errors import ApiError, BadRequest, ContentTooLarge, InternalError, NotFound, StartupError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

log = logging.getLogger("botkit.store")

MAX_KEY_BYTES = 1024  # S3's limit
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
READ_CHUNK = 256 * 1024  # measured: faster than 1 and 4 MiB (the copies stay in the cache)
LOCAL_FLUSH = 1024 * 1024  # bytes gathered before one write to the file (in a thread)
PART_SIZE = 8 * 1024 * 1024  # S3 multipart: at least 5 MiB (but the last); 10,000 parts max
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(?:\s*;\s*[\w.+-]+=(?:[\w.+-]+|\"[^\"\r\n]*\"))*$", re.ASCII)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class Written:
    size: int
    sha256: str  # hex


@dataclass(frozen=True, slots=True)
class Stat:
    size: int
    content_type: str | None
    etag: str | None  # opaque; changes when the content changes


class Storage(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, key: str, chunks: AsyncIterator[bytes], *, limit: int, content_type: str) -> Written: ...
    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    async def stat(self, key: str) -> Stat | None: ...
    async def delete(self, key: str) -> None: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def presign_put(self, key: str, content_type: str, seconds: int) -> tuple[str, dict[str, str]] | None: ...
    async def presign_get(
        self, key: str, seconds: int, filename: str | None = None, content_type: str | None = None
    ) -> str | None: ...


# --- checks shared by both backends ---------------------------------------------------------


def check_key(key: str) -> str:
    """`key` when botkit may store under it; else errors.BadRequest."""
    problem = _key_problem(key)
    if problem:
        raise BadRequest(f"invalid storage key {key!r}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not isinstance(key, str) or not key:
        return "empty"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "absolute"
    if "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "a backslash or a control character"
    for segment in key.split("/"):
        if not segment:
            return "an empty segment"
        if segment.startswith("."):
            return "a segment starting with a dot"
    return None


def _check_prefix(prefix: str) -> str:
    return check_key(prefix[:-1] if prefix.endswith("/") else prefix)


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise BadRequest(f"invalid byte range {start}-{'' if end is None else end}")


def _check_seconds(seconds: int) -> None:
    if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
        raise BadRequest(f"a signed URL lasts 1 to {MAX_PRESIGN_SECONDS} seconds, not {seconds}")


def check_content_type(content_type: str) -> str:
    if not _CONTENT_TYPE.match(content_type) or len(content_type) > 255:
        raise BadRequest(f"invalid content type {content_type!r}")
    return content_type


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback and the exact name in UTF-8 (RFC 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "file"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# --- the local folder ---------------------------------------------------------------------


def _write_all(f: BinaryIO, digest: Any, data: bytes) -> None:
    digest.update(data)  # hashlib lets go of the GIL for large buffers
    f.write(data)


def _finish(f: BinaryIO, tmp: Path, path: Path, meta: Path, content_type: str) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    meta_tmp = meta.with_name(f"{meta.name}.{secrets.token_hex(6)}.part")
    meta_tmp.write_text(content_type)
    os.replace(meta_tmp, meta)
    os.replace(tmp, path)  # the commit point


def _discard(f: BinaryIO, tmp: Path) -> None:
    f.close()
    tmp.unlink(missing_ok=True)


_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux


def _read_cached(fd: int, into: memoryview, offset: int) -> bytes | None:
    """What of `into`'s length the kernel has in memory at offset; None if reading would wait
    on the disk, at the end of the file, or where RWF_NOWAIT is unknown (a thread tells)."""
    if _NOWAIT is None:
        return None
    try:
        got = os.preadv(fd, [into], offset, _NOWAIT)
    except OSError:  # EAGAIN: not in memory; EOPNOTSUPP: not on this file system
        return None
    return bytes(into[:got]) if got else None


def _open_range(path: Path, start: int, end: int | None) -> tuple[BinaryIO, int] | None:
    """The open file at `start` and how many bytes to read; None when the range is empty."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed by the reader
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound("file content not found") from None
    size = os.fstat(f.fileno()).st_size
    last = size - 1 if end is None else min(end, size - 1)
    if start > last:
        f.close()
        return None
    f.seek(start)
    # sequential: the kernel reads ahead further (a download reads the range in order)
    os.posix_fadvise(f.fileno(), start, last - start + 1, os.POSIX_FADV_SEQUENTIAL)
    return f, last - start + 1


def _stat_local(path: Path, meta: Path) -> Stat | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not path.is_file():
        return None
    try:
        content_type: str | None = meta.read_text()
    except OSError:
        content_type = None
    return Stat(size=st.st_size, content_type=content_type, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}")


def _delete_local(path: Path, meta: Path) -> None:
    for p in (path, meta):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            p.unlink()


def _delete_tree(folder: Path) -> int:
    if not folder.is_dir() or folder.is_symlink():
        return 0
    count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    shutil.rmtree(folder, ignore_errors=True)
    return count


async def _disk(key: str, fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a worker thread; a failing disk (full, read-only, a folder in the
    way) is an InternalError that names the key."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except OSError as exc:
        raise InternalError(f"file storage: writing {key} failed: {exc}") from exc


class LocalStorage:
    """Files under `root`, one file per key (`root/<key>`), its content type beside it in
    `.<name>.type`. A write goes to a temporary file in the same folder, fsynced and
    renamed into place only when complete. All file I/O runs in worker threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    async def start(self) -> None:
        await anyio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))

    async def close(self) -> None:
        return None

    def _paths(self, key: str) -> tuple[Path, Path]:
        path = self.root / check_key(key)
        return path, path.with_name(f".{path.name}.type")

    async def write(self, key: str, chunks: AsyncIterator[bytes], *, limit: int, content_type: str) -> Written:
        path, meta = self._paths(key)
        check_content_type(content_type)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        await _disk(key, lambda: path.parent.mkdir(parents=True, exist_ok=True))
        f: BinaryIO = await _disk(key, open, tmp, "xb")
        digest = hashlib.sha256()
        size = 0
        # One write in flight while the next buffer arrives: receiving and writing overlap,
        # and at most two buffers (2 × LOCAL_FLUSH) are held.
        writing: asyncio.Future | None = None
        try:
            buf = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ContentTooLarge(f"the file is larger than {limit} bytes")
                buf += chunk
                if len(buf) >= LOCAL_FLUSH:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(_disk(key, _write_all, f, digest, bytes(buf)))
                    buf = bytearray()
            if writing is not None:
                await writing
                writing = None
            await _disk(key, _write_all, f, digest, bytes(buf))
            await _disk(key, _finish, f, tmp, path, meta, content_type)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if writing is not None:
                    with contextlib.suppress(BaseException):
                        await writing  # the file is not closed under a write
                await anyio.to_thread.run_sync(_discard, f, tmp)
            raise
        return Written(size=size, sha256=digest.hexdigest())

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path, _ = self._paths(key)
        _check_range(start, end)
        opened = await anyio.to_thread.run_sync(_open_range, path, start, end)
        if opened is None:
            return
        f, remaining = opened
        fd, pos = f.fileno(), start
        # What the kernel has already read ahead (the file is advised sequential) is taken
        # without leaving the event loop, with RWF_NOWAIT, which never waits on the disk; only
        # what is not in memory yet is read in a worker thread. (Asking for more read-ahead
        # with WILLNEED made downloads slower: the advice itself reads.)
        scratch = bytearray(READ_CHUNK)
        try:
            while remaining > 0:
                n = min(READ_CHUNK, remaining)
                chunk = _read_cached(fd, memoryview(scratch)[:n], pos)
                if chunk is None:
                    chunk = await anyio.to_thread.run_sync(os.pread, fd, n, pos)
                if not chunk:  # truncated under us
                    break
                pos += len(chunk)
                remaining -= len(chunk)
                yield chunk
        finally:
            f.close()  # no I/O to wait for on a file opened for reading

    async def stat(self, key: str) -> Stat | None:
        return await anyio.to_thread.run_sync(_stat_local, *self._paths(key))

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(_delete_local, *self._paths(key))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under the folder `prefix`; returns how many there were."""
        folder = self.root / _check_prefix(prefix)
        return await anyio.to_thread.run_sync(_delete_tree, folder)

    async def presign_put(self, key: str, content_type: str, seconds: int) -> tuple[str, dict[str, str]] | None:
        """None: botkit signs its own upload URLs for the local folder (checked all the same)."""
        check_key(key)
        check_content_type(content_type)
        _check_seconds(seconds)
        return None

    async def presign_get(
        self, key: str, seconds: int, filename: str | None = None, content_type: str | None = None
    ) -> str | None:
        """None: botkit signs its own download URLs for the local folder (checked all the same)."""
        check_key(key)
        _check_seconds(seconds)
        if content_type:
            check_content_type(content_type)
        return None


# --- S3-compatible object stores ----------------------------------------------------------------


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    return int(meta.get("HTTPStatusCode", 0) or 0)


def _digest_part(digest: Any, part: bytes) -> str:
    """Feeds the whole object's SHA-256 and returns the part's Content-MD5 (in a thread)."""
    digest.update(part)
    return base64.b64encode(hashlib.md5(part).digest()).decode()


class S3Storage:
    """An S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW, R2 ...) through one
    aiobotocore client per process, made by `start` and closed by `close`.

    Every call has a timeout (`timeout` seconds; for a download, between two chunks).
    Uploads of any length run in constant memory: a body that fits in one part is one
    PutObject, a longer one a multipart upload of `part_size` parts, aborted on any
    failure. Each part carries its Content-MD5; the payload itself is not SHA-256-signed
    (UNSIGNED-PAYLOAD), which keeps SigV4's hashing of each part off the event loop."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        public_endpoint: str | None = None,
        create_bucket: bool = True,
        timeout: float = 60.0,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts are at least 5 MiB")
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.public_endpoint = public_endpoint
        self.create_bucket = create_bucket
        self.timeout = timeout
        self.part_size = part_size
        self._credentials = dict(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._signer: S3Client | None = None  # presigns for public_endpoint (no connections made)

    def __repr__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"S3Storage(s3://{self.bucket}/{self.prefix}{where})"

    # --- lifetime ----------------------------------------------------------------------

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(
            signature_version="s3v4",
            region_name=self.region,
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={
                # a custom endpoint (SeaweedFS, MinIO) wants /bucket/key; AWS its own default
                "addressing_style": "path" if self.endpoint else "auto",
                "payload_signing_enabled": False,
            },
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        from aiobotocore.session import get_session

        session = get_session()
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                session.create_client("s3", endpoint_url=self.endpoint, config=self._config(), **self._credentials)
            )
            self._signer = self._client
            if self.public_endpoint:
                self._signer = await stack.enter_async_context(
                    session.create_client(
                        "s3", endpoint_url=self.public_endpoint, config=self._config(), **self._credentials
                    )
                )
            self._stack = stack
            await self._ensure_bucket()
        except BaseException:
            self._client = self._signer = self._stack = None
            await stack.aclose()
            raise

    async def _ensure_bucket(self) -> None:
        """A missing bucket is created (a self-hosted store starts empty); one that cannot
        be, or a store that cannot be reached, stops the start with what to do."""
        client = self._c()
        try:
            with anyio.fail_after(self.timeout):
                await client.head_bucket(Bucket=self.bucket)
            return
        except TimeoutError:
            raise StartupError(f"{self!r}: the object store did not answer in {self.timeout:g} s") from None
        except Exception as exc:
            from botocore.exceptions import NoCredentialsError

            if isinstance(exc, NoCredentialsError):
                raise StartupError(
                    f"{self!r}: no credentials: set BOTKIT_STORAGE_ACCESS_KEY_ID and BOTKIT_STORAGE_SECRET_ACCESS_KEY"
                    " (or the AWS_* variables)"
                ) from None
            if _status(exc) in (401, 403):
                raise StartupError(f"{self!r}: access denied (check the storage credentials)") from None
            if _status(exc) != 404:
                raise StartupError(f"{self!r}: cannot reach the bucket: {exc}") from None
        if not self.create_bucket:
            raise StartupError(f"{self!r}: the bucket {self.bucket} does not exist (create it, or set create=true)")
        try:
            with anyio.fail_after(self.timeout):
                await client.create_bucket(Bucket=self.bucket)
            log.info("file storage: created the bucket %s", self.bucket)
        except Exception as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StartupError(f"{self!r}: the bucket does not exist and cannot be created: {exc}") from None

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._client = self._signer = None
        if stack is not None:
            await stack.aclose()

    def _c(self) -> S3Client:
        if self._client is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _failed(self, what: str, exc: BaseException) -> ApiError:
        if isinstance(exc, TimeoutError):
            return InternalError(f"file storage: {what} timed out after {self.timeout:g} s")
        return InternalError(f"file storage: {what} failed: {exc}")

    # --- bytes --------------------------------------------------------------------------

    async def write(self, key: str, chunks: AsyncIterator[bytes], *, limit: int, content_type: str) -> Written:
        name = self._key(key)
        check_content_type(content_type)
        digest = hashlib.sha256()
        size = 0
        buf = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ContentTooLarge(f"the file is larger than {limit} bytes")
                buf += chunk
                while len(buf) >= self.part_size:
                    with memoryview(buf) as view:
                        part = bytes(view[: self.part_size])
                    del buf[: self.part_size]
                    if upload_id is None:
                        started = await self._call(
                            "starting an upload",
                            self._c().create_multipart_upload(Bucket=self.bucket, Key=name, ContentType=content_type),
                        )
                        upload_id = started["UploadId"]
                    parts.append(await self._upload_part(name, upload_id, len(parts) + 1, part, digest))
            last = bytes(buf)
            del buf
            md5 = await anyio.to_thread.run_sync(_digest_part, digest, last)
            if upload_id is None:
                await self._call(
                    "an upload",
                    self._c().put_object(
                        Bucket=self.bucket, Key=name, Body=last, ContentType=content_type, ContentMD5=md5
                    ),
                )
            else:
                if last:
                    parts.append(await self._upload_part(name, upload_id, len(parts) + 1, last, None, md5))
                await self._call(
                    "completing an upload",
                    self._c().complete_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
                    ),
                )
        except BaseException:
            if upload_id is not None:
                await self._abort(name, upload_id)
            raise
        return Written(size=size, sha256=digest.hexdigest())

    async def _upload_part(
        self, name: str, upload_id: str, number: int, part: bytes, digest: Any, md5: str | None = None
    ) -> CompletedPartTypeDef:
        if md5 is None:
            md5 = await anyio.to_thread.run_sync(_digest_part, digest, part)
        done = await self._call(
            f"uploading part {number}",
            self._c().upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part, ContentMD5=md5
            ),
        )
        return {"PartNumber": number, "ETag": done["ETag"]}

    async def _abort(self, name: str, upload_id: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(min(self.timeout, 10.0)):
            try:
                await self._c().abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except Exception as exc:  # the store expires it (lifecycle rules); say so and move on
                log.warning("file storage: cannot abort the upload %s of %s: %s", upload_id, name, exc)

    async def _call(self, what: str, call: Any) -> Any:
        try:
            with anyio.fail_after(self.timeout):
                return await call
        except ApiError:
            raise
        except Exception as exc:
            raise self._failed(what, exc) from exc

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        name = self._key(key)
        _check_range(start, end)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            with anyio.fail_after(self.timeout):
                got = await self._c().get_object(**args)
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "NotFound") or _status(exc) == 404:
                raise NotFound("file content not found") from None
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                # the range starts past the end; but a missing key must still be NotFound
                if await self.stat(key) is None:
                    raise NotFound("file content not found") from None
                return
            raise self._failed("a download", exc) from exc
        body = got["Body"]
        try:
            while True:
                try:
                    with anyio.fail_after(self.timeout):
                        chunk = await body.read(READ_CHUNK)
                except Exception as exc:
                    raise self._failed("a download", exc) from exc
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> Stat | None:
        name = self._key(key)
        try:
            with anyio.fail_after(self.timeout):
                head = await self._c().head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _status(exc) == 404 or _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._failed("a look-up", exc) from exc
        etag = head.get("ETag")
        return Stat(size=head["ContentLength"], content_type=head.get("ContentType"), etag=etag.strip('"') or None)

    async def delete(self, key: str) -> None:
        await self._call("a delete", self._c().delete_object(Bucket=self.bucket, Key=self._key(key)))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under the folder `prefix` (pages of up to 1,000); returns how many."""
        folder = self.prefix + _check_prefix(prefix) + "/"
        count = 0
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page = await self._call("a listing", self._c().list_objects_v2(**args))
            keys: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                done = await self._call(
                    "a delete",
                    self._c().delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}),
                )
                errors = done.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise InternalError(
                        f"file storage: {len(errors)} keys under {folder} were not deleted "
                        f"({first.get('Key')}: {first.get('Code')} {first.get('Message')})"
                    )
                count += len(keys)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return count

    # --- signed URLs ----------------------------------------------------------------------

    async def presign_put(self, key: str, content_type: str, seconds: int) -> tuple[str, dict[str, str]] | None:
        """A URL to PUT the bytes to, and the headers the client must send with them
        (the content type is part of the signature)."""
        _check_seconds(seconds)
        params = {"Bucket": self.bucket, "Key": self._key(key), "ContentType": check_content_type(content_type)}
        signer = self._signer or self._c()
        url = await signer.generate_presigned_url("put_object", Params=params, ExpiresIn=seconds, HttpMethod="PUT")
        return url, {"Content-Type": content_type}

    async def presign_get(
        self, key: str, seconds: int, filename: str | None = None, content_type: str | None = None
    ) -> str | None:
        """A URL to GET the bytes from, answered with this file name (as an attachment)
        and content type."""
        _check_seconds(seconds)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        if content_type:
            params["ResponseContentType"] = check_content_type(content_type)
        signer = self._signer or self._c()
        return await signer.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)


# --- configuration -------------------------------------------------------------------------

_S3_OPTIONS = {"endpoint", "region", "public", "create", "timeout"}


def from_url(url: str | None, data_dir: Path, env: Mapping[str, str] | None = None) -> Storage:
    """The backend BOTKIT_STORAGE_URL names:

    - unset or empty: a local folder, `<data dir>/files`;
    - `file:///absolute/folder`: a local folder elsewhere;
    - `s3://<bucket>[/<key prefix>][?endpoint=http://127.0.0.1:8333&region=us-east-1
      &public=https://files.example.com&create=true&timeout=60]`: an S3-compatible store.
      With `endpoint`, path-style addressing (SeaweedFS, MinIO); without, AWS S3 itself.
      `public`: the endpoint clients reach, when it is not the one botkit uses (presigned
      URLs name it). `create` (default true): create a missing bucket at start.
      Credentials: BOTKIT_STORAGE_ACCESS_KEY_ID and BOTKIT_STORAGE_SECRET_ACCESS_KEY, else
      the AWS defaults (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an IAM role);
      never in the URL.

    A malformed URL is a StartupError that names the problem."""
    env = os.environ if env is None else env
    if not url:
        return LocalStorage(Path(data_dir) / "files")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query:
            raise StartupError(f"BOTKIT_STORAGE_URL: use file:///absolute/folder, not {url!r}")
        return LocalStorage(Path(parts.path))
    if parts.scheme != "s3":
        raise StartupError(f"BOTKIT_STORAGE_URL: unknown scheme in {url!r} (use s3://bucket?... or file:///folder)")
    return _s3_from_url(url, parts, env)


def _s3_from_url(url: str, parts: Any, env: Mapping[str, str]) -> S3Storage:
    if "@" in parts.netloc:
        raise StartupError(
            "BOTKIT_STORAGE_URL: no credentials in the URL; set BOTKIT_STORAGE_ACCESS_KEY_ID and "
            "BOTKIT_STORAGE_SECRET_ACCESS_KEY"
        )
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StartupError(f"BOTKIT_STORAGE_URL: {bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)")
    prefix = parts.path.strip("/")
    if prefix and _key_problem(prefix):
        raise StartupError(f"BOTKIT_STORAGE_URL: the key prefix {prefix!r} has {_key_problem(prefix)}")
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise StartupError(f"BOTKIT_STORAGE_URL: cannot read the query of {url!r}") from None
    unknown = set(query) - _S3_OPTIONS
    if unknown:
        raise StartupError(
            f"BOTKIT_STORAGE_URL: unknown option {', '.join(sorted(unknown))} (known: {', '.join(sorted(_S3_OPTIONS))})"
        )
    for option in ("endpoint", "public"):
        value = query.get(option)
        if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
            raise StartupError(f"BOTKIT_STORAGE_URL: {option} must be an http(s) URL, not {value!r}")
    create = query.get("create", "true").lower()
    if create not in ("true", "false", "1", "0"):
        raise StartupError(f"BOTKIT_STORAGE_URL: create must be true or false, not {create!r}")
    try:
        timeout = float(query.get("timeout") or 60)
    except ValueError:
        timeout = 0
    if not 0 < timeout < float("inf"):
        raise StartupError(
            f"BOTKIT_STORAGE_URL: timeout must be a positive number of seconds, not {query['timeout']!r}"
        )
    key_id, secret = env.get("BOTKIT_STORAGE_ACCESS_KEY_ID"), env.get("BOTKIT_STORAGE_SECRET_ACCESS_KEY")
    if bool(key_id) != bool(secret):
        raise StartupError("set both BOTKIT_STORAGE_ACCESS_KEY_ID and BOTKIT_STORAGE_SECRET_ACCESS_KEY, or neither")
    return S3Storage(
        bucket,
        endpoint=query.get("endpoint") or None,
        region=query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key_id=key_id or None,
        secret_access_key=secret or None,
        prefix=prefix,
        public_endpoint=query.get("public") or None,
        create_bucket=create in ("true", "1"),
        timeout=timeout,
    )
