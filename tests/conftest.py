"""Shared fixtures: the real sample of 20 Newsgroups posts, a fresh embedded Chroma or a collection on a
real Chroma server (``target``), embedders."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chroma_server import ChromaServer

from monitor.api import Monitor
from monitor.embedders.hashing import HashingEmbedder
from monitor.store import ChromaStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "monitor" / "data" / "20news-sample.tar.gz"
REFERENCE = Path(__file__).resolve().parent / "data" / "reference_vectors.json"


#: Word lists for synthetic posts (test embedder only): texts of one topic share words.
TOPIC_WORDS = {
    "space": [
        "orbit",
        "rocket",
        "launch",
        "shuttle",
        "moon",
        "mars",
        "nasa",
        "satellite",
        "payload",
        "booster",
        "lunar",
        "probe",
    ],
    "med": [
        "doctor",
        "patient",
        "disease",
        "symptom",
        "treatment",
        "drug",
        "clinical",
        "diet",
        "vitamin",
        "cancer",
        "pain",
        "dose",
    ],
    "crypt": [
        "key",
        "cipher",
        "encryption",
        "clipper",
        "escrow",
        "algorithm",
        "nsa",
        "secret",
        "des",
        "rsa",
        "privacy",
        "chip",
    ],
    "autos": [
        "car",
        "engine",
        "dealer",
        "brake",
        "tire",
        "sedan",
        "mileage",
        "transmission",
        "clutch",
        "wheel",
        "honda",
        "ford",
    ],
}


def topic_text(topic: str, key: object, words: int = 20) -> str:
    """A deterministic synthetic post of ``words`` words drawn from ``TOPIC_WORDS[topic]``."""
    rng = random.Random(f"{topic}:{key}")
    return " ".join(rng.choice(TOPIC_WORDS[topic]) for _ in range(words))


@pytest.fixture(scope="session")
def sample_archive() -> Path:
    """Real posts: sci.* 150 train + 50 test each, plus 48 test posts of 16 other groups."""
    assert SAMPLE.is_file(), "run scripts/make_sample.py"
    return SAMPLE


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def hashing() -> HashingEmbedder:
    """Deterministic test embedder: for logic where embedding quality is irrelevant."""
    return HashingEmbedder(dim=64)


@pytest.fixture(scope="session")
def minilm():  # type: ignore[no-untyped-def]
    """The real offline model, loaded once per test session."""
    from monitor.embedders.minilm import OnnxMiniLM

    return OnnxMiniLM()


# -- the same tests against embedded Chroma and a real server ---------------------------------------------


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One real ``chroma run`` server for the session (tests use their own collections on it)."""
    root = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(root / "data", root / "server.log").start()
    yield server
    server.stop()


@dataclass
class Target:
    """Where a test's store lives: an embedded folder, or a collection of its own on the server."""

    mode: str
    db: Path
    url: str | None = None
    collection: str = "posts"

    def open(self) -> ChromaStore:
        return ChromaStore.open(self.db, url=self.url, collection=self.collection)

    def monitor(self, **options: Any) -> Monitor:
        return Monitor(self.db, url=self.url, collection=self.collection, **options)

    @property
    def cli_args(self) -> list[str]:
        """Global options of the ``monitor`` command for this store."""
        if self.url:
            return ["--chroma-url", self.url, "--collection", self.collection]
        return ["--db", str(self.db)]


@pytest.fixture(params=["embedded", "server"])
def target(request: pytest.FixtureRequest, db: Path) -> Target:
    """The store under test, once embedded and once on a real Chroma server."""
    if request.param == "embedded":
        return Target("embedded", db)
    server: ChromaServer = request.getfixturevalue("chroma_server")
    return Target("server", db, server.url, f"t-{uuid.uuid4().hex[:12]}")


def run_main(args: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``monitor.cli.main`` in-process: (exit code, stdout, stderr)."""
    from monitor.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    out, err = capsys.readouterr()
    return code, out, err
