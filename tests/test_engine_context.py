"""The engine's pure parts: token reconciliation (a property test), model strings,
the token estimate, the retrieval responder's text, the model registry from settings."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botkit.config import Settings
from botkit.engine import context, models, responder, tokens
from botkit.engine.context import DoesNotFit, Parts, Turn, fit, messages_cost
from botkit.engine.provider import Finish, ModelRequest, Passage
from botkit.errors import BadRequest

WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta", "x", "longerwordhere", "1234", "!", "?", "é", "日本"])
TEXT = st.lists(WORDS, min_size=0, max_size=40).map(" ".join)


@st.composite
def parts(draw) -> Parts:
    history = draw(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), TEXT), max_size=30))
    passages = draw(st.lists(st.tuples(TEXT, st.floats(0, 1)), max_size=12))
    return Parts(
        instructions=draw(TEXT),
        passages=[Passage(text=t, score=s) for t, s in passages],
        history=[Turn(r, t) for r, t in history],
        latest=Turn("user", draw(TEXT)) if draw(st.booleans()) else None,
        tools_cost=draw(st.integers(0, 50)),
        match_instruction=draw(st.none() | TEXT),
    )


@given(p=parts(), window=st.integers(1, 600))
def test_the_fitted_context_always_fits_and_drops_in_the_documented_order(p, window):
    try:
        fitted = fit(window, p)
    except DoesNotFit:
        # only when the parts that are never dropped do not fit on their own
        must = [{"role": "system", "content": p.instructions}] if p.instructions.strip() else []
        if p.latest is not None:
            must.append({"role": "user", "content": p.latest.text})
        assert messages_cost(must) + p.tools_cost > window
        return
    msgs = fitted.messages
    assert messages_cost(msgs) + p.tools_cost <= window
    assert fitted.cost == messages_cost(msgs) + p.tools_cost
    # the instructions and the latest user message are always there, whole
    if p.instructions.strip():
        assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith(p.instructions)
    if p.latest is not None:
        assert msgs[-1] == {"role": "user", "content": p.latest.text}
    # history: a suffix (the oldest go first), in order
    n = len(fitted.history)
    assert fitted.history == (p.history[len(p.history) - n :] if n else [])
    assert fitted.dropped_history == len(p.history) - n
    # records: the best ones (the lowest-scoring go first), and only once the history is gone
    ranked = sorted(p.passages, key=lambda x: -x.score)
    assert fitted.passages == ranked[: len(fitted.passages)]
    if fitted.dropped_passages:
        assert fitted.history == []
    # nothing is dropped that would have fitted
    if fitted.dropped_passages:
        extra = ranked[len(fitted.passages)]
        grow = context.passage_cost(extra)
        if not fitted.passages:
            grow += tokens.count(p.match_instruction or context.RECORDS_HEADER)
            if not p.instructions.strip():
                grow += tokens.MESSAGE_OVERHEAD
        assert fitted.cost + grow > window
    elif fitted.dropped_history:
        assert fitted.cost + tokens.message_cost(p.history[fitted.dropped_history - 1].text) > window


def test_a_latest_message_too_long_is_a_400():
    p = Parts(instructions="Be nice.", latest=Turn("user", "word " * 100))
    with pytest.raises(BadRequest) as e:
        fit(50, p)
    assert e.value.status == 400 and "window" in e.value.message


def test_model_strings():
    assert models.parse("gpt-4o") == ("gpt-4o", models.Params())
    name, params = models.parse("llama3.1:8b/temperature=0.2/maxTokens=100/seed=-3/interactionMaxMessages=5")
    assert name == "llama3.1:8b"
    assert (params.temperature, params.max_tokens, params.seed, params.interaction_max_messages) == (0.2, 100, -3, 5)
    for junk in (
        "",
        " x",
        "x/temperature=hot",
        "x/temperature=2.5",
        "x/maxTokens=0",
        "x/seed=1/seed=2",
        "x/presencePenalty=-3",
        "x//",
        "x/maxTokens=1e5",
    ):
        with pytest.raises(BadRequest):
            models.parse(junk)
    # names as providers write them; parameters botkit does not use are ignored
    assert (
        models.parse("meta-llama/Llama-3.1-8B@fast/region=us-east/temperature=1")[0] == "meta-llama/Llama-3.1-8B@fast"
    )
    assert models.parse("x/unknown=1") == ("x", models.Params())


def test_token_estimate():
    assert tokens.count("") == 0
    assert tokens.count("hello world") == 4  # two 5-letter words: 2 tokens each
    assert tokens.count("a, b.") == 4
    assert tokens.count("x" * 40) == 10
    assert tokens.truncate("one two three four", 3) == "one two"
    assert tokens.count(tokens.truncate("word " * 50, 7)) <= 7


def test_registry_from_settings(tmp_path):
    reg = models.from_settings(Settings(database_url="x", models="", model_base_url=None))
    assert list(reg.models) == [models.RETRIEVAL_MODEL] and not reg.configured
    model, _, requested = reg.resolve("gpt-4o/temperature=1")  # answered by the responder, which names it
    assert model.embedded and requested == "gpt-4o"
    reg = models.from_settings(
        Settings(
            database_url="x",
            model_base_url="https://api.openai.com/v1/",
            models="gpt-4o-mini, gpt-4o",
            model_max_tokens=128000,
            model_max_output_tokens=4096,
        )
    )
    assert list(reg.models) == ["gpt-4o-mini", "gpt-4o"] and reg.default == "gpt-4o-mini" and reg.configured
    m = reg.models["gpt-4o"]
    assert (m.provider, m.family, m.base_url, m.max_input_tokens) == (
        "openai",
        "gpt",
        "https://api.openai.com/v1",
        128000 - 4096,
    )
    with pytest.raises(BadRequest):
        reg.resolve("claude")
    listed = tmp_path / "models.json"
    listed.write_text(
        '[{"name": "local", "model": "llama3.1:8b", "baseUrl": "http://127.0.0.1:11434/v1", '
        '"maxTokens": 8192, "maxOutputTokens": 1000}]'
    )
    reg = models.from_settings(Settings(database_url="x", models=f"@{listed}"))
    local = reg.models["local"]
    assert (local.upstream, local.provider, local.max_output_tokens) == ("llama3.1:8b", "openai-compatible", 1000)
    with pytest.raises(ValueError):
        models.from_settings(Settings(database_url="x", model_base_url="http://h/v1", models=""))


def _run(req: ModelRequest) -> tuple[str, Finish]:
    async def main():
        out = []
        async for item in responder.stream(req):
            out.append(item)
        return "".join(out[:-1]), out[-1]

    return asyncio.run(main())


def test_retrieval_responder_is_honest():
    base = dict(model=models.RETRIEVAL, params=models.Params(), messages=[], tools=[], max_tokens=1000)
    text, finish = _run(ModelRequest(**base, query="refunds?", passages=[Passage("Refunds take 30 days.", 0.9)]))
    assert text.startswith("Here is what I found") and "Refunds take 30 days." in text
    assert "not a generative model" in text and finish.reason == "stop"
    text, _ = _run(ModelRequest(**base, query="zebras", requested="gpt-4o"))
    assert "found nothing" in text and '"gpt-4o"' in text
    # a short budget stops for length; a continuation goes on where it stopped
    short = {**base, "max_tokens": 5}
    first, finish = _run(ModelRequest(**short, query="q", passages=[Passage("a b c d e f g h", 1)]))
    assert finish.reason == "length"
    rest, _ = _run(ModelRequest(**base, query="q", passages=[Passage("a b c d e f g h", 1)], prefix=first))
    whole, _ = _run(ModelRequest(**base, query="q", passages=[Passage("a b c d e f g h", 1)]))
    assert first + rest == whole
