"""The bench database: created afresh on every run, migrated with botkit's own
migrations, and seeded with fast set-based SQL (one INSERT ... SELECT FROM unnest
per table over ids made in bulk by botkit.actions.ids.new_id, so the ids are real
26-character time-ordered botkit ids).

Seeded: one account, one API token, BOTS bots for that account, one dataset with
RECORDS records."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import asyncpg

from botkit.actions.ids import new_id
from botkit.resources.account import create_account
from botkit.resources.token import issue_token
from botkit.store.migrate import migrate
from botkit.store.pool import init_connection

DB_NAME = "botkit_bench"
BOTS = 100_000
RECORDS = 100_000
DEEP = 90_000  # the deep-page cursor sits this many items into the newest-first list

_BOTS_SQL = """
INSERT INTO bots (id, account_id, name, description, meta, model, backstory, created_at, updated_at)
SELECT t.id, $2, 'bot ' || t.n, 'a bot seeded by make bench', jsonb_build_object('n', t.n::int),
       'gpt-4o', 'You are bench bot number ' || t.n || '. Answer briefly and politely.', $3, $3
FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)
"""

_RECORDS_SQL = """
INSERT INTO records (id, account_id, dataset_id, text, meta, created_at, updated_at)
SELECT t.id, $2, $3,
       'Record ' || t.n || ': ' || repeat('botkit benchmark record text, ', 8) || 'the end.',
       jsonb_build_object('n', t.n::int), $4, $4
FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)
"""


@dataclass
class Seeded:
    dsn: str
    account_id: str
    token: str
    dataset_id: str
    bot_ids: list[str]  # ascending (oldest first)
    deep_cursor: str  # the id DEEP items into the newest-first list
    seconds: float

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("bot_ids")
        d.pop("token")
        d["bots"] = len(self.bot_ids)
        d["records"] = RECORDS
        return d


def dsn_of(any_dsn: str, database: str) -> str:
    """The URL of another database on the same server (postgresql://postgres:@/x?host=<dir>)."""
    head, _, query = any_dsn.partition("?")
    return head.rsplit("/", 1)[0] + "/" + database + ("?" + query if query else "")


async def fresh_database(any_dsn: str, name: str) -> str:
    """The database `name` on the server of `any_dsn`, dropped, made anew and migrated."""
    admin = await asyncpg.connect(dsn_of(any_dsn, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = dsn_of(any_dsn, name)
    await migrate(dsn)
    return dsn


async def fresh_account(dsn: str, name: str) -> tuple[str, str]:
    """(an account's id, an API token of it) in the database."""
    conn = await asyncpg.connect(dsn)
    try:
        account_id = await create_account(conn, name=name)
        _, token = await issue_token(conn, account_id, name=name)
    finally:
        await conn.close()
    return account_id, token


async def insert_dataset(
    conn, account_id: str, name: str, texts: list[str], batch: int = 10_000
) -> tuple[str, list[str]]:
    """(the id of a new dataset of the account holding one record per text, the records'
    ids in the texts' order), inserted `batch` records per statement."""
    dataset_id, now = new_id(), int(time.time() * 1000)
    await conn.execute(
        "INSERT INTO datasets (id, account_id, name, store, meta, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'default', '{}', $4, $4)",
        dataset_id,
        account_id,
        name,
        now,
    )
    ids = [new_id() for _ in texts]
    for k in range(0, len(texts), batch):
        await conn.execute(
            "INSERT INTO records (id, account_id, dataset_id, text, meta, created_at, updated_at) "
            "SELECT t.id, $2, $3, t.text, '{}', $4, $4 FROM unnest($1::text[], $5::text[]) AS t(id, text)",
            ids[k : k + batch],
            account_id,
            dataset_id,
            now,
            texts[k : k + batch],
        )
    return dataset_id, ids


async def seed(admin_dsn: str) -> Seeded:
    started = time.perf_counter()
    dsn = await fresh_database(admin_dsn, DB_NAME)

    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        now = time.time_ns() // 1_000_000
        async with conn.transaction():
            account_id = await create_account(conn, name="bench")
            _, token = await issue_token(conn, account_id, name="bench")
            bot_ids = [new_id() for _ in range(BOTS)]
            await conn.execute(_BOTS_SQL, bot_ids, account_id, now)
            dataset_id = new_id()
            await conn.execute(
                "INSERT INTO datasets (id, account_id, name, store, meta, created_at, updated_at) "
                "VALUES ($1, $2, 'bench records', 'default', '{}', $3, $3)",
                dataset_id,
                account_id,
                now,
            )
            record_ids = [new_id() for _ in range(RECORDS)]
            await conn.execute(_RECORDS_SQL, record_ids, account_id, dataset_id, now)
        await conn.execute("VACUUM ANALYZE accounts, tokens, bots, datasets, records")
    finally:
        await conn.close()
    assert bot_ids == sorted(bot_ids), "new_id must be increasing"
    deep_cursor = bot_ids[BOTS - DEEP]  # newest first: item number DEEP (1-based) is this one
    return Seeded(
        dsn=dsn,
        account_id=account_id,
        token=token,
        dataset_id=dataset_id,
        bot_ids=bot_ids,
        deep_cursor=deep_cursor,
        seconds=time.perf_counter() - started,
    )
