from botkit.testing import assert_error


def test_bot_roundtrip(api, other):
    created = api.post("bot/create", json={"name": "Ada", "meta": {"team": "x"}})
    assert created.status_code == 200, created.text
    bot_id = created.json()["id"]
    fetched = api.get(f"bot/{bot_id}/fetch").json()
    assert fetched["name"] == "Ada" and fetched["meta"] == {"team": "x"}
    assert_error(other.get(f"bot/{bot_id}/fetch"), 404, "NOT_FOUND")
