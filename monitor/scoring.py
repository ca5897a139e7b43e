"""The arrival check: turn a baseline's verdicts into the metadata stored with each post.

Used both when a post arrives and when stored posts are re-scored after a new baseline.
Keys that no longer apply are set to ``None`` so that a Chroma ``update`` deletes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.baseline import MEMBER_KEY, Baseline, now_iso
from monitor.detector import Verdict
from monitor.store import ChromaStore

VERDICT_KEYS = (
    "verdict",
    "is_outlier",
    "scored_against",
    "distance",
    "radius",
    "nearest_category",
    "nearest_distance",
    "score",
    "threshold",
    "p_value",
    "looks_like",
    "baseline_version",
    "scored_at",
)


def verdict_metadata(verdict: Verdict, baseline_version: int | None, scored_at: str) -> dict[str, Any]:
    """Metadata for one verdict; every key in VERDICT_KEYS is present (None = remove)."""
    return {
        "verdict": verdict.status,
        "is_outlier": verdict.is_outlier,
        "scored_against": verdict.scored_against,
        "distance": verdict.distance,
        "radius": verdict.radius,
        "nearest_category": verdict.nearest_category,
        "nearest_distance": verdict.nearest_distance,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "p_value": verdict.p_value,
        "looks_like": verdict.looks_like,
        "baseline_version": baseline_version,
        "scored_at": scored_at,
    }


def score(
    baseline: Baseline | None,
    X: np.ndarray,
    categories: Sequence[str | None],
    members: Sequence[bool] | None = None,
) -> list[dict[str, Any]]:
    """Verdict metadata for each row of X against ``baseline`` ("unscored" when there is none).

    ``members[i]``: row i is one of the baseline's own posts (scored leave-one-out).
    """
    scored_at = now_iso()
    if baseline is None:
        return [verdict_metadata(Verdict("unscored"), None, scored_at) for _ in categories]
    verdicts = baseline.detector.verdicts(X, categories, members=members)
    return [verdict_metadata(v, baseline.version, scored_at) for v in verdicts]


@dataclass
class RescoreReport:
    posts: int = 0
    outliers: int = 0
    newly_flagged: int = 0
    cleared: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def rescore(
    store: ChromaStore,
    baseline: Baseline,
    *,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Re-score every stored post against ``baseline`` so stored flags reflect it."""
    report = RescoreReport()
    # Unfiltered offset paging keeps its order when metadata is updated under it (measured on
    # Chroma 1.5.9), so each page is written back at once: memory stays one page.
    for page in store.pages(vectors=True):
        members = [m.get(MEMBER_KEY) == baseline.version for m in page.metadatas]
        metas = score(baseline, page.vectors, [m.get("category") for m in page.metadatas], members)
        for old, new in zip(page.metadatas, metas, strict=True):
            was, now = bool(old.get("is_outlier", False)), new["is_outlier"]
            report.newly_flagged += int(now and not was)
            report.cleared += int(was and not now)
            report.outliers += int(now)
            report.by_status[new["verdict"]] = report.by_status.get(new["verdict"], 0) + 1
        store.update_metadata(page.ids, metas)
        report.posts += len(page.ids)
        if progress:
            progress(len(page.ids))
    return report
