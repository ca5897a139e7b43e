"""Baseline: per-category detector state recomputed from the vectors stored in Chroma.

A metadata pass finds the baseline posts (every post with a category; with ``robust``, minus
those flagged by the current verdicts), then each category's vectors are read and fitted in
turn, so memory is bounded by the largest category. The baseline posts are marked with
``in_baseline = <version>`` (the knn score's reference set, read back lazily when scoring), and
the result is persisted in Chroma itself: a versioned record per category (centroid as its
vector; threshold, radius and calibration sketch as metadata), the header written last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitor.calibration import DEFAULT_POLICY, Calibration, ThresholdPolicy
from monitor.detector import DEFAULT_MIN_POSTS, QUANTILE_GRID, CategoryDetector
from monitor.errors import BaselineError
from monitor.scores import DEFAULT_SCORE, ScoreSpec
from monitor.store import ChromaStore

Progress = Callable[[int], None]
HAS_CATEGORY = {"has_category": True}
MEMBER_KEY = "in_baseline"


@dataclass
class Baseline:
    """A fitted detector plus when, how and from what it was built."""

    version: int
    created_at: str
    policy: str
    min_posts: int
    detector: CategoryDetector
    embedder: str = ""
    n_posts: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    score: str = DEFAULT_SCORE
    robust: bool = False
    excluded: int = 0
    build_id: str = ""

    def age_seconds(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.created_at)).total_seconds()

    def radius_of(self, category: str) -> float | None:
        det = self.detector
        if category not in det.categories_:
            return None
        r = det.radii_[det.categories_.index(category)]
        return None if np.isnan(r) else float(r)

    def threshold_of(self, category: str) -> float | None:
        """The score threshold of ``category`` (None: no verdicts there, or nothing can be flagged)."""
        det = self.detector
        if category not in det.categories_:
            return None
        t = det.thresholds_[det.categories_.index(category)]
        return float(t) if np.isfinite(t) else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StoredReference(Mapping[str, np.ndarray]):
    """A baseline's reference posts per category, read from the store on first use and kept."""

    def __init__(self, store: ChromaStore, version: int, categories: list[str]) -> None:
        self.store, self.version, self.categories = store, version, categories
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, category: str) -> np.ndarray:
        if category not in self.categories:
            raise KeyError(category)
        if category not in self._cache:
            where = {"$and": [{"category": category}, {MEMBER_KEY: self.version}]}
            parts = [p.vectors for p in self.store.pages(where=where, vectors=True) if p.vectors is not None]
            parts = [p for p in parts if len(p)]
            self._cache[category] = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return self._cache[category]

    def __iter__(self) -> Iterator[str]:
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)


def _candidates(store: ChromaStore, robust: bool) -> dict[str, list[tuple[str, bool]]]:
    """Per category: every categorised post's id, and whether ``robust`` leaves it out of the
    reference posts (flagged by its current verdict)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for page in store.pages(where=HAS_CATEGORY):
        for pid, meta in zip(page.ids, page.metadatas, strict=True):
            out = robust and meta.get("is_outlier") is True
            found.setdefault(str(meta["category"]), []).append((pid, out))
    return found


def build_baseline(
    store: ChromaStore,
    policy: str | ThresholdPolicy = DEFAULT_POLICY,
    min_posts: int = DEFAULT_MIN_POSTS,
    *,
    score: str | ScoreSpec = DEFAULT_SCORE,
    robust: bool = False,
    progress: Progress | None = None,
) -> Baseline:
    """Recompute the baseline from the stored posts that have a category, and persist it.

    ``robust`` leaves posts flagged by their current verdict out of the reference posts (centroid
    and neighbours), so that a burst of outliers does not drag its category along; they are still
    scored for calibration, so thresholds keep their promise.
    """
    policy = ThresholdPolicy.parse(policy)
    spec = ScoreSpec.parse(score)
    if min_posts < 2:
        raise BaselineError("--min-posts must be at least 2")
    candidates = _candidates(store, robust)
    excluded = sum(out for posts in candidates.values() for _, out in posts)
    if not candidates:
        raise BaselineError(f"no categorised posts in {store.location}: ingest posts with a category first")
    if robust:
        starved = sorted(
            f"{cat} ({sum(not o for _, o in posts)} of {len(posts)} left)"
            for cat, posts in candidates.items()
            if len(posts) >= min_posts and sum(not o for _, o in posts) < min_posts
        )
        if starved:
            raise BaselineError(
                f"--robust would leave fewer than {min_posts} posts in {', '.join(starved)}: the current "
                "verdicts flag too much to leave out; rebuild without --robust first (baseline kept)"
            )
    previous = store.load_baseline()
    version = int(previous[0]["version"]) + 1 if previous else 1

    def groups() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for cat in sorted(candidates):
            left_out = {pid for pid, out in candidates[cat] if out}
            page = store.get([pid for pid, _ in candidates[cat]], vectors=True)
            out = np.array([pid in left_out for pid in page.ids], dtype=bool)
            members = [pid for pid, o in zip(page.ids, out, strict=True) if not o]
            store.update_metadata(members, [{MEMBER_KEY: version}] * len(members))
            if progress:
                progress(len(page.ids))
            yield cat, page.vectors, out

    detector = CategoryDetector(score=spec, policy=policy, min_posts=min_posts).fit_categories(
        groups(), keep_reference=False
    )
    categories = detector.categories_
    created_at = now_iso()
    records = []
    for i in range(len(categories)):
        ready = bool(detector.ready_[i])
        cal = detector.calibrations_[i].sketch()
        rec: dict[str, Any] = {
            "n_posts": int(detector.counts_[i]),
            "status": "ok" if ready else "insufficient",
            "created_at": created_at,
            "policy": str(policy),
            "score": str(spec),
            "mean_distance": float(detector.mean_distances_[i]),
            "distance_quantiles": [round(float(q), 6) for q in detector.distance_quantiles_[i]],
        }
        if ready:
            rec["radius"] = _finite(detector.radii_[i])
            rec["threshold"] = _finite(detector.thresholds_[i])
            rec["calibration"] = [float(v) for v in cal.values]
            rec["calibration_n"] = cal.n
            rec["calibration_exact"] = cal.exact
        records.append(rec)
    header = {
        "created_at": created_at,
        "policy": str(policy),
        "score": str(spec),
        "robust": robust,
        "excluded": excluded,
        "min_posts": min_posts,
        "n_posts": int(detector.counts_.sum()),
        "n_categories": len(categories),
        "embedder": str(store.stamp().get("embedder", "")),
        # collection metadata takes no lists (Chroma 1.5): the grid goes in as text
        "quantile_grid": ",".join(f"{q:g}" for q in QUANTILE_GRID),
    }
    header["build_id"] = build_id = uuid.uuid4().hex
    _check_still_current(store, previous[0].get("build_id") if previous else None, "started")
    store.save_baseline(version, header, categories, detector.centroids_, records)
    _check_still_current(store, build_id, "saved its own")
    detector.reference_ = StoredReference(store, version, categories)
    return Baseline(
        version=version,
        created_at=created_at,
        policy=str(policy),
        min_posts=min_posts,
        detector=detector,
        embedder=header["embedder"],
        n_posts=header["n_posts"],
        records=[{"category": c, **r} for c, r in zip(categories, records, strict=True)],
        score=str(spec),
        robust=robust,
        excluded=excluded,
        build_id=build_id,
    )


RACE = (
    "another baseline build {what} v{version} while this one ran; the stored verdicts may now mix "
    "the two: run `monitor baseline` again, one build at a time (a Chroma server does not stop two)"
)


def _check_still_current(store: ChromaStore, expected: str | None, what: str) -> None:
    """Refuse to go on when another process saved a baseline since ``expected`` was current."""
    header = store.baseline_header()
    if header.get("build_id") != expected:
        raise BaselineError(RACE.format(what=what, version=header.get("version", "?")))


def check_current(store: ChromaStore, baseline: Baseline) -> None:
    """After re-scoring: fail if another build replaced ``baseline`` meanwhile (verdicts mixed)."""
    if baseline.build_id:
        _check_still_current(store, baseline.build_id, "saved")


def _finite(x: float) -> float | None:
    """Chroma metadata takes no inf: a threshold nothing can exceed is stored as absent."""
    return float(x) if np.isfinite(x) else None


def load_baseline(store: ChromaStore) -> Baseline | None:
    """The current persisted baseline, or None if none was built yet."""
    loaded = store.load_baseline()
    if loaded is None:
        return None
    header, categories, centroids, records = loaded
    version = int(header["version"])
    # Baselines written before scores were configurable used the centroid distance.
    score = str(header.get("score", "centroid"))
    policy = str(header.get("policy", DEFAULT_POLICY))
    min_posts = int(header.get("min_posts", DEFAULT_MIN_POSTS))
    ready = [
        r.get("status", "ok" if r.get("radius") is not None else "insufficient") == "ok" for r in records
    ]
    calibrations = [_calibration(r) for r in records]
    detector = CategoryDetector.from_state(
        categories,
        centroids,
        [int(r.get("n_posts", 0)) for r in records],
        [_threshold(r, ok) for r, ok in zip(records, ready, strict=True)],
        [r.get("radius") if ok else None for r, ok in zip(records, ready, strict=True)],
        calibrations,
        score=score,
        policy=policy,
        min_posts=min_posts,
        reference=StoredReference(store, version, categories),
    )
    return Baseline(
        version=version,
        created_at=str(header["created_at"]),
        policy=policy,
        min_posts=min_posts,
        detector=detector,
        embedder=str(header.get("embedder", "")),
        n_posts=int(header.get("n_posts", 0)),
        records=records,
        score=score,
        robust=bool(header.get("robust", False)),
        excluded=int(header.get("excluded", 0)),
        build_id=str(header.get("build_id", "")),
    )


def _threshold(record: Mapping[str, Any], ready: bool) -> float | None:
    if not ready:
        return None
    if "score" not in record:  # written before scores were configurable: the radius was the threshold
        return record.get("radius")
    threshold = record.get("threshold")
    return float("inf") if threshold is None else float(threshold)


def _calibration(record: Mapping[str, Any]) -> Calibration:
    values = np.asarray(record.get("calibration") or [], dtype=np.float64)
    n = int(record.get("calibration_n", len(values)))
    return Calibration(values, n, bool(record.get("calibration_exact", True)))
