"""Baseline: per-category centroids and radii recomputed from the vectors stored in Chroma.

Two streaming passes over the store (sums, then distances), so memory is bounded by the page
size plus one float per post. The result is persisted in Chroma itself (a versioned record per
category, centroid as its vector) so it survives restarts and works the same against a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitor.detector import (
    DEFAULT_MIN_POSTS,
    DEFAULT_POLICY,
    QUANTILE_GRID,
    CategorySums,
    CentroidDetector,
    RadiusPolicy,
)
from monitor.errors import BaselineError
from monitor.store import ChromaStore

Progress = Callable[[int], None]
HAS_CATEGORY = {"has_category": True}


@dataclass
class Baseline:
    """A fitted detector plus when, how and from what it was built."""

    version: int
    created_at: str
    policy: str
    min_posts: int
    detector: CentroidDetector
    embedder: str = ""
    n_posts: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def age_seconds(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - datetime.fromisoformat(self.created_at)).total_seconds()

    def radius_of(self, category: str) -> float | None:
        det = self.detector
        if category not in det.categories_:
            return None
        r = det.radii_[det.categories_.index(category)]
        return None if np.isnan(r) else float(r)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_baseline(
    store: ChromaStore,
    policy: str | RadiusPolicy = DEFAULT_POLICY,
    min_posts: int = DEFAULT_MIN_POSTS,
    *,
    progress: Progress | None = None,
) -> Baseline:
    """Recompute the baseline from every stored post that has a category, and persist it."""
    policy = RadiusPolicy.parse(policy)
    if min_posts < 2:
        raise BaselineError("--min-posts must be at least 2")
    sums = CategorySums()
    for page in store.pages(where=HAS_CATEGORY, vectors=True):
        sums.add(page.vectors, [m.get("category") for m in page.metadatas])
        if progress:
            progress(len(page.ids))
    categories, centroids = sums.centroids()
    if not categories:
        raise BaselineError(f"no categorised posts in {store.location}: ingest posts with a category first")
    index = {c: i for i, c in enumerate(categories)}
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in categories}
    for page in store.pages(where=HAS_CATEGORY, vectors=True):
        cats = [m.get("category") for m in page.metadatas]
        rows = np.array([index[c] for c in cats])
        d = np.linalg.norm(page.vectors - centroids[rows], axis=1)
        for c in set(cats):
            chunks[c].append(d[rows == index[c]])
        if progress:
            progress(len(page.ids))
    distances = {c: np.concatenate(v) if v else np.zeros(0) for c, v in chunks.items()}
    detector = CentroidDetector(policy=policy, min_posts=min_posts).fit_from_parts(
        categories, centroids, distances
    )

    previous = store.load_baseline()
    version = int(previous[0]["version"]) + 1 if previous else 1
    created_at = now_iso()
    records = []
    for i, c in enumerate(categories):
        ready = bool(detector.ready_[i])
        rec: dict[str, Any] = {
            "n_posts": int(detector.counts_[i]),
            "status": "ok" if ready else "insufficient",
            "created_at": created_at,
            "policy": str(policy),
            "mean_distance": float(distances[c].mean()),
            "distance_quantiles": [round(float(q), 6) for q in detector.distance_quantiles_[i]],
        }
        if ready:
            rec["radius"] = float(detector.radii_[i])
        records.append(rec)
    header = {
        "created_at": created_at,
        "policy": str(policy),
        "min_posts": min_posts,
        "n_posts": int(detector.counts_.sum()),
        "n_categories": len(categories),
        "embedder": str(store.stamp().get("embedder", "")),
        # collection metadata takes no lists (Chroma 1.5): the grid goes in as text
        "quantile_grid": ",".join(f"{q:g}" for q in QUANTILE_GRID),
    }
    store.save_baseline(version, header, categories, centroids, records)
    return Baseline(
        version=version,
        created_at=created_at,
        policy=str(policy),
        min_posts=min_posts,
        detector=detector,
        embedder=header["embedder"],
        n_posts=header["n_posts"],
        records=[{"category": c, **r} for c, r in zip(categories, records, strict=True)],
    )


def load_baseline(store: ChromaStore) -> Baseline | None:
    """The current persisted baseline, or None if none was built yet."""
    loaded = store.load_baseline()
    if loaded is None:
        return None
    header, categories, centroids, records = loaded
    detector = CentroidDetector.from_state(
        categories,
        centroids,
        [r.get("radius") for r in records],
        [int(r.get("n_posts", 0)) for r in records],
        policy=str(header.get("policy", DEFAULT_POLICY)),
        min_posts=int(header.get("min_posts", DEFAULT_MIN_POSTS)),
    )
    return Baseline(
        version=int(header["version"]),
        created_at=str(header["created_at"]),
        policy=str(header.get("policy")),
        min_posts=int(header.get("min_posts", DEFAULT_MIN_POSTS)),
        detector=detector,
        embedder=str(header.get("embedder", "")),
        n_posts=int(header.get("n_posts", 0)),
        records=records,
    )
