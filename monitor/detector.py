"""The centroid outlier detector: an estimator over arrays, knowing nothing of Chroma.

A post is an outlier when its Euclidean distance to its own category's centroid (the mean of
the category's unit vectors, as in the seed notebook) exceeds that category's radius. The radius
comes from a stated policy:

- ``quantile:Q`` (default ``quantile:0.95``): the Q-quantile of the category's own distances,
  so each category gets a threshold on its own scale (tight topics get tight radii);
- ``fixed:R``: one radius for every category (the seed's way; R depends on the model).

Follows scikit-learn's outlier-detector vocabulary: ``fit``, ``score_samples`` (higher = more
normal), ``decision_function`` (negative = outlier), ``predict`` (+1 inlier / -1 outlier, and 0
where there is no verdict). Because the verdict depends on the category a post claims, the
scoring methods take ``categories`` alongside ``X``; ``None`` means "score against the nearest
centroid".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from monitor.errors import BaselineError

DEFAULT_POLICY = "quantile:0.95"
DEFAULT_MIN_POSTS = 20
QUANTILE_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # stored distance profile per category


@dataclass(frozen=True)
class RadiusPolicy:
    """How a category's radius is derived from its distance distribution."""

    kind: str  # "fixed" | "quantile"
    value: float

    @classmethod
    def parse(cls, spec: str | RadiusPolicy) -> RadiusPolicy:
        if isinstance(spec, RadiusPolicy):
            return spec
        kind, _, raw = str(spec).partition(":")
        try:
            value = float(raw)
        except ValueError:
            raise BaselineError(f"bad radius policy {spec!r}: use fixed:R or quantile:Q") from None
        if not np.isfinite(value):
            raise BaselineError(f"bad radius policy {spec!r}: the number must be finite")
        if kind == "fixed" and value > 0:
            return cls("fixed", value)
        if kind == "quantile" and 0 < value < 1:
            return cls("quantile", value)
        raise BaselineError(f"bad radius policy {spec!r}: use fixed:R (R > 0) or quantile:Q (0 < Q < 1)")

    def radius(self, distances: np.ndarray) -> float:
        if self.kind == "fixed":
            return self.value
        return float(np.quantile(distances, self.value))

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass(frozen=True)
class Verdict:
    """The outcome for one post; ``status`` is outlier, inlier, insufficient_baseline or unscored."""

    status: str
    scored_against: str | None = None
    distance: float | None = None
    radius: float | None = None
    nearest_category: str | None = None
    nearest_distance: float | None = None

    @property
    def is_outlier(self) -> bool:
        return self.status == "outlier"


class CategorySums:
    """Running per-category vector sums: centroids from a stream of pages in bounded memory."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def add(self, X: np.ndarray, categories: Sequence[str | None]) -> None:
        cats = np.asarray([c if c is not None else "" for c in categories], dtype=object)
        for cat in set(cats.tolist()) - {""}:
            mask = cats == cat
            total = X[mask].astype(np.float64).sum(axis=0)
            self.sums[cat] = self.sums.get(cat, 0) + total
            self.counts[cat] = self.counts.get(cat, 0) + int(mask.sum())

    def centroids(self) -> tuple[list[str], np.ndarray]:
        cats = sorted(self.sums)
        if not cats:
            return [], np.zeros((0, 0), np.float32)
        return cats, np.stack([self.sums[c] / self.counts[c] for c in cats]).astype(np.float32)


class CentroidDetector(BaseEstimator):
    """Per-category centroid + radius outlier detector.

    Parameters are only stored here; ``fit`` learns ``categories_``, ``centroids_`` (k, d),
    ``counts_``, ``radii_`` (NaN where the category has fewer than ``min_posts`` posts),
    ``distance_quantiles_`` (k, 21) and ``train_distances_`` (category -> array).
    """

    def __init__(
        self, policy: str | RadiusPolicy = DEFAULT_POLICY, min_posts: int = DEFAULT_MIN_POSTS
    ) -> None:
        self.policy = policy
        self.min_posts = min_posts

    # -- fitting ----------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Sequence[str | None]) -> CentroidDetector:
        """Learn centroids and radii from vectors ``X`` with categories ``y`` (None rows ignored)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label: got shape {X.shape} and {len(y)} labels")
        sums = CategorySums()
        sums.add(X, y)
        categories, centroids = sums.centroids()
        labels = np.asarray([c if c is not None else "" for c in y], dtype=object)
        distances = {
            c: np.linalg.norm(X[labels == c] - centroids[i], axis=1) for i, c in enumerate(categories)
        }
        return self.fit_from_parts(categories, centroids, distances)

    def fit_from_parts(
        self,
        categories: Sequence[str],
        centroids: np.ndarray,
        distances: dict[str, np.ndarray],
    ) -> CentroidDetector:
        """Finish fitting from centroids and each category's distances (the streaming path)."""
        policy = RadiusPolicy.parse(self.policy)
        self.categories_ = list(categories)
        self.centroids_ = np.asarray(centroids, dtype=np.float32)
        self.counts_ = np.array([len(distances.get(c, ())) for c in self.categories_], dtype=int)
        self.train_distances_ = {
            c: np.sort(np.asarray(distances.get(c, ()), dtype=np.float32)) for c in categories
        }
        self.radii_ = np.full(len(self.categories_), np.nan)
        self.distance_quantiles_ = np.full((len(self.categories_), len(QUANTILE_GRID)), np.nan)
        for i, c in enumerate(self.categories_):
            d = self.train_distances_[c]
            if len(d):
                self.distance_quantiles_[i] = np.quantile(d, QUANTILE_GRID)
            if len(d) >= self.min_posts:
                self.radii_[i] = policy.radius(d)
        return self

    @classmethod
    def from_state(
        cls,
        categories: Sequence[str],
        centroids: np.ndarray,
        radii: Sequence[float | None],
        counts: Sequence[int],
        policy: str | RadiusPolicy,
        min_posts: int,
    ) -> CentroidDetector:
        """Rebuild a fitted detector from persisted state (no training distances needed)."""
        det = cls(policy=policy, min_posts=min_posts)
        det.categories_ = list(categories)
        det.centroids_ = np.asarray(centroids, dtype=np.float32)
        det.radii_ = np.array([np.nan if r is None else float(r) for r in radii])
        det.counts_ = np.asarray(counts, dtype=int)
        det.train_distances_ = {}
        det.distance_quantiles_ = np.full((len(det.categories_), len(QUANTILE_GRID)), np.nan)
        return det

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise BaselineError("detector is not fitted: build a baseline first")

    @property
    def ready_(self) -> np.ndarray:
        """Which categories have a radius (enough posts for a verdict)."""
        self._check_fitted()
        return ~np.isnan(self.radii_)

    # -- scoring ----------------------------------------------------------------------------

    def centroid_distances(self, X: np.ndarray) -> np.ndarray:
        """(n, k) Euclidean distances from each row to each category centroid."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if not len(self.categories_):
            return np.zeros((len(X), 0), dtype=np.float32)
        sq = (X**2).sum(1)[:, None] - 2 * X @ self.centroids_.T + (self.centroids_**2).sum(1)[None, :]
        return np.sqrt(np.clip(sq, 0, None))

    def verdicts(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> list[Verdict]:
        """One :class:`Verdict` per row of ``X``."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        cats = list(categories) if categories is not None else [None] * len(X)
        if X.ndim != 2 or len(cats) != len(X):
            raise ValueError(f"X must be 2-D with one category per row: got shape {X.shape} and {len(cats)}")
        dist = self.centroid_distances(X)
        ready = self.ready_
        index = {c: i for i, c in enumerate(self.categories_)}
        out: list[Verdict] = []
        ready_idx = np.flatnonzero(ready)
        for row, cat in enumerate(cats):
            nearest = nearest_d = None
            if len(ready_idx):
                j = int(ready_idx[np.argmin(dist[row, ready_idx])])
                nearest, nearest_d = self.categories_[j], float(dist[row, j])
            own = index.get(cat) if cat is not None else None
            if cat is None:
                if nearest is None:
                    out.append(Verdict("unscored"))
                    continue
                own = index[nearest]
            if own is None or not ready[own]:
                out.append(Verdict("insufficient_baseline", cat, None, None, nearest, nearest_d))
                continue
            d, r = float(dist[row, own]), float(self.radii_[own])
            status = "outlier" if d > r else "inlier"
            out.append(Verdict(status, self.categories_[own], d, r, nearest, nearest_d))
        return out

    def score_samples(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """Minus the distance to the scored category's centroid (higher = more normal; NaN = no verdict)."""
        return np.array(
            [-v.distance if v.distance is not None else np.nan for v in self.verdicts(X, categories)]
        )

    def decision_function(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """Radius minus distance: negative for outliers, NaN where there is no verdict."""
        return np.array(
            [
                v.radius - v.distance if v.distance is not None and v.radius is not None else np.nan
                for v in self.verdicts(X, categories)
            ]
        )

    def fit_predict(self, X: np.ndarray, y: Sequence[str | None]) -> np.ndarray:
        """Fit on ``X`` with categories ``y``, then predict the same rows (+1 / -1 / 0)."""
        return self.fit(X, y).predict(X, y)

    def predict(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """+1 inlier, -1 outlier, 0 no verdict (category without a baseline)."""
        codes = {"outlier": -1, "inlier": 1}
        return np.array([codes.get(v.status, 0) for v in self.verdicts(X, categories)], dtype=int)
