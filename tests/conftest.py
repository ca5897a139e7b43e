"""Shared fixtures: the real sample of 20 Newsgroups posts, a fresh embedded Chroma, embedders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from monitor.embedders.hashing import HashingEmbedder

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
