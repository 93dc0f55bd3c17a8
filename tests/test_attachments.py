"""Conversation attachments: uploaded to a conversation (also with a widget's session
token), listed, and given to each completion in it: a document as its text, an image
as an image part for a model that takes images (by name for one that does not);
stateless completions take `attachments: [{url}]`."""

from __future__ import annotations

import base64
import json

import httpx

from botkit.testing import assert_error

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)


def sent_text(body: dict) -> str:
    """Everything the model was shown, as text (image parts as their URL)."""
    out = []
    for m in body["messages"]:
        content = m.get("content")
        if isinstance(content, list):
            out += [p.get("text") or p["image_url"]["url"] for p in content]
        else:
            out.append(str(content or ""))
    return "\n".join(out)


def test_a_document_attachment_reaches_the_model_as_text(api, models, server):
    conversation = api.post("conversation/create", json={"model": "fake-model"}).json()["id"]
    notes = b"# Delivery\n\nOrders ship from Rotterdam on Thursdays.\n"
    answer = api.post(
        f"conversation/{conversation}/attachment/upload",
        files={"file": ("delivery.md", notes, "text/markdown")},
    )
    assert answer.status_code == 200, answer.text
    file_id = answer.json()["id"]
    listed = api.get(f"conversation/{conversation}/attachment/list").json()["items"]
    assert [(f["id"], f["type"], f["size"]) for f in listed] == [(file_id, "text/markdown", len(notes))]
    assert api.post(f"conversation/{conversation}/complete", json={"text": "when do orders ship?"}).status_code == 200
    shown = sent_text(models.bodies[-1])
    assert "(attached file delivery.md (text/markdown" in shown and "Rotterdam on Thursdays" in shown


def test_an_image_is_an_image_part_for_a_vision_model_only(api, models):
    for model, as_part in (("fake-vision", True), ("fake-model", False)):
        conversation = api.post("conversation/create", json={"model": model}).json()["id"]
        upload = api.post(
            f"conversation/{conversation}/attachment/upload", content=PNG, headers={"Content-Type": "image/png"}
        )
        assert upload.status_code == 200, upload.text
        api.post(f"conversation/{conversation}/complete", json={"text": "what is in the picture?"})
        latest = models.bodies[-1]["messages"][-1]
        if as_part:
            parts = latest["content"]
            assert parts[0] == {"type": "text", "text": "what is in the picture?"}
            assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
        else:
            assert latest["content"] == "what is in the picture?"
            assert "(image/png, " in sent_text(models.bodies[-1])  # named, not shown


def test_stateless_attachments_by_url(api, models):
    data_url = "data:text/plain;base64," + base64.b64encode(b"The password hint is tangerine.").decode()
    body = {
        "model": "fake-model",
        "messages": [{"type": "user", "text": "hint?"}],
        "attachments": [{"url": data_url}],
    }
    assert api.post("conversation/complete", json=body).status_code == 200
    assert "tangerine" in sent_text(models.bodies[-1])
    refused = {**body, "attachments": [{"url": "http://127.0.0.1:1/secret"}]}  # loopback: not fetched
    assert_error(api.post("conversation/complete", json=refused), 400, "BAD_REQUEST")


def test_a_widget_uploads_and_lists_its_conversations_attachments(api, server):
    conversation = api.post("conversation/create", json={}).json()["id"]
    other = api.post("conversation/create", json={}).json()["id"]
    token = api.post(f"conversation/{conversation}/session/create", json={}).json()["token"]
    with httpx.Client(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {token}"}) as widget:
        made = widget.post(f"conversation/{conversation}/attachment/upload", json={"file": "data:,hello"})
        assert made.status_code == 200, made.text
        assert len(widget.get(f"conversation/{conversation}/attachment/list").json()["items"]) == 1
        assert_error(
            widget.post(f"conversation/{other}/attachment/upload", json={"file": "data:,x"}), 401, "NOT_AUTHORIZED"
        )
    assert_error(
        api.post("conversation/" + "0" * 26 + "/attachment/upload", json={"file": "data:,x"}), 404, "NOT_FOUND"
    )
    assert json.dumps(api.get(f"conversation/{other}/attachment/list").json()["items"]) == "[]"
