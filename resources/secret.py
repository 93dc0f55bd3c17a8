"""Secrets: credentials abilities use. The `value` is write-only: stored, never
selected into a response, never logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from typing import Annotated, Any, Literal

import jwt
import msgspec

from ..actions.base import Action, Call, Context, now_ms
from ..actions.fields import Alias, Body, Description, IdResponse, Item, MetaDict, Name, Ref, Visibility
from ..actions.standard import Table, crud, record
from ..engine.abilities import formatted, secret_key
from ..engine.fetch import fetch
from ..errors import BadRequest, NotAuthorized, NotFound
from . import file

SecretKind = Literal["shared", "personal"]
SecretType = Literal["plain", "basic", "bearer", "jwt", "oauth", "template", "reference"]


class Secret(Item):
    meta: dict
    alias: str | None = None
    name: str | None = None
    description: str | None = None
    blueprint_id: str | None = None
    kind: str | None = None
    type: str | None = None
    config: dict | None = None
    visibility: str | None = None
    contact_id: str | None = None


class SecretCreate(Body):
    alias: Alias | None = None
    name: Name | None = None
    description: Description | None = None
    meta: MetaDict | None = None
    blueprint_id: Ref | None = None
    kind: SecretKind | None = None
    type: SecretType | None = None
    value: Annotated[str, msgspec.Meta(max_length=16_384)] | None = None
    config: Annotated[dict[str, Any], msgspec.Meta(max_length=50)] | None = None
    visibility: Visibility | None = None
    contact_id: Ref | None = None  # a personal secret of this contact (botkit extension)

    def __repr__(self) -> str:  # keeps the value out of any log or traceback
        return f"SecretCreate(name={self.name!r}, value=<hidden>)"


TABLE = Table(
    name="secrets",
    noun="secret",
    item=Secret,
    create=SecretCreate,
    tag="Secret",
    refs={"contact_id": ("contacts", "contact"), "blueprint_id": ("blueprints", "blueprint")},
    defaults={"type": lambda: "plain"},  # both SDKs read a secret's type as always there
)


class SecretVerification(msgspec.Struct):
    id: str
    status: Literal["unauthenticated", "authenticated"]


class VerifySecret(Action):
    tag = "Secret"
    summary = "Tell whether a secret holds a value"
    body = Body
    response = SecretVerification

    def __init__(self, path: str, contact: bool = False) -> None:
        super().__init__(path)
        self.contact = contact  # the contact-scoped route: the secret must be that contact's
        self.sql = "SELECT value IS NOT NULL FROM secrets WHERE id = $1 AND account_id = $2" + (
            " AND contact_id = $3" if contact else ""
        )

    async def run(self, ctx: Context, call: Call) -> SecretVerification:
        args = [call.params["secretId"], ctx.account_id] + ([call.params["contactId"]] if self.contact else [])
        has_value = await ctx.pool.fetchval(self.sql, *args)
        if has_value is None:
            raise NotFound("secret not found")
        return SecretVerification(
            id=call.params["secretId"], status="authenticated" if has_value else "unauthenticated"
        )


class RevokeSecret(Action):
    tag = "Secret"
    summary = "Forget a secret's value (the secret stays, unauthenticated)"
    body = Body
    response = IdResponse

    def __init__(self, path: str, contact: bool = False) -> None:
        super().__init__(path)
        self.contact = contact
        self.sql = (
            "UPDATE secrets SET value = NULL, updated_at = $3 WHERE id = $1 AND account_id = $2"
            + (" AND contact_id = $4" if contact else "")
            + " RETURNING id"
        )

    async def run(self, ctx: Context, call: Call) -> IdResponse:
        args = [call.params["secretId"], ctx.account_id, now_ms()] + (
            [call.params["contactId"]] if self.contact else []
        )
        async with ctx.pool.connection() as conn, conn.transaction():
            revoked = await conn.fetchval(self.sql, *args)
            if revoked is None:
                raise NotFound("secret not found")
            await record(conn, ctx, TABLE, "revoke", revoked, {})
        return IdResponse(id=revoked)


async def values_for(
    conn, account_id: str, keys: set[str], *, default_id: str | None, contact_id: str | None
) -> dict[str, str]:
    """The values an ability's request carries, by `${SECRET_<key>}` key ("DEFAULT":
    the ability's own secret), formatted by type: the account's shared secrets and
    the contact's personal ones (these first). The one query that reads `value`; what
    it returns goes into an outgoing request, never into a response."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT id, name, type, value FROM secrets WHERE account_id = $1 AND value IS NOT NULL "
        "AND (contact_id IS NULL OR contact_id = $2) ORDER BY contact_id NULLS LAST, id LIMIT 1000",
        account_id,
        contact_id,
    )
    found: dict[str, str] = {}
    for r in rows:
        key = "DEFAULT" if r["id"] == default_id else secret_key(r["name"] or "")
        if key in keys and key not in found:
            found[key] = formatted(r["type"], r["value"])
        if r["id"] == default_id and (named := secret_key(r["name"] or "")) in keys and named not in found:
            found[named] = formatted(r["type"], r["value"])
    return found


# --- OAuth 2.0: the authorization-code flow of an `oauth` secret ------------------------
#
# The secret's config names the provider: `authorizeUrl`, `tokenUrl`, `clientId` and
# optionally `scope`. botkit is a public client (PKCE, S256): no client secret is kept.
# authenticate answers the provider's authorization URL; the provider sends the user
# back to `secret/oauth/callback`, which exchanges the code at `tokenUrl` (through the
# fetch policy, as every outgoing request) and stores the access token as the value.
# The `state` is signed and names its secret; the secret keeps the id of its latest
# state, which one callback completes, once (a leaked state cannot be completed again,
# nor an older one after a newer was handed out). The PKCE verifier is derived from
# the state's id with the server's key.

OAUTH_AUDIENCE = "botkit-oauth"
OAUTH_STATE_SECONDS = 600
OAUTH_TOKEN_MAX_BYTES = 65_536


class OAuthConfig(msgspec.Struct, rename="camel", kw_only=True):
    authorize_url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    token_url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    scope: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class SecretAuthentication(msgspec.Struct):
    id: str
    url: str


def _verifier(key: bytes, state_id: str) -> str:
    return (
        base64.urlsafe_b64encode(hmac.new(key, b"pkce:" + state_id.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )


def _oauth_config(stored: dict | None) -> OAuthConfig:
    try:
        return msgspec.convert(stored or {}, OAuthConfig)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"the secret's config: {exc}") from None


def _callback_url(ctx: Context, call: Call) -> str:
    return file.base_url(ctx, call) + "/v1/secret/oauth/callback"


class AuthenticateSecret(Action):
    tag = "Secret"
    summary = (
        "Start the OAuth 2.0 authorization of an `oauth` secret (config: authorizeUrl, tokenUrl, clientId, scope): "
        "the URL to send the user to; the provider's answer comes back to secret/oauth/callback"
    )
    body = Body
    response = SecretAuthentication
    reads_headers = True  # the callback's address is this server's, as the client reached it

    def __init__(self, path: str, contact: bool = False) -> None:
        super().__init__(path)
        self.contact = contact
        self.sql = "SELECT type, config, contact_id FROM secrets WHERE id = $1 AND account_id = $2" + (
            " AND contact_id = $3" if contact else ""
        )

    async def run(self, ctx: Context, call: Call) -> SecretAuthentication:
        secret_id = call.params["secretId"]
        args = [secret_id, ctx.account_id] + ([call.params["contactId"]] if self.contact else [])
        row = await ctx.pool.fetchrow(self.sql, *args)
        if row is None:
            raise NotFound("secret not found")
        if row["type"] != "oauth":
            raise BadRequest(f"only an oauth secret is authenticated this way (this one is {row['type']})")
        config = _oauth_config(row["config"])
        key = ctx.services.session_key
        assert key is not None  # the app makes one at start
        state_id = secrets.token_urlsafe(16)
        await ctx.pool.execute("UPDATE secrets SET oauth_state = $2 WHERE id = $1", secret_id, state_id)
        redirect = _callback_url(ctx, call)
        state = jwt.encode(
            {
                "aud": OAUTH_AUDIENCE,
                "sub": ctx.account_id,
                "sid": secret_id,
                "jti": state_id,
                "redirect": redirect,
                "exp": int(time.time()) + OAUTH_STATE_SECONDS,
            },
            key,
            algorithm="HS256",
        )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(_verifier(key, state_id).encode()).digest()).rstrip(b"=")
        query = {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": redirect,
            "state": state,
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
        if config.scope:
            query["scope"] = config.scope
        sep = "&" if "?" in config.authorize_url else "?"
        return SecretAuthentication(id=secret_id, url=config.authorize_url + sep + urllib.parse.urlencode(query))


class OAuthCallbackQuery(msgspec.Struct, kw_only=True):
    state: Annotated[str, msgspec.Meta(max_length=4096)] | None = None  # none: not a redirect of ours (401)
    code: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    error_description: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class OAuthCallback(Action):
    """Where the provider sends the user back (no token: the signed state says whose
    secret it is, for 10 minutes)."""

    method = "GET"
    tag = "Secret"
    summary = "The OAuth 2.0 redirect of secret/{secretId}/authenticate: exchanges the code for the secret's value"
    query = OAuthCallbackQuery
    response = SecretVerification
    public = True

    async def run(self, ctx: Context, call: Call) -> SecretVerification:
        q: OAuthCallbackQuery = call.query
        key = ctx.services.session_key
        assert key is not None
        if not q.state:
            raise NotAuthorized("the OAuth state is missing")
        try:
            state = jwt.decode(
                q.state, key, algorithms=["HS256"], audience=OAUTH_AUDIENCE, options={"require": ["exp", "sub", "sid"]}
            )
        except jwt.PyJWTError:
            raise NotAuthorized("the OAuth state is not valid (or has expired)") from None
        if q.error or not q.code:
            raise BadRequest(f"the provider refused: {q.error or 'no code'} {q.error_description or ''}".strip())
        row = await ctx.pool.fetchrow(
            "UPDATE secrets SET oauth_state = NULL WHERE id = $1 AND account_id = $2 AND type = 'oauth' "
            "AND oauth_state = $3 RETURNING config",
            state["sid"],
            state["sub"],
            state.get("jti"),
        )
        if row is None:
            raise NotAuthorized("the OAuth state was used already, or a newer one was handed out")
        config = _oauth_config(row["config"])
        form = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": q.code,
                "redirect_uri": state["redirect"],
                "client_id": config.client_id,
                "code_verifier": _verifier(key, state["jti"]),
            }
        ).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        async with fetch(
            config.token_url,
            ctx.services.fetch_policy,
            max_bytes=OAUTH_TOKEN_MAX_BYTES,
            headers=headers,
            method="POST",
            content=form,
        ) as answer:
            body = b"".join([chunk async for chunk in answer.chunks()])
        try:
            token = msgspec.json.decode(body)["access_token"]
            assert isinstance(token, str) and token
        except (msgspec.DecodeError, KeyError, TypeError, AssertionError):
            raise BadRequest("the provider's token answer has no access_token") from None
        async with ctx.pool.connection() as conn:
            await conn.execute(
                "UPDATE secrets SET value = $3, updated_at = $4 WHERE id = $1 AND account_id = $2",
                state["sid"],
                state["sub"],
                token[:16_384],
                now_ms(),
            )
        return SecretVerification(id=state["sid"], status="authenticated")


ACTIONS: list[Action] = [
    *crud(
        TABLE,
        list="/secret/list",
        fetch="/secret/{secretId}/fetch",
        create="/secret/create",
        update="/secret/{secretId}/update",
        delete="/secret/{secretId}/delete",
    ),
    VerifySecret("/secret/{secretId}/verify"),
    RevokeSecret("/secret/{secretId}/revoke"),
    AuthenticateSecret("/secret/{secretId}/authenticate"),
    OAuthCallback("/secret/oauth/callback"),
]
