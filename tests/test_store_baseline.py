"""Store and baseline against a real Chroma, embedded and server (``target``): paging, stamps,
persistence, re-scoring."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Target

from monitor.baseline import build_baseline, load_baseline
from monitor.embedders.hashing import HashingEmbedder
from monitor.errors import BaselineError, EmbedderMismatchError
from monitor.posts import Post
from monitor.query import collection_stats, own_distances, radius_sweep, sweep_radii
from monitor.scoring import rescore
from monitor.store import ChromaStore


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _fill(store: ChromaStore, n_per: int = 60, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3]
    X = _unit(np.vstack([c + rng.normal(0, 0.15, (n_per, dim)) for c in centres]))
    cats = [c for c in ("a", "b", "c") for _ in range(n_per)]
    ids = [f"p{i:04d}" for i in range(len(X))]
    store.check_stamp({"embedder": "synthetic", "embedding_dim": dim})
    store.upsert(ids, X, [f"text {i}" for i in ids], [{"category": c, "has_category": True} for c in cats])
    return X


def test_pages_cover_every_row_once(target: Target) -> None:
    store = target.open()
    X = _fill(store, n_per=70)
    seen = [pid for page in store.pages(vectors=True, page_size=50) for pid in page.ids]
    assert len(seen) == len(X) == len(set(seen)) == store.count()
    page = next(store.pages(vectors=True, page_size=50))
    assert page.vectors is not None and page.vectors.dtype == np.float32 and page.vectors.shape == (50, 8)


def test_stamp_refuses_another_embedder(target: Target) -> None:
    store = target.open()
    store.check_stamp(HashingEmbedder(64).stamp())
    store.check_stamp(HashingEmbedder(32).stamp())  # still empty: the new embedder takes over
    assert store.stamp() == {"embedder": "hashing-32", "embedding_dim": 32}
    store.upsert(["x"], HashingEmbedder(32).embed(["a post"]), ["a post"], [{"category": "c"}])
    store.check_stamp(HashingEmbedder(32).stamp())  # same: fine
    with pytest.raises(EmbedderMismatchError, match="hashing-32"):
        store.check_stamp(HashingEmbedder(64).stamp())


def test_baseline_is_persisted_and_survives_reopen(target: Target) -> None:
    store = target.open()
    X = _fill(store)
    built = build_baseline(store, "quantile:0.9", min_posts=10)
    assert built.version == 1
    reopened = load_baseline(target.open())
    assert reopened is not None and reopened.version == 1
    assert reopened.detector.categories_ == ["a", "b", "c"]
    np.testing.assert_allclose(reopened.detector.centroids_, built.detector.centroids_, atol=1e-6)
    np.testing.assert_allclose(reopened.detector.radii_, built.detector.radii_, rtol=1e-6)
    np.testing.assert_allclose(reopened.detector.centroids_[0], X[:60].mean(0), atol=1e-5)
    assert reopened.policy == "quantile:0.9"


def test_versions_increment_and_old_ones_are_pruned(target: Target) -> None:
    store = target.open()
    _fill(store)
    for _ in range(7):
        last = build_baseline(store, min_posts=10)
    assert last.version == 7
    kept = store.baseline_collection.get(include=["metadatas"])
    versions = sorted({m["version"] for m in kept["metadatas"]})
    assert versions == [3, 4, 5, 6, 7]


def test_baseline_needs_categorised_posts(target: Target) -> None:
    with pytest.raises(BaselineError, match="no categorised posts"):
        build_baseline(target.open())


def test_rescore_writes_verdicts_matching_the_detector(target: Target) -> None:
    store = target.open()
    X = _fill(store)
    base = build_baseline(store, "quantile:0.9", min_posts=10)
    report = rescore(store, base)
    assert report.posts == len(X)
    metas = {pid: m for page in store.pages() for pid, m in zip(page.ids, page.metadatas, strict=True)}
    # stored posts are the baseline's own posts: each is scored leave-one-out
    verdicts = base.detector.verdicts(X, ["a"] * 60 + ["b"] * 60 + ["c"] * 60, members=[True] * len(X))
    expected = np.array([-1 if v.is_outlier else 1 for v in verdicts])
    got = np.array([-1 if metas[f"p{i:04d}"]["is_outlier"] else 1 for i in range(len(X))])
    assert (got == expected).all()
    assert report.outliers == int((expected == -1).sum()) > 0
    assert {m["baseline_version"] for m in metas.values()} == {1}
    # a stricter baseline flags more, and re-scoring records the change
    base2 = build_baseline(store, "quantile:0.5", min_posts=10)
    report2 = rescore(store, base2)
    assert report2.outliers > report.outliers and report2.newly_flagged > 0
    stats = collection_stats(store)
    assert stats["baseline"]["version"] == 2 and stats["baseline"]["posts_with_older_verdicts"] == 0
    assert sum(r["outliers"] for r in stats["categories"]) == report2.outliers


def test_radius_sweep_counts_posts_beyond_each_radius(target: Target) -> None:
    store = target.open()
    _fill(store)
    rescore(store, build_baseline(store, min_posts=10))
    distances = own_distances(store)
    assert set(distances) == {"a", "b", "c"} and sum(len(d) for d in distances.values()) == 180
    everything = np.concatenate(list(distances.values()))
    rows = radius_sweep(distances, [0.0, float(np.median(everything)), 10.0])
    assert [r["n_outliers"] for r in rows] == [180, int((everything > np.median(everything)).sum()), 0]
    grid = sweep_radii(everything)
    assert 5 <= len(grid) <= 22 and grid == sorted(grid)
    counts = [r["n_outliers"] for r in radius_sweep(distances)]
    assert counts == sorted(counts, reverse=True)


def test_ingest_then_baseline_then_arrival_with_test_embedder(
    target: Target, hashing: HashingEmbedder
) -> None:
    mon = target.monitor(embedder=hashing)
    space = [Post(f"rocket launch orbit satellite nasa shuttle {i}", "space", f"s{i}") for i in range(30)]
    med = [Post(f"doctor patient disease treatment clinic {i}", "med", f"m{i}") for i in range(30)]
    mon.ingest(space + med)
    base, _ = mon.build_baseline("quantile:0.95", min_posts=10)
    report = mon.ingest([Post("hockey playoffs goalie puck stanley cup", "space", "x1")])
    assert report.added == 1 and report.flagged == 1
    row = mon.outliers()[0]  # the most distant first
    assert (
        row["id"] == "x1" and row["nearest_category"] in {"space", "med"} and row["distance"] > row["radius"]
    )
    assert base.version == 1
