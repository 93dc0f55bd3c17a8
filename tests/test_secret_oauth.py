"""An `oauth` secret's authorization-code flow (secret/{id}/authenticate and the
contact's, then secret/oauth/callback) against a real OAuth provider's token endpoint
served here on 127.0.0.1: PKCE S256, a signed state, the code exchanged through the
fetch policy, the access token stored as the secret's value."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from botkit.testing import assert_error


class Provider:
    """The token endpoint of an OAuth 2.0 provider: it checks what botkit sends."""

    def __init__(self) -> None:
        self.challenges: dict[str, str] = {}  # code -> the code_challenge it was issued for
        self.seen: list[dict] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = {
                    k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["content-length"])).decode()).items()
                }
                provider.seen.append(form)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                good = (
                    form.get("grant_type") == "authorization_code"
                    and provider.challenges.get(form.get("code")) == digest
                )
                body = json.dumps(
                    {"access_token": "tok-" + form["code"], "token_type": "bearer"}
                    if good
                    else {"error": "invalid_grant"}
                )
                self.send_response(200 if good else 400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.http.shutdown()
    p.http.server_close()


@pytest.fixture(scope="module")
def app(own_app):
    return own_app(fetch_allow="127.0.0.1")


def oauth_secret(api, provider, **fields) -> str:
    config = {
        "authorizeUrl": "https://id.example.com/authorize",
        "tokenUrl": provider.url + "/token",
        "clientId": "app-1",
        "scope": "read write",
    }
    r = api.post("secret/create", json={"name": "crm", "type": "oauth", "config": config, **fields})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def grant(provider, url: str, code: str) -> tuple[str, dict]:
    """What the provider does when the user agrees: a code, and the redirect back."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    provider.challenges[code] = q["code_challenge"]
    return q["redirect_uri"], {"code": code, "state": q["state"]}


def test_the_authorization_code_flow_stores_the_access_token(app, provider):
    srv, make = app
    api, other = make(), make()
    secret = oauth_secret(api, provider)
    assert api.post(f"secret/{secret}/verify", json={}).json()["status"] == "unauthenticated"
    started = api.post(f"secret/{secret}/authenticate", json={}).json()
    assert started["id"] == secret and started["url"].startswith("https://id.example.com/authorize?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(started["url"]).query).items()}
    assert (q["response_type"], q["client_id"], q["scope"], q["code_challenge_method"]) == (
        "code",
        "app-1",
        "read write",
        "S256",
    )
    assert q["redirect_uri"] == srv.url + "/v1/secret/oauth/callback"

    redirect, params = grant(provider, started["url"], "c0de")
    back = api.get(redirect, params=params, headers={"Authorization": ""})  # the user's browser: no token
    assert back.status_code == 200, back.text
    assert back.json() == {"id": secret, "status": "authenticated"}
    assert provider.seen[-1]["redirect_uri"] == redirect and provider.seen[-1]["client_id"] == "app-1"
    assert api.post(f"secret/{secret}/verify", json={}).json()["status"] == "authenticated"
    assert "tok-c0de" not in api.get(f"secret/{secret}/fetch").text  # the value stays write-only

    # a state is bound to its secret and signed; a refused grant is the provider's word
    tampered = dict(params, state=params["state"][:-2] + "xx")
    assert_error(api.get(redirect, params=tampered), 401, "NOT_AUTHORIZED")
    # a state is completed once: replaying it (a leaked URL) is refused
    assert_error(api.get(redirect, params=params), 401, "NOT_AUTHORIZED")
    assert_error(api.get(redirect, params={"state": params["state"], "code": "again"}), 401, "NOT_AUTHORIZED")
    # a refused grant is the provider's word; a code the provider refuses is a 400
    again = api.post(f"secret/{secret}/authenticate", json={}).json()
    redirect, params = grant(provider, again["url"], "c1")
    assert_error(api.get(redirect, params={"state": params["state"], "error": "access_denied"}), 400, "BAD_REQUEST")
    newer = api.post(f"secret/{secret}/authenticate", json={}).json()
    assert_error(api.get(redirect, params=params), 401, "NOT_AUTHORIZED")  # an older state, once a newer exists
    redirect, params = grant(provider, newer["url"], "wrong")
    provider.challenges["wrong"] = "not-the-challenge"
    assert_error(api.get(redirect, params=params), 400, "BAD_REQUEST")

    assert_error(other.post(f"secret/{secret}/authenticate", json={}), 404, "NOT_FOUND")
    plain = api.post("secret/create", json={"type": "plain", "value": "v"}).json()["id"]
    assert_error(api.post(f"secret/{plain}/authenticate", json={}), 400, "BAD_REQUEST")
    broken = api.post("secret/create", json={"type": "oauth", "config": {"clientId": "x"}}).json()["id"]
    assert_error(api.post(f"secret/{broken}/authenticate", json={}), 400, "BAD_REQUEST")


def test_a_contacts_secret_is_authenticated_under_the_contact(app, provider):
    _, make = app
    api = make()
    contact = api.post("contact/create", json={"fingerprint": "ann"}).json()["id"]
    secret = oauth_secret(api, provider, contactId=contact, kind="personal")
    started = api.post(f"contact/{contact}/secret/{secret}/authenticate", json={}).json()
    redirect, params = grant(provider, started["url"], "k1")
    assert api.get(redirect, params=params).json()["status"] == "authenticated"
    assert api.post(f"contact/{contact}/secret/{secret}/verify", json={}).json()["status"] == "authenticated"
    elsewhere = api.post("contact/create", json={"fingerprint": "bob"}).json()["id"]
    assert_error(api.post(f"contact/{elsewhere}/secret/{secret}/authenticate", json={}), 404, "NOT_FOUND")
