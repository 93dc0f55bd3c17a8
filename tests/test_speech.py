"""conversation/{id}/message/{id}/synthesize: the message spoken by the configured
speech model (the scripted fake's /audio/speech), stored as a file the message names."""

from __future__ import annotations

import pytest
from test_sdk import run_node

from botkit.testing import assert_error


@pytest.fixture(scope="module")
def spoken(own_app, fake):
    srv, make = own_app(speech_model="tts-1", speech_base_url=fake.base_url)
    return make, srv


def message_in(api, text: str) -> tuple[str, str]:
    conversation = api.post("conversation/create", json={}).json()["id"]
    message = api.post(f"conversation/{conversation}/message/create", json={"type": "bot", "text": text}).json()["id"]
    return conversation, message


def test_a_message_is_spoken_into_a_file_it_names(spoken, fake):
    fake.reset()
    make, _ = spoken
    api, other = make(), make()
    conversation, message = message_in(api, "Refunds are possible within 30 days.")
    done = api.post(f"conversation/{conversation}/message/{message}/synthesize", json={})
    assert done.status_code == 200, done.text
    assert done.json() == {"id": message}
    assert fake.spoken[-1] == {
        "model": "tts-1",
        "input": "Refunds are possible within 30 days.",
        "voice": "alloy",
        "response_format": "mp3",
    }
    audio = api.get(f"conversation/{conversation}/message/{message}/fetch").json()["meta"]["audio"]
    assert audio["type"] == "audio/mpeg"
    assert api.get(f"file/{audio['fileId']}/download").content == b"FAKE-MP3:Refunds are possible within 30 days."
    assert api.get(f"file/{audio['fileId']}/fetch").json()["type"] == "audio/mpeg"

    assert_error(other.post(f"conversation/{conversation}/message/{message}/synthesize", json={}), 404, "NOT_FOUND")
    elsewhere, _ = message_in(api, "x")
    assert_error(api.post(f"conversation/{elsewhere}/message/{message}/synthesize", json={}), 404, "NOT_FOUND")


def test_without_a_speech_model_it_says_so(api):
    conversation, message = message_in(api, "hello")
    body = assert_error(
        api.post(f"conversation/{conversation}/message/{message}/synthesize", json={}), 400, "BAD_REQUEST"
    )
    assert "BOTKIT_SPEECH_MODEL" in body["message"]


def test_the_node_sdk_synthesizes(spoken):
    make, srv = spoken
    out = run_node("speech.mjs", srv.url, make().token, timeout=120)
    assert "ok synthesize" in out, out


def test_speech_is_held_to_the_accounts_file_limit(spoken, fake):
    make, _ = spoken
    parent = make()
    child = parent.post("partner/user/create", json={"limits": {"database": {"files": 1}}}).json()["id"]
    h = {"X-RunAs-User-Id": child}
    conversation = parent.post("conversation/create", json={}, headers=h).json()["id"]
    message = parent.post(
        f"conversation/{conversation}/message/create", json={"type": "bot", "text": "Hi."}, headers=h
    ).json()["id"]
    assert (
        parent.post(f"conversation/{conversation}/message/{message}/synthesize", json={}, headers=h).status_code == 200
    )
    again = parent.post(f"conversation/{conversation}/message/{message}/synthesize", json={}, headers=h)
    assert_error(again, 429, "LIMITS_REACHED")
    assert len(parent.get("file/list", headers=h).json()["items"]) == 1
