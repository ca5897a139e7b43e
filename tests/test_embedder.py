"""The offline MiniLM embedder against independent fp32 reference vectors (real posts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE

from monitor.embedders import make_embedder
from monitor.embedders.minilm import OnnxMiniLM, _checked
from monitor.errors import EmbedderError


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    texts = [item["text"] for item in data["items"]]
    vectors = np.array([item["vector"] for item in data["items"]], dtype=np.float32)
    return texts, vectors


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_matches_fp32_reference_vectors(minilm: OnnxMiniLM, reference: tuple[list[str], np.ndarray]) -> None:
    texts, ref = reference
    batch = minilm.encode(texts)
    assert batch.vectors.shape == (24, 384)
    assert batch.vectors.dtype == np.float32
    cos = _cosines(batch.vectors, ref)
    assert cos.min() >= 0.998, f"worst cosine {cos.min():.5f}"
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_vectors(reference: tuple[list[str], np.ndarray]) -> None:
    texts, ref = reference
    batched = OnnxMiniLM(threads=1, batch_size=8, batch_tokens=4096).encode(texts)
    assert _cosines(batched.vectors, ref).min() >= 0.998


def test_long_posts_are_flagged_as_truncated(
    minilm: OnnxMiniLM, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, _ = reference
    long_text = " ".join(["satellite orbit"] * 400)
    batch = minilm.encode([texts[0], long_text])
    assert batch.truncated.tolist() == [False, True]


def test_empty_input_gives_empty_array(minilm: OnnxMiniLM) -> None:
    batch = minilm.encode([])
    assert batch.vectors.shape == (0, 384)


def test_order_is_preserved_despite_length_sorting(
    minilm: OnnxMiniLM, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, ref = reference
    reordered = texts[::-1]
    vectors = minilm.embed(reordered)
    assert _cosines(vectors, ref[::-1]).min() >= 0.998


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(EmbedderError, match="sha256"):
        _checked(bogus, "0" * 64, "MiniLM ONNX weights")


def test_threads_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_THREADS", "1")
    assert OnnxMiniLM().threads == 1
    for bad in ("many", "0", "-2"):  # as --threads refuses them
        monkeypatch.setenv("MONITOR_THREADS", bad)
        with pytest.raises(EmbedderError, match="MONITOR_THREADS must be a whole number of at least 1"):
            OnnxMiniLM()


def test_make_embedder_specs() -> None:
    assert make_embedder("hashing:16").dim == 16
    with pytest.raises(EmbedderError, match="unknown embedder"):
        make_embedder("word2vec")
    with pytest.raises(EmbedderError, match="hashing:DIM"):
        make_embedder("hashing:big")


def test_mean_of_windows_is_its_own_vector_space(
    minilm: OnnxMiniLM, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, _ = reference
    mean = OnnxMiniLM(windows="mean")
    assert mean.id != minilm.id and mean.stamp()["embedder"] == "minilm-l6-v2-int8-mean8"
    short = [t for t in texts if len(t) < 400][:3] or ["a short post about orbits"]
    np.testing.assert_allclose(mean.embed(short), minilm.embed(short), atol=1e-6)  # one window: identical
    long_text = " ".join(texts) * 3  # many windows
    first, avg = minilm.encode([long_text]), mean.encode([long_text])
    assert first.truncated[0] and avg.truncated[0]  # more than 8 windows: still cut, and counted
    assert abs(float(np.linalg.norm(avg.vectors[0])) - 1) < 1e-5
    assert float(first.vectors[0] @ avg.vectors[0]) < 0.999  # the later windows count
    two_windows = " ".join(["orbit"] * 300)
    assert not mean.encode([two_windows]).truncated[0] and minilm.encode([two_windows]).truncated[0]
    with pytest.raises(EmbedderError, match="windows"):
        OnnxMiniLM(windows="max")
