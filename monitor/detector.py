"""The per-category outlier detector: an estimator over arrays, knowing nothing of Chroma.

Each post claims a category. It is scored against that category's baseline posts (see
:mod:`monitor.scores`: ``knn`` by default, or the seed's ``centroid`` distance) and flagged when
the score exceeds the category's threshold, derived from a stated policy (see
:mod:`monitor.calibration`: conformal ``alpha:A`` by default, ``quantile:Q``, ``fixed:R``). Every
verdict carries a conformal p-value, so a different alpha can be applied after the fact.

Follows scikit-learn's outlier-detector vocabulary: ``fit``, ``score_samples`` (higher = more
normal), ``decision_function`` (negative = outlier), ``predict`` (+1 inlier / -1 outlier, and 0
where there is no verdict). Because the verdict depends on the category a post claims, the
scoring methods take ``categories`` alongside ``X``; ``None`` means "score against the nearest
centroid".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator

from monitor.calibration import DEFAULT_POLICY, Calibration, ThresholdPolicy
from monitor.embedders.base import l2_normalise
from monitor.errors import BaselineError
from monitor.scores import DEFAULT_SCORE, ScoreSpec, centroid_loo, loo_scores, scores

RadiusPolicy = ThresholdPolicy  # the name used before policies covered every score
DEFAULT_MIN_POSTS = 20
LOOKS_LIKE_CANDIDATES = 3
"""An outlier's "looks like" is searched among this many other categories with the nearest centroids."""
QUANTILE_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # stored distance profile per category


@dataclass(frozen=True)
class Verdict:
    """The outcome for one post; ``status`` is outlier, inlier, insufficient_baseline or unscored.

    ``score``/``threshold``/``p_value`` are the detector's score; ``distance``/``radius`` the
    centroid distance and the centroid radius under the same policy (for maps and sweeps).
    ``looks_like`` names, for an outlier, the other category where it would be an inlier.
    """

    status: str
    scored_against: str | None = None
    distance: float | None = None
    radius: float | None = None
    nearest_category: str | None = None
    nearest_distance: float | None = None
    score: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    looks_like: str | None = None

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


class _Fitted(NamedTuple):
    """What fitting learns about one category."""

    centroid: np.ndarray
    count: int
    threshold: float
    radius: float
    calibration: Calibration
    profile: np.ndarray  # centroid-distance quantiles at QUANTILE_GRID
    mean_distance: float


def unit_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as float32 rows of length 1 (zero rows stay zero); rows already unit are left bit-exact.

    The scores are cosine-based: knn's ``1 - dot`` means nothing for raw vectors, so the estimator
    normalises whatever it is given, as the embedders do.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or not X.size or np.all(np.abs(np.linalg.norm(X, axis=1) - 1) <= 1e-4):
        return X
    return l2_normalise(X)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class CategoryDetector(BaseEstimator):
    """Per-category outlier detector with calibrated thresholds.

    Parameters are only stored here. ``fit`` learns, per category (``categories_``, sorted):
    ``centroids_`` (k, d), ``counts_``, ``thresholds_`` (on the score), ``radii_`` (on the
    centroid distance), ``calibrations_`` (leave-one-out scores), ``distance_quantiles_``
    (k, 21), ``mean_distances_``, and ``reference_`` (category -> its vectors; knn only).
    Thresholds are NaN for categories with fewer than ``min_posts`` posts (no verdicts there).
    """

    def __init__(
        self,
        score: str | ScoreSpec = DEFAULT_SCORE,
        policy: str | ThresholdPolicy = DEFAULT_POLICY,
        min_posts: int = DEFAULT_MIN_POSTS,
    ) -> None:
        self.score = score
        self.policy = policy
        self.min_posts = min_posts

    # -- fitting ----------------------------------------------------------------------------

    def fit(
        self, X: np.ndarray, y: Sequence[str | None], *, exclude: Sequence[bool] | None = None
    ) -> CategoryDetector:
        """Learn from vectors ``X`` with categories ``y`` (None rows ignored); rows are L2-normalised.

        ``exclude[i]``: row i stays out of its category's reference posts (centroid and
        neighbours) but is still scored for calibration, as a newcomer would be — the robust
        baseline. Thresholds then keep their promise whether the excluded rows were outliers or not.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label: got shape {X.shape} and {len(y)} labels")
        labels = np.asarray([c if c is not None else "" for c in y], dtype=object)
        out = np.zeros(len(X), bool) if exclude is None else np.asarray(exclude, bool)
        groups = ((c, X[labels == c], out[labels == c]) for c in sorted(set(labels.tolist()) - {""}))
        return self.fit_categories(groups)

    def fit_categories(
        self,
        groups: Iterable[tuple[str, np.ndarray] | tuple[str, np.ndarray, np.ndarray]],
        *,
        keep_reference: bool = True,
    ) -> CategoryDetector:
        """Fit from ``(category, vectors[, excluded])`` tuples, one category at a time (streaming).

        With ``keep_reference=False`` the vectors are not kept (set ``reference_`` to a mapping
        that loads them on demand, as the Chroma-backed baseline does).
        """
        spec, policy = ScoreSpec.parse(self.score), ThresholdPolicy.parse(self.policy)
        if self.min_posts < 2:
            raise BaselineError("min_posts must be at least 2")
        fitted: dict[str, _Fitted] = {}
        reference: dict[str, np.ndarray] = {}
        for group in groups:
            cat, Xc = group[0], unit_rows(group[1])
            out = np.asarray(group[2], bool) if len(group) > 2 else np.zeros(len(Xc), bool)
            ref, rest = Xc[~out], Xc[out]
            if not len(ref):
                continue
            centroid = ref.mean(axis=0)
            distances = np.linalg.norm(ref - centroid, axis=1)
            threshold = radius = np.nan
            cal = Calibration(np.zeros(0), 0)
            if len(ref) >= self.min_posts:
                rest_scores = scores(spec, rest, centroid, ref) if len(rest) else np.zeros(0)
                cal = Calibration.from_scores(np.r_[loo_scores(spec, ref, centroid), rest_scores])
                in_sample = (
                    np.r_[scores(spec, ref, centroid, ref), rest_scores]
                    if policy.kind == "quantile"
                    else None
                )
                threshold = policy.threshold(cal, in_sample)
                rest_d = np.linalg.norm(rest - centroid, axis=1) if len(rest) else np.zeros(0)
                radius = policy.threshold(
                    Calibration.from_scores(np.r_[centroid_loo(ref, centroid), rest_d]),
                    np.r_[distances, rest_d],
                )
            fitted[cat] = _Fitted(
                centroid,
                len(ref),
                threshold,
                radius,
                cal,
                np.quantile(distances, QUANTILE_GRID),
                float(distances.mean()),
            )
            if keep_reference and spec.needs_reference:
                reference[cat] = ref
        cats = sorted(fitted)
        rows = [fitted[c] for c in cats]
        dim = rows[0].centroid.shape[0] if rows else 0
        self.categories_ = cats
        self.centroids_ = (
            np.stack([r.centroid for r in rows]).astype(np.float32)
            if rows
            else np.zeros((0, dim), np.float32)
        )
        self.counts_ = np.asarray([r.count for r in rows], dtype=int)
        self.thresholds_ = np.asarray([r.threshold for r in rows], dtype=np.float64)
        self.radii_ = np.asarray([r.radius for r in rows], dtype=np.float64)
        self.calibrations_ = [r.calibration for r in rows]
        self.distance_quantiles_ = np.asarray([r.profile for r in rows]).reshape(
            len(cats), len(QUANTILE_GRID)
        )
        self.mean_distances_ = np.asarray([r.mean_distance for r in rows])
        self.reference_: Mapping[str, np.ndarray] = reference
        return self

    @classmethod
    def from_state(
        cls,
        categories: Sequence[str],
        centroids: np.ndarray,
        counts: Sequence[int],
        thresholds: Sequence[float | None],
        radii: Sequence[float | None],
        calibrations: Sequence[Calibration],
        *,
        score: str | ScoreSpec,
        policy: str | ThresholdPolicy,
        min_posts: int,
        reference: Mapping[str, np.ndarray] | None = None,
    ) -> CategoryDetector:
        """Rebuild a fitted detector from persisted state; ``reference`` may load lazily."""
        det = CategoryDetector(
            score=str(ScoreSpec.parse(score)), policy=str(ThresholdPolicy.parse(policy)), min_posts=min_posts
        )
        det.categories_ = list(categories)
        det.centroids_ = np.asarray(centroids, dtype=np.float32)
        det.counts_ = np.asarray(counts, dtype=int)
        nan = float("nan")
        det.thresholds_ = np.array([nan if t is None else float(t) for t in thresholds])
        det.radii_ = np.array([nan if r is None else float(r) for r in radii])
        det.calibrations_ = list(calibrations)
        det.distance_quantiles_ = np.full((len(det.categories_), len(QUANTILE_GRID)), np.nan)
        det.mean_distances_ = np.full(len(det.categories_), np.nan)
        det.reference_ = reference if reference is not None else {}
        return det

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise BaselineError("detector is not fitted: build a baseline first")

    @property
    def ready_(self) -> np.ndarray:
        """Which categories give verdicts (enough posts for a threshold)."""
        self._check_fitted()
        return ~np.isnan(self.thresholds_)

    # -- scoring ----------------------------------------------------------------------------

    def centroid_distances(self, X: np.ndarray) -> np.ndarray:
        """(n, k) Euclidean distances from each row to each category centroid."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if not len(self.categories_):
            return np.zeros((len(X), 0), dtype=np.float32)
        sq = (X**2).sum(1)[:, None] - 2 * X @ self.centroids_.T + (self.centroids_**2).sum(1)[None, :]
        return np.sqrt(np.clip(sq, 0, None))

    def category_scores(self, X: np.ndarray, j: int, *, members: np.ndarray | None = None) -> np.ndarray:
        """Scores of rows ``X`` against category ``j``; ``members`` rows are in its baseline (scored LOO)."""
        spec = ScoreSpec.parse(self.score)
        reference = self.reference_[self.categories_[j]] if spec.needs_reference else None
        return scores(spec, X, self.centroids_[j], reference, members=members, n=int(self.counts_[j]))

    def verdicts(
        self,
        X: np.ndarray,
        categories: Iterable[str | None] | None = None,
        *,
        members: Sequence[bool] | None = None,
    ) -> list[Verdict]:
        """One :class:`Verdict` per row of ``X``.

        ``members[i]`` says row i is one of its category's baseline posts: it is then scored
        leave-one-out, like the calibration scores it is compared with.
        """
        self._check_fitted()
        X = unit_rows(X)
        cats = list(categories) if categories is not None else [None] * len(X)
        if X.ndim != 2 or len(cats) != len(X):
            raise ValueError(f"X must be 2-D with one category per row: got shape {X.shape} and {len(cats)}")
        if len(self.categories_) and X.shape[1] != self.centroids_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} columns; the detector was fitted on {self.centroids_.shape[1]}")
        claimed = np.array([c is not None for c in cats], dtype=bool)
        member = claimed & (np.zeros(len(X), bool) if members is None else np.asarray(members, bool))
        dist = self.centroid_distances(X)
        ready = self.ready_
        ready_idx = np.flatnonzero(ready)
        index = {c: i for i, c in enumerate(self.categories_)}
        nearest = np.full(len(X), -1)
        if len(ready_idx):
            nearest = ready_idx[np.argmin(dist[:, ready_idx], axis=1)]
        own = np.full(len(X), -1)
        for row, cat in enumerate(cats):
            own[row] = index.get(cat, -1) if cat is not None else nearest[row]
        score = np.full(len(X), np.nan)
        p = np.full(len(X), np.nan)
        for j in set(own.tolist()) - {-1}:
            rows = np.flatnonzero(own == j)
            if ready[j]:
                score[rows] = self.category_scores(X[rows], j, members=member[rows])
                p[rows] = self.calibrations_[j].p_values(score[rows], member[rows])
        flagged = np.zeros(len(X), bool)
        valid = own >= 0
        policy = ThresholdPolicy.parse(self.policy)
        if policy.kind == "alpha":  # the promise is about p-values (thresholds are their exact twin)
            flagged[valid] = ready[own[valid]] & (p[valid] <= policy.value)
        else:
            flagged[valid] = ready[own[valid]] & (score[valid] > self.thresholds_[own[valid]])
        looks = self._looks_like(X, own, flagged, dist)
        out: list[Verdict] = []
        for row, cat in enumerate(cats):
            near = self.categories_[nearest[row]] if nearest[row] >= 0 else None
            near_d = float(dist[row, nearest[row]]) if nearest[row] >= 0 else None
            j = int(own[row])
            if cat is None and j < 0:
                out.append(Verdict("unscored"))
                continue
            if j < 0 or not ready[j]:
                out.append(Verdict("insufficient_baseline", cat, None, None, near, near_d))
                continue
            out.append(
                Verdict(
                    "outlier" if flagged[row] else "inlier",
                    self.categories_[j],
                    float(dist[row, j]),
                    _finite_or_none(float(self.radii_[j])),
                    near,
                    near_d,
                    float(score[row]),
                    _finite_or_none(float(self.thresholds_[j])),
                    _finite_or_none(float(p[row])),  # None: a baseline without calibration scores
                    looks.get(row),
                )
            )
        return out

    def _looks_like(
        self, X: np.ndarray, own: np.ndarray, flagged: np.ndarray, dist: np.ndarray
    ) -> dict[int, str]:
        """For flagged rows: among the ``LOOKS_LIKE_CANDIDATES`` other ready categories with the
        nearest centroids, the one where the row would be an inlier (highest p-value)."""
        rows = np.flatnonzero(flagged)
        if not len(rows):
            return {}
        best_p = np.full(len(rows), -1.0)
        best = np.full(len(rows), -1)
        others = np.where(self.ready_[None, :], dist[rows], np.inf)
        others[np.arange(len(rows)), own[rows]] = np.inf
        candidates = np.argsort(others, axis=1)[:, :LOOKS_LIKE_CANDIDATES]
        for j in set(candidates.ravel().tolist()):
            if not self.ready_[j]:
                continue
            sel = np.flatnonzero((candidates == j).any(axis=1) & np.isfinite(others[:, j]))
            if not len(sel):
                continue
            s = self.category_scores(X[rows[sel]], int(j))
            p = self.calibrations_[j].p_values(s)
            ok = (s <= self.thresholds_[j]) & (p > best_p[sel])
            best_p[sel[ok]], best[sel[ok]] = p[ok], j
        return {int(r): self.categories_[b] for r, b in zip(rows, best, strict=True) if b >= 0}

    def score_samples(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """Minus the score against the scored category (higher = more normal; NaN = no verdict)."""
        return np.array([-v.score if v.score is not None else np.nan for v in self.verdicts(X, categories)])

    def decision_function(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """Threshold minus score: negative for outliers, NaN where there is no verdict."""
        return np.array(
            [
                v.threshold - v.score if v.score is not None and v.threshold is not None else np.nan
                for v in self.verdicts(X, categories)
            ]
        )

    def p_values(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """Conformal p-values (small = unusual for the category; NaN = no verdict)."""
        return np.array(
            [v.p_value if v.p_value is not None else np.nan for v in self.verdicts(X, categories)]
        )

    def fit_predict(self, X: np.ndarray, y: Sequence[str | None]) -> np.ndarray:
        """Fit on ``X`` with categories ``y``, then predict the same rows, each scored leave-one-out."""
        self.fit(X, y)
        codes = {"outlier": -1, "inlier": 1}
        verdicts = self.verdicts(X, y, members=[c is not None for c in y])
        return np.array([codes.get(v.status, 0) for v in verdicts], dtype=int)

    def predict(self, X: np.ndarray, categories: Iterable[str | None] | None = None) -> np.ndarray:
        """+1 inlier, -1 outlier, 0 no verdict (category without a baseline)."""
        codes = {"outlier": -1, "inlier": 1}
        return np.array([codes.get(v.status, 0) for v in self.verdicts(X, categories)], dtype=int)


class CentroidDetector(CategoryDetector):
    """The seed notebook's detector: distance to the category centroid (``score="centroid"``)."""

    def __init__(
        self, policy: str | ThresholdPolicy = DEFAULT_POLICY, min_posts: int = DEFAULT_MIN_POSTS
    ) -> None:
        super().__init__(score="centroid", policy=policy, min_posts=min_posts)

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {"policy": self.policy, "min_posts": self.min_posts}
