"""Gemini embeddings: the real google-genai client against a local stand-in of the API.

The stand-in (``tests/gemini_standin.py``) is an HTTP server on 127.0.0.1 that answers the
embedding endpoint the SDK calls, checks every request and can be told to fail. Backoff sleeps
are recorded by a fake ``sleep`` where only the waits matter; real Chroma throughout.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chroma_server import free_port
from conftest import run_main as run
from conftest import topic_text
from gemini_standin import StandIn, standin_vector

from monitor import Monitor
from monitor.embedders import make_embedder
from monitor.embedders.backoff import RetriesExhausted, RetryPolicy
from monitor.embedders.gemini import GeminiEmbedder
from monitor.embedders.ratelimit import RateLimiter
from monitor.errors import EmbedderError, EmbedderMismatchError
from monitor.posts import Post
from monitor.store import ChromaStore

KEY = "AIzaTEST-key-0123456789-never-print-me"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    return KEY


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(dim=768, api_key=KEY) as server:
        yield server


class FakeSleep:
    """Records waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def embedder(server: StandIn, **options: Any) -> GeminiEmbedder:
    options.setdefault("dim", server.dim)
    options.setdefault("retry", RetryPolicy(base_delay=0.001, rng=random.Random(0)))
    return GeminiEmbedder(server.model, task_type=server.task_type, base_url=server.url, **options)


def posts(n: int, topic: str = "space", category: str = "sci.space", start: int = 0) -> list[Post]:
    return [Post(id=f"p{i}", text=topic_text(topic, i), category=category) for i in range(start, start + n)]


# -- requests, batching, vectors --------------------------------------------------------------------------


def test_batches_of_at_most_100_texts_and_unit_vectors(standin: StandIn) -> None:
    texts = [topic_text("space", i) for i in range(250)]
    batch = embedder(standin).encode(texts)
    assert [len(r.texts) for r in standin.requests] == [100, 100, 50]
    assert standin.violations == []
    assert all(r.task_types == ["CLUSTERING"] * len(r.texts) for r in standin.requests)
    assert all(set(r.dims) == {768} for r in standin.requests)
    assert standin.texts_seen == texts  # in order, each once
    assert batch.vectors.shape == (250, 768) and batch.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)
    expected = standin_vector(texts[7], 768)
    assert float(batch.vectors[7] @ (expected / np.linalg.norm(expected))) == pytest.approx(1.0, abs=1e-5)
    assert not batch.truncated.any()


@pytest.mark.parametrize("dim", [768, 1536, 3072])
def test_every_dimension_comes_back_unit_length(dim: int) -> None:
    with StandIn(dim=dim, api_key=KEY) as server:
        raw = standin_vector("orbit rocket launch", dim)
        vectors = embedder(server).encode(["orbit rocket launch", "doctor patient"]).vectors
    assert vectors.shape == (2, dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    if dim < 3072:
        assert abs(np.linalg.norm(raw) - 1.0) > 0.1  # the API's smaller vectors are not unit length


def test_task_type_and_model_reach_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    with StandIn(task_type="SEMANTIC_SIMILARITY", model="text-embedding-004", dim=768, api_key=KEY) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)  # the SDK's own setting
        emb = make_embedder("gemini:text-embedding-004", task_type="semantic_similarity", dim=768)
        emb.encode(["one", "two"])
    assert server.violations == []
    assert server.requests[0].path == "/v1/models/text-embedding-004:batchEmbedContents"
    assert server.requests[0].task_types == ["SEMANTIC_SIMILARITY"] * 2
    assert emb.stamp() == {
        "embedder": "gemini:text-embedding-004",
        "embedding_dim": 768,
        "embedding_model": "text-embedding-004",
        "embedding_task": "SEMANTIC_SIMILARITY",
    }


def test_long_texts_are_cut_and_counted() -> None:
    with StandIn(dim=768, api_key=KEY, max_chars=6000) as server:
        texts = ["orbit " * 5000, "short post about the moon", "x" * 6000]
        batch = embedder(server).encode(texts)
    assert server.violations == []  # the stand-in refuses any text over 6,000 characters
    assert batch.truncated.tolist() == [True, False, False]
    assert max(len(t) for t in server.texts_seen) <= 6000


def test_request_size_cap_splits_a_batch(standin: StandIn) -> None:
    texts = [f"{'word ' * 200}{i}" for i in range(10)]  # ~1,000 characters each
    embedder(standin, max_chars=2000, max_request_chars=3500).encode(texts)
    assert [len(r.texts) for r in standin.requests] == [3, 3, 3, 1]


@pytest.mark.parametrize("bad", [{"task_type": "SORTING"}, {"dim": 64}, {"dim": 4096}])
def test_bad_settings_are_refused_before_any_request(standin: StandIn, bad: dict[str, Any]) -> None:
    with pytest.raises(EmbedderError):
        GeminiEmbedder(base_url=standin.url, **bad)
    assert standin.requests == []


def test_gemini_options_are_refused_for_other_embedders() -> None:
    with pytest.raises(EmbedderError, match="only for --embedder gemini"):
        make_embedder("hashing", dim=768)


# -- retries, backoff, rate limit ----------------------------------------------------------------------


def test_429_is_retried_honouring_retry_after(standin: StandIn) -> None:
    standin.retry_after = 3
    standin.script("429", "429")
    sleep = FakeSleep()
    emb = embedder(standin, retry=RetryPolicy(base_delay=0.01, sleep=sleep))
    assert emb.encode(["a post", "another"]).vectors.shape == (2, 768)
    assert [r.answered for r in standin.requests] == [429, 429, 200]
    assert emb.requests == 3
    assert len(sleep.waits) == 2 and all(w >= 3 for w in sleep.waits)  # Retry-After wins over 10 ms


def test_429_retry_delay_in_the_body_is_honoured(standin: StandIn) -> None:
    standin.retry_after = 7
    standin.script("429-body")
    sleep = FakeSleep()
    embedder(standin, retry=RetryPolicy(base_delay=0.01, sleep=sleep)).encode(["a post"])
    assert [r.answered for r in standin.requests] == [429, 200]
    assert sleep.waits == [7]


def test_5xx_backoff_grows_exponentially_with_jitter(standin: StandIn) -> None:
    standin.script("500", "503", "500", "500")
    policy = RetryPolicy(base_delay=1.0, sleep=FakeSleep(), rng=random.Random(1))
    embedder(standin, retry=policy).encode(["a post"])
    assert [r.answered for r in standin.requests] == [500, 503, 500, 500, 200]
    assert len(policy.waits) == 4
    for k, wait in enumerate(policy.waits):  # equal jitter: between half and all of 1, 2, 4, 8 s
        assert 2**k / 2 <= wait <= 2**k
    assert len(set(policy.waits)) == 4


def test_gives_up_after_max_attempts_with_one_line(standin: StandIn) -> None:
    standin.script(default="500")
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, sleep=FakeSleep())
    with pytest.raises(RetriesExhausted, match=r"failed 3 times \(last: 500 INTERNAL\)"):
        embedder(standin, retry=policy).encode(["a post"])
    assert len(standin.requests) == 3  # the SDK adds no retries of its own
    assert len(policy.waits) == 2


def test_total_wait_is_bounded(standin: StandIn) -> None:
    standin.retry_after = 600
    standin.script(default="429")
    policy = RetryPolicy(max_total_wait=60, sleep=FakeSleep())
    with pytest.raises(RetriesExhausted, match="60s limit"):
        embedder(standin, retry=policy).encode(["a post"])
    assert len(standin.requests) == 1 and policy.waits == []


def test_slow_answer_times_out_and_is_retried() -> None:
    with StandIn(dim=768, api_key=KEY, plan=["slow"], slow_seconds=2.0) as server:
        emb = embedder(server, timeout=0.4)
        vectors = emb.encode(["orbit", "moon"]).vectors
    assert vectors.shape == (2, 768)
    assert emb.requests == 2 and len(emb.retry.waits) == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("403", "API key rejected"),
        ("401", "API key rejected"),
        ("404", "model not found: gemini-embedding-001"),
        ("400", "refused the request (400 INVALID_ARGUMENT"),
    ],
)
def test_client_errors_are_not_retried(standin: StandIn, answer: str, says: str) -> None:
    standin.script(answer)
    emb = embedder(standin, retry=RetryPolicy(sleep=FakeSleep()))
    with pytest.raises(EmbedderError, match=re.escape(says)) as info:
        emb.encode(["a post"])
    assert len(standin.requests) == 1 and emb.retry.waits == []
    assert "\n" not in str(info.value) and KEY not in str(info.value)


def test_wrong_key_is_one_clear_line(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-wrong-key-00000")
    with pytest.raises(EmbedderError, match="API key rejected") as info:
        embedder(standin).encode(["a post"])
    assert "AIza-wrong-key" not in str(info.value)
    assert len(standin.requests) == 1


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
        now[0] += 0.25  # each request takes 0.25 s
    assert sleeps == pytest.approx([0.75, 0.75, 0.75])
    assert RateLimiter(None).interval == 0


def test_requests_per_minute_spaces_real_requests(standin: StandIn) -> None:
    emb = embedder(standin, requests_per_minute=200, batch_size=10)  # one request per 0.3 s
    emb.encode([topic_text("med", i) for i in range(40)])
    starts = [r.at for r in standin.requests]
    assert len(starts) == 4
    # three intervals of 0.3 s; 0.1 s allowed for arrival jitter on a busy machine (seen: 30 ms)
    assert starts[-1] - starts[0] >= 0.9 - 0.1


# -- the store: stamp, resume, no key anywhere ---------------------------------------------------------


def test_stamp_refuses_another_dimension_task_or_model(tmp_path: Path, standin: StandIn) -> None:
    mon = Monitor(tmp_path / "db", embedder=embedder(standin))
    assert mon.ingest(posts(5)).added == 5
    store = ChromaStore.open(tmp_path / "db")
    assert store.stamp() == {
        "embedder": "gemini:gemini-embedding-001",
        "embedding_dim": 768,
        "embedding_model": "gemini-embedding-001",
        "embedding_task": "CLUSTERING",
    }
    others = [
        (GeminiEmbedder(dim=1536, base_url=standin.url), "1536 dims"),
        (GeminiEmbedder(dim=768, task_type="CLASSIFICATION", base_url=standin.url), "task CLASSIFICATION"),
        (GeminiEmbedder("text-embedding-004", dim=768, base_url=standin.url), "gemini:text-embedding-004"),
        (make_embedder("hashing:768"), "hashing-768"),
    ]
    for other, named in others:
        with pytest.raises(EmbedderMismatchError, match=named) as info:
            Monitor(tmp_path / "db", embedder=other).ingest(posts(2, start=100))
        assert "task CLUSTERING, 768 dims" in str(info.value)
    assert ChromaStore.open(tmp_path / "db").count() == 5
    assert len(standin.requests) == 1  # refused before embedding anything


def test_failure_mid_ingest_keeps_what_was_stored_and_resume_embeds_only_the_rest(
    tmp_path: Path, standin: StandIn
) -> None:
    data = posts(250)
    standin.script("ok", "ok", default="500")  # the third request fails for good
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, sleep=FakeSleep())
    with pytest.raises(RetriesExhausted):
        Monitor(tmp_path / "db", embedder=embedder(standin, retry=policy)).ingest(data)
    store = ChromaStore.open(tmp_path / "db")
    assert store.count() == 200
    assert len(standin.texts_seen) == 200

    standin.script(default="ok")
    before = len(standin.requests)
    report = Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(data)
    assert (report.added, report.unchanged) == (50, 200)
    assert len(standin.requests) - before == 1
    assert sorted(standin.texts_seen[200:]) == sorted(p.text for p in data[200:])
    assert ChromaStore.open(tmp_path / "db").count() == 250

    again = Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(data)
    assert again.unchanged == 250 and len(standin.requests) - before == 1  # nothing re-embedded


def test_a_rerun_of_stored_posts_needs_no_key(
    tmp_path: Path, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is sent for posts already stored, so nothing needs the key."""
    data = posts(30)
    Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(data)
    sent = len(standin.requests)
    monkeypatch.delenv("GEMINI_API_KEY")
    again = Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(data)
    assert again.unchanged == 30 and len(standin.requests) == sent
    with pytest.raises(EmbedderError, match=r"^no Gemini API key"):  # a new post does need it
        Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(posts(1, start=30))
    assert ChromaStore.open(tmp_path / "db").count() == 30


def test_no_connection_says_to_check_the_network() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, sleep=FakeSleep())
    emb = GeminiEmbedder(dim=768, base_url=f"http://127.0.0.1:{free_port()}", retry=policy, timeout=2)
    with pytest.raises(RetriesExhausted, match="check the network") as caught:
        emb.encode(["a post"])
    assert "requests-per-minute" not in str(caught.value) and KEY not in str(caught.value)


# -- the CLI: the main job end to end ------------------------------------------------------------------


def test_missing_key_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sample_archive: Path
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    code, out, err = run(["--db", tmp_path / "db", "ingest", sample_archive, "--embedder", "gemini"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("Error: no Gemini API key: set GEMINI_API_KEY") and err.count("\n") == 1
    assert not (tmp_path / "db").exists()


def test_cli_403_is_one_line_and_a_failed_first_ingest_leaves_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sample_archive: Path
) -> None:
    with StandIn(api_key=KEY, default="403") as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        code, _, err = run(
            ["--db", tmp_path / "db", "ingest", sample_archive, "--embedder", "gemini"], capsys
        )
    assert code == 1
    assert err.startswith("Error: Gemini API key rejected") and err.count("\n") == 1
    assert len(server.requests) == 1 and not (tmp_path / "db").exists()


def _read_everything(db: Path) -> str:
    """Every stored document, metadata and collection metadata, as one text."""
    store = ChromaStore.open(db)
    parts = [json.dumps(store.collection_metadata())]
    for page in store.pages(vectors=False, documents=True):
        parts += [json.dumps(m) for m in page.metadatas] + list(page.documents or [])
    parts.append(json.dumps(store.baseline_collection.get(include=["metadatas", "documents"])))
    return "\n".join(parts)


def test_main_job_with_gemini_against_the_standin(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    sample_archive: Path,
) -> None:
    """ingest -> baseline -> in-topic and off-topic arrivals -> outliers -> stats -> snapshot."""
    caplog.set_level(logging.DEBUG)
    db, snap = tmp_path / "db", tmp_path / "snap"
    gemini = ["--embedder", "gemini", "--dimensions", 768, "--task-type", "CLUSTERING"]
    archive = [sample_archive]
    with StandIn(dim=768, api_key=KEY) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("MONITOR_GEMINI_RPM", "6000")
        code, out, err = run(
            ["--db", db, "ingest", *archive, "--category", "sci.*", "--per-category", 30, *gemini, "--json"],
            capsys,
        )
        assert code == 0, err
        assert json.loads(out)["added"] == 120
        assert [len(r.texts) for r in server.requests] == [100, 20]

        assert run(["--db", db, "baseline", "--min-posts", 10], capsys)[0] == 0
        server.script("429", "500")  # a bumpy arrival: retried, nothing lost
        arrivals = ["--split", "test", "--per-category", 10]
        code, out, err = run(
            ["--db", db, "ingest", *archive, *arrivals, "--category", "sci.*", *gemini, "--json"], capsys
        )
        assert code == 0, err
        held_out = json.loads(out)
        code, out, err = run(
            [
                "--db",
                db,
                "ingest",
                *archive,
                "--split",
                "test",
                "--exclude-category",
                "sci.*",
                "--as-category",
                "sci.*",
                *gemini,
                "--json",
            ],
            capsys,
        )
        assert code == 0, err
        off_topic = json.loads(out)
        rerun = run(
            ["--db", db, "ingest", *archive, "--category", "sci.*", "--per-category", 30, *gemini, "--json"],
            capsys,
        )
        assert json.loads(rerun[1])["unchanged"] == 120
        assert [r.answered for r in server.requests] == [200, 200, 429, 500, 200, 200]  # re-run: none
        assert server.violations == []

        code, out, _ = run(["--db", db, "outliers", "--format", "json"], capsys)
        flagged = json.loads(out)
        code, out, _ = run(["--db", db, "stats", "--format", "json"], capsys)
        stats = json.loads(out)
        code, _, err = run(["--db", db, "snapshot", "--out", snap, "--max-points", 100], capsys)
        assert code == 0, err

    assert held_out["added"] == 40 and off_topic["added"] == 48
    assert sum(held_out["verdicts"].values()) == 40 and "unscored" not in held_out["verdicts"]
    in_rate = held_out["verdicts"].get("outlier", 0) / 40
    off_rate = off_topic["verdicts"].get("outlier", 0) / 48
    assert off_rate > in_rate  # posts from other newsgroups stand out more than held-out sci.* posts
    assert stats["posts"] == 208 and stats["embedder"] == "gemini:gemini-embedding-001"
    order = [(r["p_value"], -r["score"]) for r in flagged]
    assert flagged and order == sorted(order)  # most unusual first
    assert all(r["score"] >= r["threshold"] - 1e-4 and r["p_value"] <= 0.05 for r in flagged)
    summary = json.loads((snap / "summary.json").read_text())
    assert summary["posts"] == 208 and summary["outliers"] == len(flagged)
    stored = next(ChromaStore.open(db).pages(vectors=True))
    assert stored.vectors is not None and stored.vectors.shape[1] == 768
    assert np.allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, atol=1e-5)

    # the key is nowhere: not in logs, output, Chroma's files, what is stored, or the snapshot
    assert "retry 1/5" in caplog.text  # the retries were logged, and DEBUG logs were captured
    assert KEY not in caplog.text
    everything_stored = _read_everything(db)
    assert "gemini-embedding-001" in everything_stored and KEY not in everything_stored
    for folder in (db, snap):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files and not [p for p in files if KEY.encode() in p.read_bytes()]


def test_cli_texts_per_request_and_gemini_settings_only_for_gemini(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sample_archive: Path
) -> None:
    some = [sample_archive, "--category", "sci.med", "--per-category", 60]
    with StandIn(dim=1536, task_type="CLASSIFICATION", api_key=KEY) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("MONITOR_GEMINI_TASK_TYPE", "CLASSIFICATION")
        monkeypatch.setenv("MONITOR_EMBEDDER", "gemini")
        code, _, err = run(
            ["--db", tmp_path / "db", "ingest", *some, "--dimensions", 1536, "--texts-per-request", 25],
            capsys,
        )
        assert code == 0, err
    assert [len(r.texts) for r in server.requests] == [25, 25, 10] and server.violations == []
    assert ChromaStore.open(tmp_path / "db").stamp()["embedding_task"] == "CLASSIFICATION"

    # MONITOR_GEMINI_* in the environment do not disturb another embedder; flags are refused
    monkeypatch.setenv("MONITOR_GEMINI_RPM", "30")
    other = ["--db", tmp_path / "other", "ingest", *some, "--embedder", "hashing"]
    assert run(other, capsys)[0] == 0
    code, _, err = run([*other, "--dimensions", 768], capsys)
    assert code == 1 and err == "Error: dimensions: only for --embedder gemini, not 'hashing'\n"


def test_empty_collection_left_by_a_failed_gemini_ingest_takes_another_embedder(
    tmp_path: Path, standin: StandIn
) -> None:
    standin.script("403")
    with pytest.raises(EmbedderError):
        Monitor(tmp_path / "db", embedder=embedder(standin)).ingest(posts(3))
    assert ChromaStore.open(tmp_path / "db").stamp()["embedding_task"] == "CLUSTERING"
    Monitor(tmp_path / "db", embedder=make_embedder("hashing")).ingest(posts(3))
    assert ChromaStore.open(tmp_path / "db").stamp() == {"embedder": "hashing-64", "embedding_dim": 64}


def test_cli_failure_mid_ingest_says_what_is_kept_and_a_rerun_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sample_archive: Path
) -> None:
    args = ["--db", tmp_path / "db", "ingest", sample_archive, "--category", "sci.med", "--per-category", 150]
    args += ["--embedder", "gemini", "--dimensions", 768, "--texts-per-request", 50]
    with StandIn(dim=768, api_key=KEY, plan=["ok", "ok", "403"]) as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        code, _, err = run(args, capsys)
        assert code == 1 and err.count("\n") == 1
        assert err.startswith("Error: Gemini API key rejected")
        assert err.endswith(
            "the 100 new posts stored before it are kept: run the same command again to continue\n"
        )
        assert ChromaStore.open(tmp_path / "db").count() == 100
        code, _, err = run([*args, "--json"], capsys)
        assert code == 0, err
    assert [r.answered for r in server.requests] == [200, 200, 403, 200]
    assert len(server.requests[-1].texts) == 50  # only the missing posts were embedded
    assert ChromaStore.open(tmp_path / "db").count() == 150
