"""Connecting to the configured database, with every way that can fail said in one line
a user can act on (a StartupError): a malformed DATABASE_URL, a server that refuses or
does not answer, a bad password, a missing database, a missing privilege."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ..errors import StartupError

CONNECT_TIMEOUT = 10.0


def check_url(url: str) -> str:
    """The URL when it is a PostgreSQL URL botkit can use as written; never a guess (an
    empty or non-numeric port would make the driver fall back to 5432)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StartupError(f"DATABASE_URL must start with postgresql:// (got {redact(url)!r})")
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(",") if hosts else []:
        name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise StartupError(f"DATABASE_URL has an invalid port {port!r} (in {redact(url)!r})")
        if not (name if colon else host) or " " in host:
            raise StartupError(f"DATABASE_URL has an invalid host {host!r} (in {redact(url)!r})")
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hosts = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hosts}").geturl()


def where(url: str) -> str:
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2] or parse_qs(parts.query).get("host", ["the local socket"])[0]
    return f"{hosts}{parts.path or '/'}"


def explain(exc: BaseException, url: str) -> StartupError:
    """The one line for a failure to connect to or use `url`."""
    at = where(url)
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return StartupError(
            f"PostgreSQL at {at} refused the login: {exc} (check the user and password in DATABASE_URL)"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StartupError(f"PostgreSQL at {at}: {exc} (create it, e.g. `createdb -O <user> <database>`)")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StartupError(
            f"PostgreSQL at {at}: {exc}. botkit creates its tables and the pg_trgm extension: make its user "
            "the database's owner (`ALTER DATABASE <database> OWNER TO <user>`)"
        )
    if isinstance(exc, socket.gaierror):
        return StartupError(f"cannot resolve the host of DATABASE_URL ({at}): {exc.strerror}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return StartupError(f"PostgreSQL at {at} did not answer within {CONNECT_TIMEOUT:.0f} s")
    if isinstance(exc, OSError):
        return StartupError(f"cannot connect to PostgreSQL at {at}: {exc.strerror or exc} (is it running there?)")
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | ValueError):
        return StartupError(f"PostgreSQL at {at}: {exc}")
    raise exc


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(check_url(url), timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise explain(exc, url) from None
