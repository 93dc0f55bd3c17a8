"""The built-in embedding model and the records' background embedding (issue 14):
WordPiece held to Hugging Face's `tokenizers`, vectors by meaning, records embedded by
the processes that run jobs and never by the request that writes them, hybrid search
that finds a record by meaning, and claims that outlive their process."""

from __future__ import annotations

import asyncio
import math
import time

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botkit.engine import embeddings, vectors
from botkit.engine.wordpiece import VOCAB, WordPiece
from botkit.testing import Api, new_account, start_app


def _reference():
    """BERT uncased WordPiece built from `tokenizers`' own parts and our vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(VOCAB.read_text(encoding="utf-8").split("\n")[:-1])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.enable_truncation(max_length=256)
    return tok


REFERENCE = _reference()
OURS = WordPiece()

# Characters whose Unicode properties have not changed since the version `tokenizers`'
# tables follow (it predates Python's): scripts, punctuation, spaces and controls.
_ALPHABET = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x24F),  # ASCII, controls, Latin-1, Latin Extended
    st.characters(min_codepoint=0x370, max_codepoint=0x3FF, categories=["Lu", "Ll", "Mn"]),  # Greek
    st.characters(min_codepoint=0x400, max_codepoint=0x4FF),  # Cyrillic
    st.characters(min_codepoint=0x2000, max_codepoint=0x2027),  # spaces, dashes, quotes
    st.characters(min_codepoint=0x3040, max_codepoint=0x30FF, categories=["Lo"]),  # kana
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),  # CJK
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # Hangul syllables
    st.sampled_from(["\u00e9", "e\u0301", "\ufb01", "\u2028", "\u3000", "\ufffd", "\x00", "##", "[UNK]", " "]),
)


@given(st.lists(_ALPHABET, max_size=300).map("".join))
def test_wordpiece_is_berts_id_for_id(text):
    assert OURS.encode(text) == REFERENCE.encode(text).ids


def test_wordpiece_on_real_text():
    texts = [
        "Return a new datetime.timedelta object — naïve or aware; see RFC 3339 (section 5.6).",
        "The quick brown fox jumps over the lazy dog's back!!!",
        "東京で日本語のテキストを処理する。Ünïcödé straße Ǆemal",
        "x" * 150 + " supercalifragilisticexpialidocious unbelievably",
        " ".join(["word"] * 400),  # cut at 256 tokens
    ]
    for text in texts:
        assert OURS.encode(text) == REFERENCE.encode(text).ids
    assert len(OURS.encode(texts[-1])) == 256


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_builtin_model_embeds_by_meaning():
    info = embeddings.EmbeddingsInfo(model=embeddings.LOCAL_MODEL)

    async def go():
        return await embeddings.embed(
            info,
            [
                "How do I reset my password?",
                "Steps to recover access to your account when you forgot the login secret",
                "The recipe needs two cups of flour and an egg.",
                "How do I reset my password?",
            ],
            embeddings.Timeouts(),
        )

    q, near, far, again = asyncio.run(go())
    assert len(q) == embeddings.LOCAL_DIMENSIONS
    assert math.isclose(math.sqrt(_cos(q, q)), 1.0, rel_tol=1e-5)
    assert q == again  # one text per run: the same text, the same vector
    assert _cos(q, near) > _cos(q, far) + 0.2


async def _count(dsn: str, sql: str, *args) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def _wait_embedded(dsn: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors_due")):
        assert time.monotonic() < deadline, "records were not embedded in time"
        time.sleep(0.2)


@pytest.fixture
def with_vectors(fresh_database):
    dsn = fresh_database()
    if not asyncio.run(_count(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")):
        pytest.skip("this PostgreSQL has no pgvector: search runs without embeddings")
    return dsn


@pytest.fixture
def client():
    made: list[Api] = []

    def make(server, dsn: str, name: str) -> Api:
        account, secret = asyncio.run(new_account(dsn, name, None))
        made.append(Api(base_url=server.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30))
        return made[-1]

    yield make
    for api in made:
        api.close()


def test_records_are_embedded_in_the_background_and_found_by_meaning(with_vectors, tmp_path, client):
    dsn = with_vectors
    # the API process runs no jobs: whatever its requests do, they embed no record
    front = start_app(dsn, data_dir=tmp_path / "a", job_concurrency=0, embeddings_model=embeddings.LOCAL_MODEL)
    worker = None
    try:
        api = client(front, dsn, "embeddings")
        dataset = api.post("dataset/create", json={}).json()["id"]
        car = api.post(f"dataset/{dataset}/record/create", json={"text": "I drive a car to work."}).json()["id"]
        fruit = api.post(f"dataset/{dataset}/record/create", json={"text": "Bananas are yellow."}).json()["id"]
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors_due")) == 2
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors")) == 0
        # nothing embedded yet: search is lexical, and "automobile" shares no word
        assert api.post(f"dataset/{dataset}/search", json={"search": "automobile"}).json()["records"] == []

        worker = start_app(dsn, data_dir=tmp_path / "b", job_concurrency=1, embeddings_model=embeddings.LOCAL_MODEL)
        _wait_embedded(dsn)
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors")) == 2
        hnsw = vectors.index_name(embeddings.LOCAL_MODEL)
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = $1", hnsw)) == 1
        found = api.post(f"dataset/{dataset}/search", json={"search": "automobile"}).json()["records"]
        assert [r["id"] for r in found][:1] == [car]  # found by meaning
        found = api.post(f"dataset/{dataset}/search", json={"search": "bananas"}).json()["records"]
        assert found[0]["id"] == fruit  # the word still counts

        # a changed text is embedded again; a deleted record takes its vector with it
        before = asyncio.run(_count(dsn, "SELECT embedding::text FROM record_vectors WHERE record_id = $1", car))
        api.post(f"dataset/{dataset}/record/{car}/update", json={"text": "I ride a bicycle to the office."})
        _wait_embedded(dsn)
        after = asyncio.run(_count(dsn, "SELECT embedding::text FROM record_vectors WHERE record_id = $1", car))
        assert after != before
        found = api.post(f"dataset/{dataset}/search", json={"search": "cycling commute"}).json()["records"]
        assert found[0]["id"] == car
        api.post(f"dataset/{dataset}/record/{fruit}/delete", json={})
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors WHERE record_id = $1", fruit)) == 0

        # another account's vectors are not its candidates
        other = client(front, dsn, "embeddings, too")
        theirs = other.post("dataset/create", json={}).json()["id"]
        other.post(f"dataset/{theirs}/record/create", json={"text": "Quarterly revenue grew."})
        _wait_embedded(dsn)
        found = other.post(f"dataset/{theirs}/search", json={"search": "bicycle"}).json()["records"]
        assert car not in [r["id"] for r in found]
        assert api.post(f"dataset/{theirs}/search", json={"search": "revenue"}).status_code == 404
    finally:
        if worker is not None:
            worker.stop()
        front.stop()


def test_a_record_not_embedded_yet_keeps_its_lexical_score(with_vectors, tmp_path, client):
    """Hybrid search scores a record without a vector by its lexical score in both halves
    (not 0 for the vector's half): a record just written ranks as it would lexically."""
    dsn = with_vectors
    front = start_app(dsn, data_dir=tmp_path / "a", job_concurrency=0, embeddings_model=embeddings.LOCAL_MODEL)
    worker = start_app(dsn, data_dir=tmp_path / "b", job_concurrency=1, embeddings_model=embeddings.LOCAL_MODEL)
    try:
        api = client(front, dsn, "not embedded yet")
        dataset = api.post("dataset/create", json={}).json()["id"]
        api.post(f"dataset/{dataset}/record/create", json={"text": "Bananas are yellow."})
        _wait_embedded(dsn)
        worker.stop()
        zebra = api.post(f"dataset/{dataset}/record/create", json={"text": "zebra"}).json()["id"]
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors_due")) == 1
        found = api.post(f"dataset/{dataset}/search", json={"search": "zebra"}).json()["records"]
        # every word and every trigram of the query: a lexical score of 1
        assert [(r["id"], r["score"]) for r in found][:1] == [(zebra, 1.0)]
    finally:
        worker.stop()
        front.stop()


def test_a_claim_whose_process_died_is_taken_over(with_vectors, tmp_path, client):
    """A process that claimed records and died leaves claims that run out; the next
    embedder takes them. A live claim is left alone."""
    dsn = with_vectors
    front = start_app(dsn, data_dir=tmp_path / "a", job_concurrency=0, embeddings_model="off")
    try:
        api = client(front, dsn, "claims")
        dataset = api.post("dataset/create", json={}).json()["id"]
        dead = api.post(f"dataset/{dataset}/record/create", json={"text": "a claim that ran out"}).json()["id"]
        live = api.post(f"dataset/{dataset}/record/create", json={"text": "a claim still held"}).json()["id"]
    finally:
        front.stop()

    async def claim():
        conn = await asyncpg.connect(dsn)
        try:
            now = time.time_ns() // 1_000_000
            await conn.execute(
                "UPDATE record_vectors_due SET claim = 'gone', claimed_until = $2 WHERE record_id = $1", dead, now - 1
            )
            await conn.execute(
                "UPDATE record_vectors_due SET claim = 'alive', claimed_until = $2 WHERE record_id = $1",
                live,
                now + 600_000,
            )
        finally:
            await conn.close()

    asyncio.run(claim())
    worker = start_app(dsn, data_dir=tmp_path / "b", job_concurrency=1, embeddings_model=embeddings.LOCAL_MODEL)
    try:
        deadline = time.monotonic() + 60
        while not asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors WHERE record_id = $1", dead)):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert asyncio.run(_count(dsn, "SELECT count(*) FROM record_vectors WHERE record_id = $1", live)) == 0
        assert asyncio.run(_count(dsn, "SELECT claim FROM record_vectors_due WHERE record_id = $1", live)) == "alive"
    finally:
        worker.stop()


def test_an_embeddings_endpoint_embeds_in_the_background_too(with_vectors, tmp_path, client, fake):
    """Another model at an OpenAI-compatible /embeddings: the records go to it from the
    background, a search sends it only the query, and when it fails search is lexical."""
    dsn = with_vectors
    fake.reset()
    app = start_app(
        dsn, data_dir=tmp_path, job_concurrency=1, embeddings_model="fake-embed", embeddings_base_url=fake.base_url
    )
    try:
        api = client(app, dsn, "endpoint")
        dataset = api.post("dataset/create", json={}).json()["id"]
        car = api.post(f"dataset/{dataset}/record/create", json={"text": "I drive a car to work."}).json()["id"]
        api.post(f"dataset/{dataset}/record/create", json={"text": "Bananas are yellow."})
        _wait_embedded(dsn)
        assert sorted(fake.embedded) == ["Bananas are yellow.", "I drive a car to work."]
        fake.embedded.clear()
        found = api.post(f"dataset/{dataset}/search", json={"search": "automobile"}).json()["records"]
        assert [r["id"] for r in found][:1] == [car]  # no shared word: found by meaning
        assert fake.embedded == ["automobile"]
        fake.embeddings_status = 500
        found = api.post(f"dataset/{dataset}/search", json={"search": "bananas"})
        assert found.status_code == 200 and found.json()["records"][0]["text"] == "Bananas are yellow."
    finally:
        app.stop()
        fake.reset()


@pytest.fixture(scope="module")
def embedded_dataset(fresh_database, tmp_path_factory):
    """An app with the built-in model and a dataset whose records all have vectors."""
    dsn = fresh_database()
    if not asyncio.run(_count(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")):
        pytest.skip("this PostgreSQL has no pgvector")
    app = start_app(
        dsn, data_dir=tmp_path_factory.mktemp("vec"), job_concurrency=1, embeddings_model=embeddings.LOCAL_MODEL
    )
    account, secret = asyncio.run(new_account(dsn, "hybrid junk", None))
    api = Api(base_url=app.url + "/v1/", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    dataset = api.post("dataset/create", json={}).json()["id"]
    for text in ["Refunds are possible within 30 days.", "Our office opens at nine.", "Ünïcödé 東京 données"]:
        api.post(f"dataset/{dataset}/record/create", json={"text": text, "meta": {"n": len(text)}})
    _wait_embedded(dsn)
    yield api, dataset
    api.close()
    app.stop()


@given(
    search=st.text(max_size=300),
    filter=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=2)),
)
def test_hybrid_search_answers_any_query(embedded_dataset, search, filter):
    api, dataset = embedded_dataset
    body = {"search": search} if filter is None else {"search": search, "filter": filter}
    r = api.post(f"dataset/{dataset}/search", json=body)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        scores = [x["score"] for x in r.json()["records"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    else:
        assert set(r.json()) >= {"message", "code"}
