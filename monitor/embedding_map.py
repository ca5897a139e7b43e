"""2-D maps of the embedding space: which points to draw, their t-SNE layout, and 2-D centroids.

Pure functions over arrays, in the spirit of the "anomaly detection with embeddings on
20 Newsgroups" notebook: sample the posts to put on the map (every flagged outlier plus a
stratified sample of the rest), project them with t-SNE, and average the 2-D points per
category to place the category centroids on the map.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

#: Points guaranteed per category in :func:`stratified_sample` when the budget allows it.
MIN_PER_CATEGORY = 3

#: Below this many points t-SNE is not run; :func:`tsne_2d` returns a PCA layout instead.
MIN_TSNE_POINTS = 4


def stratified_sample(
    categories: Sequence[str],
    must_include: np.ndarray,
    cap: int,
    seed: int,
    *,
    min_per_category: int = MIN_PER_CATEGORY,
    min_context: int = 0,
) -> np.ndarray:
    """Indices of the points to put on the map, sorted ascending (``int64``).

    * If ``n <= cap`` every index is returned.
    * Otherwise every index with ``must_include`` True (the flagged outliers) is kept, and the
      remaining budget ``cap - must_include.sum()`` is filled with a seeded random sample of the
      other points, stratified by category: each category gets at least
      ``min(min_per_category, its size)`` points (falling back to 1 per category when the budget
      is too small for that, and to the largest categories when it is smaller than the number
      of categories); apart from that minimum the budget is split proportionally to the number
      of not-yet-included points per category.
    * If ``must_include`` alone already has ``cap`` or more points, exactly those are returned:
      flagged outliers are never dropped, so the result may be larger than ``cap``.
    * ``min_context``: at least this many other points are added all the same (so a map with
      many flags still shows what normal looks like); the result is then up to
      ``must_include.sum() + min_context`` points.

    The same inputs and ``seed`` always give the same result.
    """
    cats = np.asarray(list(categories), dtype=object)
    n = len(cats)
    must = np.asarray(must_include, dtype=bool).reshape(-1)
    if must.shape[0] != n:
        raise ValueError(f"must_include has {must.shape[0]} entries, categories has {n}")
    if n <= cap:
        return np.arange(n, dtype=np.int64)

    must_idx = np.flatnonzero(must).astype(np.int64)
    budget = min(max(int(cap) - len(must_idx), int(min_context)), n - len(must_idx))
    if budget <= 0:
        return must_idx

    rest_idx = np.flatnonzero(~must)
    rest_cats = cats[rest_idx].astype(str)
    groups = sorted(set(rest_cats.tolist()))
    members = [rest_idx[rest_cats == g] for g in groups]
    sizes = np.array([len(m) for m in members], dtype=np.int64)

    alloc = _allocate(sizes, budget, min_per_category)
    rng = np.random.default_rng(seed)
    picked = [must_idx]
    for group_members, k in zip(members, alloc, strict=True):
        if k > 0:
            picked.append(rng.choice(group_members, size=int(k), replace=False).astype(np.int64))
    return np.sort(np.concatenate(picked))


def _allocate(sizes: np.ndarray, budget: int, min_per_category: int) -> np.ndarray:
    """How many points to take from each group: proportional to size, with a per-group minimum.

    Groups whose proportional share is below their minimum get the minimum and the rest of the
    budget is shared proportionally among the others (repeated until stable); integer counts by
    largest remainder. Requires ``budget < sizes.sum()`` (the caller only samples when not
    everything fits).
    """
    n_groups = len(sizes)
    alloc = np.zeros(n_groups, dtype=np.int64)
    if budget <= 0 or n_groups == 0:
        return alloc
    floor = np.minimum(sizes, max(0, min_per_category))
    if floor.sum() > budget:
        floor = np.minimum(sizes, 1)
    if floor.sum() > budget:
        # Fewer slots than categories: one point each for the largest categories
        # (ties broken by category order, which is sorted).
        order = np.argsort(-sizes, kind="stable")
        alloc[order[:budget]] = 1
        return alloc
    fixed = np.zeros(n_groups, dtype=bool)
    while True:
        free_budget = budget - int(floor[fixed].sum())
        weights = np.where(fixed, 0, sizes).astype(float)
        quota = free_budget * weights / weights.sum() if weights.sum() > 0 else weights
        newly_fixed = ~fixed & (quota < floor)
        if not newly_fixed.any():
            break
        fixed |= newly_fixed
    alloc[fixed] = floor[fixed]
    base = np.floor(quota).astype(np.int64)
    alloc[~fixed] = base[~fixed]
    short = budget - int(alloc.sum())
    if short > 0:
        frac = np.where(fixed, -1.0, quota - base)
        order = np.argsort(-frac, kind="stable")
        alloc[order[:short]] += 1
    return np.minimum(alloc, sizes)


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE layout of ``vectors`` (shape ``(n, d)``), as a float64 array of shape ``(n, 2)``.

    Uses :class:`sklearn.manifold.TSNE` with ``init="pca"``, ``random_state=seed`` and a
    perplexity of ``min(30, max(2, (n - 1) / 3))`` (always below ``n``); the same input and seed
    give the same layout. Runs single-threaded (about 1 s for 300 points, 15 s for 2000).
    Never raises for small or degenerate inputs: ``n == 0`` gives an empty
    ``(0, 2)`` array, fewer than :data:`MIN_TSNE_POINTS` points get a plain PCA projection
    (zeros for a single point), and identical points all land on the origin. Raises
    ``ValueError`` only for input that is not a 2-D array of finite numbers.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, d), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("vectors contain NaN or infinite values")
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if n < MIN_TSNE_POINTS or np.ptp(x, axis=0).max(initial=0.0) == 0.0:
        return _pca_2d(x)
    if x.shape[1] < 2:
        # PCA initialisation needs at least two features.
        x = np.hstack([x, np.zeros((n, 2 - x.shape[1]))])
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    perplexity = min(perplexity, n - 1.0)
    kwargs: dict[str, object] = {
        "n_components": 2,
        "perplexity": perplexity,
        "init": "pca",
        "learning_rate": "auto",
        "random_state": seed,
    }
    kwargs[_TSNE_ITER_PARAM] = 1000
    # Single-threaded on purpose: on a busy machine OpenMP/BLAS threads spin against each other
    # and t-SNE gets 10-20x slower; one thread is also reproducible across machines.
    with threadpool_limits(limits=1):
        coords = np.asarray(TSNE(**kwargs).fit_transform(x), dtype=np.float64)
    if not np.all(np.isfinite(coords)):
        return _pca_2d(x)
    return coords


def _tsne_iter_param() -> str:
    """``max_iter`` on scikit-learn >= 1.5, ``n_iter`` before."""
    params = inspect.signature(TSNE).parameters
    return "max_iter" if "max_iter" in params else "n_iter"


_TSNE_ITER_PARAM = _tsne_iter_param()


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """Deterministic projection on the first two principal axes (zero-padded), shape ``(n, 2)``."""
    n = x.shape[0]
    out = np.zeros((n, 2), dtype=np.float64)
    if n < 2:
        return out
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    proj = u[:, :k] * s[:k]
    # Fix the sign of each axis so the layout does not depend on the SVD implementation.
    for j in range(k):
        pivot = np.argmax(np.abs(proj[:, j]))
        if proj[pivot, j] < 0:
            proj[:, j] = -proj[:, j]
    out[:, :k] = proj
    out[np.abs(out) < 1e-12] = 0.0
    return out


def category_centroids_2d(coords: np.ndarray, categories: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean 2-D point per category, keys sorted; each value is a float64 array of shape ``(2,)``."""
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    cats = np.asarray(list(categories), dtype=object).astype(str)
    if len(cats) != len(xy):
        raise ValueError(f"coords has {len(xy)} points, categories has {len(cats)}")
    return {c: xy[cats == c].mean(axis=0) for c in sorted(set(cats.tolist()))}
