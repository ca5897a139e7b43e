from __future__ import annotations

import numpy as np
import pytest

from monitor.embedding_map import category_centroids_2d, stratified_sample, tsne_2d


def _cats(sizes: dict[str, int]) -> list[str]:
    return [name for name, n in sizes.items() for _ in range(n)]


def _per_category(categories: list[str], idx: np.ndarray) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in idx:
        counts[categories[i]] = counts.get(categories[i], 0) + 1
    return counts


# --- stratified_sample -------------------------------------------------------------------------


def test_all_indices_when_n_within_cap() -> None:
    cats = _cats({"a": 5, "b": 3})
    idx = stratified_sample(cats, np.zeros(8, dtype=bool), cap=8, seed=0)
    assert idx.tolist() == list(range(8))
    assert stratified_sample(cats, np.zeros(8, dtype=bool), cap=100, seed=0).tolist() == list(range(8))


def test_cap_respected_sorted_unique() -> None:
    cats = _cats({"a": 400, "b": 300, "c": 300})
    idx = stratified_sample(cats, np.zeros(1000, dtype=bool), cap=100, seed=3)
    assert len(idx) == 100
    assert np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 1000
    assert np.issubdtype(idx.dtype, np.integer)


def test_proportional_stratification() -> None:
    cats = _cats({"big": 800, "mid": 150, "small": 50})
    idx = stratified_sample(cats, np.zeros(1000, dtype=bool), cap=200, seed=1)
    counts = _per_category(cats, idx)
    assert sum(counts.values()) == 200
    assert abs(counts["big"] - 160) <= 3
    assert abs(counts["mid"] - 30) <= 3
    assert abs(counts["small"] - 10) <= 3


def test_minimum_per_category_for_tiny_categories() -> None:
    cats = _cats({"huge": 2000, "tiny": 4, "pair": 2})
    idx = stratified_sample(cats, np.zeros(len(cats), dtype=bool), cap=60, seed=0)
    counts = _per_category(cats, idx)
    assert len(idx) == 60
    assert counts["tiny"] >= 3  # proportional share would be 0
    assert counts["pair"] == 2  # all of a category smaller than the minimum
    assert counts["huge"] == 55


def test_one_per_category_when_budget_is_small() -> None:
    cats = _cats({"a": 50, "b": 50, "c": 50, "d": 50})
    idx = stratified_sample(cats, np.zeros(200, dtype=bool), cap=4, seed=0)
    assert sorted(_per_category(cats, idx).values()) == [1, 1, 1, 1]


def test_fewer_slots_than_categories_takes_largest() -> None:
    cats = _cats({"a": 10, "b": 30, "c": 20})
    idx = stratified_sample(cats, np.zeros(60, dtype=bool), cap=2, seed=0)
    assert _per_category(cats, idx) == {"b": 1, "c": 1}


def test_must_include_always_kept() -> None:
    cats = _cats({"a": 500, "b": 500})
    must = np.zeros(1000, dtype=bool)
    flagged = [3, 499, 500, 777, 999]
    must[flagged] = True
    for seed in range(5):
        idx = stratified_sample(cats, must, cap=50, seed=seed)
        assert len(idx) == 50
        assert set(flagged) <= set(idx.tolist())


def test_must_include_beyond_cap_keeps_all_of_them() -> None:
    cats = _cats({"a": 100, "b": 100})
    must = np.zeros(200, dtype=bool)
    must[::10] = True  # 20 flagged
    idx = stratified_sample(cats, must, cap=5, seed=0)
    assert idx.tolist() == np.flatnonzero(must).tolist()
    assert len(idx) == 20


def test_deterministic_and_seed_dependent() -> None:
    cats = _cats({"a": 300, "b": 200, "c": 100})
    must = np.zeros(600, dtype=bool)
    must[[10, 20]] = True
    a = stratified_sample(cats, must, cap=60, seed=7)
    b = stratified_sample(cats, must, cap=60, seed=7)
    c = stratified_sample(cats, must, cap=60, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert _per_category(cats, a) == _per_category(cats, c)


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        stratified_sample(["a", "b"], np.zeros(3, dtype=bool), cap=1, seed=0)


# --- tsne_2d ---------------------------------------------------------------------------------


def _clusters(n_per: int, d: int = 32, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 5
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + rng.normal(size=(k * n_per, d))
    return x, labels


def test_tsne_shape_finite_and_deterministic() -> None:
    x, _ = _clusters(20)
    a = tsne_2d(x, seed=0)
    b = tsne_2d(x, seed=0)
    assert a.shape == (60, 2)
    assert np.all(np.isfinite(a))
    assert np.array_equal(a, b)
    assert a.std() > 0


def test_tsne_separates_clusters() -> None:
    x, labels = _clusters(20, k=2)
    xy = tsne_2d(x, seed=1)
    c0, c1 = xy[labels == 0].mean(axis=0), xy[labels == 1].mean(axis=0)
    spread = max(xy[labels == 0].std(), xy[labels == 1].std())
    assert np.linalg.norm(c0 - c1) > 2 * spread


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_tsne_small_n_never_raises(n: int) -> None:
    x = np.random.default_rng(n).normal(size=(n, 16))
    xy = tsne_2d(x, seed=0)
    assert xy.shape == (n, 2)
    assert np.all(np.isfinite(xy))
    if n >= 2:
        assert np.ptp(xy) > 0  # distinct points are not collapsed


def test_tsne_single_point_at_origin_and_identical_points() -> None:
    assert tsne_2d(np.ones((1, 8))).tolist() == [[0.0, 0.0]]
    same = tsne_2d(np.ones((6, 8)))
    assert same.shape == (6, 2)
    assert np.all(same == 0.0)


def test_tsne_one_feature() -> None:
    xy = tsne_2d(np.arange(8, dtype=float).reshape(8, 1))
    assert xy.shape == (8, 2)
    assert np.all(np.isfinite(xy))


def test_tsne_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        tsne_2d(np.zeros(5))
    bad = np.zeros((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError):
        tsne_2d(bad)


# --- category_centroids_2d -------------------------------------------------------------------


def test_centroids_are_means() -> None:
    coords = np.array([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [1.0, -1.0], [12.0, 8.0]])
    cats = ["a", "a", "b", "a", "b"]
    got = category_centroids_2d(coords, cats)
    assert list(got) == ["a", "b"]
    np.testing.assert_allclose(got["a"], [1.0, 1.0])
    np.testing.assert_allclose(got["b"], [11.0, 9.0])
    assert got["a"].shape == (2,)


def test_centroids_empty_and_mismatch() -> None:
    assert category_centroids_2d(np.zeros((0, 2)), []) == {}
    with pytest.raises(ValueError):
        category_centroids_2d(np.zeros((3, 2)), ["a", "b"])


@pytest.mark.parametrize("seed", range(6))
def test_random_configurations_hit_cap_and_minimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = {f"c{i}": int(rng.integers(1, 300)) for i in range(int(rng.integers(2, 20)))}
    cats = _cats(sizes)
    must = rng.random(len(cats)) < 0.02
    cap = int(rng.integers(int(must.sum()) + 3 * len(sizes), len(cats)))
    idx = stratified_sample(cats, must, cap=cap, seed=seed)
    assert len(idx) == cap
    assert len(np.unique(idx)) == cap
    assert set(np.flatnonzero(must).tolist()) <= set(idx.tolist())
    counts = _per_category(cats, idx)
    for name, size in sizes.items():
        assert counts.get(name, 0) >= min(3, size)


def test_min_context_keeps_normal_points_when_flags_fill_the_cap() -> None:
    cats = ["a"] * 500 + ["b"] * 500
    flagged = np.zeros(1000, dtype=bool)
    flagged[:300] = True
    idx = stratified_sample(cats, flagged, cap=200, seed=0, min_context=100)
    assert flagged[idx].sum() == 300  # every flag kept
    assert (~flagged[idx]).sum() == 100  # plus the context
    assert set(np.asarray(cats)[idx[~flagged[idx]]]) == {"a", "b"}
