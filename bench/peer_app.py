"""The conventional peer: bot fetch and create written the way most Python services
are written today: FastAPI, pydantic models for the body and the response
(camelCase aliases, `response_model_exclude_none`), a `Depends` for the token,
asyncpg with its default pool, the stdlib json codec for jsonb, uvicorn with its
defaults (it picks uvloop and httptools when installed, as they are here).
Same SQL and the same token check (SHA-256 of the secret looked up in tokens) as
botkit; access log off, as for botkit, so no server pays for logging.

Run: DATABASE_URL=... PORT=... python bench/peer_app.py"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import asynccontextmanager

import asyncpg
import limit_app  # noqa: E402  (bench/ is the script's folder)
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from botkit.actions.ids import new_id  # the same id scheme as botkit

TOKEN_SQL = (
    "SELECT t.id, t.account_id, t.secret_hash, t.scopes, t.expires_at, t.revoked_at, a.limits, "
    "a.parent_id IS NOT NULL AS child "
    "FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.secret_hash = $1"
)
FETCH_SQL = (
    "SELECT id, created_at, updated_at, meta, model, backstory, dataset_id, skillset_id, privacy, "
    "moderation, alias, name, description, blueprint_id, visibility "
    "FROM bots WHERE id = $1 AND account_id = $2"
)
# The bot and its event-log row in one statement, as botkit writes them (the limit's copy),
# so that the comparison is of the same database work.
INSERT_SQL = limit_app.INSERT_SQL


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Bot(CamelModel):
    id: str
    created_at: int
    updated_at: int
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    model: str | None = None
    backstory: str | None = None
    dataset_id: str | None = None
    skillset_id: str | None = None
    privacy: bool | None = None
    moderation: bool | None = None
    blueprint_id: str | None = None
    visibility: str | None = None


class BotCreate(CamelModel):
    alias: str | None = Field(None, max_length=256)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)
    meta: dict | None = None
    model: str | None = Field(None, max_length=256)
    backstory: str | None = Field(None, max_length=100_000)
    dataset_id: str | None = Field(None, max_length=64)
    skillset_id: str | None = Field(None, max_length=64)
    privacy: bool | None = None
    moderation: bool | None = None
    blueprint_id: str | None = Field(None, max_length=64)
    visibility: str | None = Field(None, pattern="^(private|protected|public)$")


class Created(BaseModel):
    id: str


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], init=init_connection)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


async def current_account(request: Request, authorization: str | None = Header(default=None)) -> str:
    if not authorization or " " not in authorization:
        raise HTTPException(status_code=401, detail="not authenticated")
    scheme, secret = authorization.split(" ", 1)
    if scheme.lower() not in ("bearer", "token"):
        raise HTTPException(status_code=401, detail="not authenticated")
    digest = hashlib.sha256(secret.strip().encode()).digest()
    row = await request.app.state.pool.fetchrow(TOKEN_SQL, digest)
    if row is None or row["revoked_at"] is not None:
        raise HTTPException(status_code=401, detail="not authenticated")
    if row["expires_at"] is not None and row["expires_at"] <= time.time() * 1000:
        raise HTTPException(status_code=401, detail="token expired")
    return row["account_id"]


@app.get("/healthz")
async def health(request: Request) -> dict:
    await request.app.state.pool.fetchval("SELECT 1")
    return {"status": "ok"}


@app.get("/v1/bot/{bot_id}/fetch", response_model=Bot, response_model_exclude_none=True, response_model_by_alias=True)
async def fetch_bot(bot_id: str, request: Request, account_id: str = Depends(current_account)) -> Bot:
    row = await request.app.state.pool.fetchrow(FETCH_SQL, bot_id, account_id)
    if row is None:
        raise HTTPException(status_code=404, detail="bot not found")
    return Bot(**dict(row))


@app.post("/v1/bot/create", response_model=Created)
async def create_bot(body: BotCreate, request: Request, account_id: str = Depends(current_account)) -> Created:
    now = int(time.time() * 1000)
    bot_id = new_id()
    await request.app.state.pool.execute(
        INSERT_SQL,
        bot_id,
        account_id,
        now,
        now,
        body.model,
        body.backstory,
        body.dataset_id,
        body.skillset_id,
        body.privacy,
        body.moderation,
        body.alias,
        body.name,
        body.description,
        body.meta or {},
        body.blueprint_id,
        body.visibility,
        *limit_app.event_args(
            account_id,
            "bot.create",
            bot_id,
            now,
            {"datasetId": body.dataset_id, "skillsetId": body.skillset_id},
            {"botId": bot_id},
        ),
    )
    return Created(id=bot_id)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), access_log=False, log_level="warning")
