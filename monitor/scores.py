"""Outlier scores of unit vectors against one category's reference posts (higher = more unusual).

- ``centroid``: Euclidean distance to the mean of the category's vectors (the seed notebook);
- ``knn[:K]``:  mean cosine distance (1 - cos) to the K nearest reference posts.

Each score comes in two forms: for *arrivals* (the reference set does not contain them) and
*leave-one-out* for the reference posts themselves (each scored against the others), which is
what calibrates thresholds. All exact numpy, no approximate index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.errors import BaselineError

DEFAULT_K = 5
DEFAULT_SCORE = "knn"
BLOCK = 1024  # rows per block of the (rows x reference) similarity matrix


@dataclass(frozen=True)
class ScoreSpec:
    """Which score: ``centroid`` or ``knn`` with ``k`` neighbours."""

    kind: str
    k: int = DEFAULT_K

    @classmethod
    def parse(cls, spec: str | ScoreSpec) -> ScoreSpec:
        if isinstance(spec, ScoreSpec):
            return spec
        kind, _, raw = str(spec).partition(":")
        if kind == "centroid" and not raw:
            return cls("centroid", 0)
        if kind == "knn":
            given = str(spec) != "knn"
            k = int(raw) if raw.isdigit() else (0 if given else DEFAULT_K)
            if k >= 1:
                return cls("knn", k)
        raise BaselineError(f"bad score {spec!r}: use centroid, knn or knn:K (K >= 1)")

    @property
    def needs_reference(self) -> bool:
        return self.kind == "knn"

    def __str__(self) -> str:
        return "centroid" if self.kind == "centroid" else f"knn:{self.k}"


def centroid_distances(X: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``X`` to ``centroid``."""
    return np.linalg.norm(np.asarray(X, dtype=np.float32) - centroid[None, :], axis=1)


def _without_self(d: np.ndarray, n: int) -> np.ndarray:
    """Distances ``d`` of posts to the mean of the n posts they belong to, turned into distances to
    the mean without each of them: that mean is (n c - x_i) / (n - 1), so x_i's distance to it is
    n / (n - 1) times larger (infinite when a post is its category's only one)."""
    return d * (n / (n - 1)) if n > 1 else np.full(len(d), np.inf)


def centroid_loo(X: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Leave-one-out centroid distances of the rows that make up ``centroid`` (their mean): exact,
    in one pass."""
    return _without_self(centroid_distances(X, centroid), len(X))


def knn_scores(
    X: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    leave_one_out: bool = False,
    drop_nearest: bool = False,
) -> np.ndarray:
    """Mean cosine distance of each row of ``X`` to its ``k`` nearest rows of ``reference``.

    With ``leave_one_out``, ``X`` *is* ``reference`` (same rows, same order) and each row's own
    entry is left out. With ``drop_nearest``, each row of ``X`` is somewhere in ``reference``
    and its nearest entry (itself) is left out. With fewer than k other rows, the mean is over
    all of them.
    """
    X = np.asarray(X, dtype=np.float32)
    R = np.asarray(reference, dtype=np.float32)
    skip = 1 if leave_one_out or drop_nearest else 0
    available = len(R) - skip
    if available < 1:
        return np.full(len(X), np.inf)
    kk = min(k, available)
    take = kk + (1 if drop_nearest else 0)
    out = np.empty(len(X), dtype=np.float64)
    for start in range(0, len(X), BLOCK):
        block = X[start : start + BLOCK]
        dist = 1.0 - block @ R.T
        if leave_one_out:
            rows = np.arange(len(block))
            dist[rows, start + rows] = np.inf
        nearest = np.partition(dist, take - 1, axis=1)[:, :take] if take < dist.shape[1] else dist
        # summed in float64 and in ascending order, so that a post scored with drop_nearest gets
        # exactly the score leave_one_out gave it (its calibration score) from the same distances
        nearest = np.sort(np.clip(nearest, 0.0, None).astype(np.float64), axis=1)
        total = nearest[:, 1:take].sum(axis=1) if drop_nearest else nearest[:, :take].sum(axis=1)
        out[start : start + len(block)] = total / kk
    return out


def scores(
    spec: ScoreSpec,
    X: np.ndarray,
    centroid: np.ndarray,
    reference: np.ndarray | None,
    *,
    members: np.ndarray | None = None,
    n: int | None = None,
) -> np.ndarray:
    """Scores of rows ``X`` against one category: the mean ``centroid`` of its ``n`` posts (default
    ``len(reference)``) and, for knn, those posts themselves (``reference``).

    ``members[i]``: row i is one of those posts; it is scored without itself (leave-one-out), as
    its category's calibration scores were.
    """
    X = np.asarray(X, dtype=np.float32)
    inside = np.zeros(len(X), bool) if members is None else np.asarray(members, bool)
    out = np.empty(len(X), dtype=np.float64)
    if spec.kind == "centroid":
        out[:] = centroid_distances(X, centroid)
        if inside.any():
            count = n if n is not None else (len(reference) if reference is not None else 0)
            out[inside] = _without_self(out[inside], count)
        return out
    if reference is None:
        raise BaselineError("the knn score needs the category's reference posts")
    if (~inside).any():
        out[~inside] = knn_scores(X[~inside], reference, spec.k)
    if inside.any():
        out[inside] = knn_scores(X[inside], reference, spec.k, drop_nearest=True)
    return out


def loo_scores(spec: ScoreSpec, X: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Leave-one-out scores of a category's own posts ``X`` (whose mean is ``centroid``)."""
    if spec.kind == "centroid":
        return centroid_loo(X, centroid).astype(np.float64)
    return knn_scores(X, X, spec.k, leave_one_out=True)
