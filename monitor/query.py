"""Read-only questions over the store: flagged outliers, per-category stats, the radius sweep."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor.baseline import Baseline, load_baseline
from monitor.errors import BaselineError, InputError, MonitorError
from monitor.store import ChromaStore

EXCERPT_CHARS = 160
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC if no zone) or a relative age like ``90m``, ``12h``, ``7d``."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value)
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        except (OverflowError, ValueError):
            raise MonitorError(f"bad since {value!r}: that is before the year 1") from None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MonitorError(
            f"bad since {value!r}: use an ISO time (2026-12-01T08:00) or an age (90m, 12h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _is_glob(value: str) -> bool:
    return any(ch in value for ch in "*?[")


def find_outliers(
    store: ChromaStore,
    *,
    category: str | None = None,
    since: datetime | None = None,
    min_distance: float | None = None,
    limit: int | None = None,
    alpha: float | None = None,
) -> list[dict[str, Any]]:
    """Flagged posts, most unusual (smallest p-value, then highest score) first.

    ``category`` may be a glob (``sci.*``). ``alpha`` replaces the baseline's own flags with
    "stored p-value <= alpha", so any level can be asked for after the fact.
    """
    if alpha is not None:
        if not 0 < alpha < 1:  # NaN fails too
            raise InputError(f"bad --alpha {alpha}: expected a number between 0 and 1")
        baseline = load_baseline(store)
        if baseline is None or not any(c.n for c in baseline.detector.calibrations_):
            raise BaselineError(
                "the current baseline stores no p-values (none yet, or built before they existed): "
                "run `monitor baseline` first, then ask for --alpha"
            )
    clauses: list[dict[str, Any]] = [
        {"is_outlier": True} if alpha is None else {"p_value": {"$lte": float(alpha)}}
    ]
    if category and not _is_glob(category):
        clauses.append({"category": category})
    if since is not None:
        clauses.append({"ingested_ts": {"$gte": float(since.timestamp())}})
    where = clauses[0] if len(clauses) == 1 else {"$and": clauses}
    rows: list[dict[str, Any]] = []
    for page in store.pages(where=where, documents=True):
        for pid, meta, doc in zip(page.ids, page.metadatas, page.documents or [], strict=True):
            if (
                category
                and _is_glob(category)
                and not fnmatch.fnmatchcase(str(meta.get("category", "")), category)
            ):
                continue
            distance = float(meta.get("distance", 0.0))
            if min_distance is not None and distance < min_distance:
                continue
            rows.append(outlier_row(pid, meta, doc))
    rows.sort(key=lambda r: (_or(r["p_value"], 1.0), -_or(r["score"], r["distance"]), r["id"]))
    return rows[:limit] if limit else rows


#: Every field of an outlier row, in output order.
OUTLIER_FIELDS = (
    "id",
    "category",
    "score",
    "threshold",
    "p_value",
    "looks_like",
    "distance",
    "radius",
    "excess",
    "nearest_category",
    "ingested_at",
    "baseline_version",
    "original_category",
    "excerpt",
)


def outlier_row(pid: str, meta: dict[str, Any], doc: str | None) -> dict[str, Any]:
    distance = float(meta.get("distance", 0.0))
    radius = float(meta.get("radius", 0.0))
    row: dict[str, Any] = {
        "id": pid,
        "category": meta.get("category", meta.get("scored_against")),
        "score": _round(meta.get("score"), 4),
        "threshold": _round(meta.get("threshold"), 4),
        "p_value": _round(meta.get("p_value"), 5),
        "looks_like": meta.get("looks_like"),
        "distance": round(distance, 4),
        "radius": round(radius, 4),
        "excess": round(float(meta["score"]) - float(meta["threshold"]), 4)
        if meta.get("score") is not None and meta.get("threshold") is not None
        else round(distance - radius, 4),
        "nearest_category": meta.get("nearest_category"),
        "ingested_at": meta.get("ingested_at"),
        "baseline_version": meta.get("baseline_version"),
        "excerpt": excerpt(doc),
    }
    row["original_category"] = meta.get("original_category")  # set when --as-category re-filed it
    return row


def _round(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def collection_stats(store: ChromaStore, baseline: Baseline | None = None) -> dict[str, Any]:
    """Counts and outlier rates per category, plus baseline age and staleness."""
    baseline = baseline if baseline is not None else load_baseline(store)
    per: dict[str, dict[str, Any]] = {}
    total = uncategorised = stale = 0
    for page in store.pages():
        for meta in page.metadatas:
            total += 1
            cat = meta.get("category")
            if cat is None:
                uncategorised += 1
                cat = "(none)"
            row = per.setdefault(
                cat, {"category": cat, "posts": 0, "scored": 0, "outliers": 0, "no_verdict": 0}
            )
            row["posts"] += 1
            verdict = meta.get("verdict", "unscored")
            if verdict in ("inlier", "outlier"):
                row["scored"] += 1
                row["outliers"] += int(verdict == "outlier")
            else:
                row["no_verdict"] += 1
            if baseline is not None and meta.get("baseline_version") != baseline.version:
                stale += 1
    for row in per.values():
        row["outlier_rate"] = round(row["outliers"] / row["scored"], 4) if row["scored"] else None
        if baseline is not None and row["category"] != "(none)":
            row["radius"] = baseline.radius_of(row["category"])
            row["threshold"] = baseline.threshold_of(row["category"])
            row["baseline_posts"] = _baseline_posts(baseline, row["category"])
    info: dict[str, Any] = {
        "location": store.location,
        "collection": store.name,
        "posts": total,
        "uncategorised": uncategorised,
        "embedder": store.stamp().get("embedder"),
        "categories": [per[c] for c in sorted(per)],
        "baseline": None,
    }
    if baseline is not None:
        info["baseline"] = {
            "version": baseline.version,
            "created_at": baseline.created_at,
            "age_seconds": round(baseline.age_seconds()),
            "policy": baseline.policy,
            "score": baseline.score,
            "robust": baseline.robust,
            "min_posts": baseline.min_posts,
            "posts": baseline.n_posts,
            "posts_with_older_verdicts": stale,
        }
    return info


def _baseline_posts(baseline: Baseline, category: str) -> int:
    det = baseline.detector
    return int(det.counts_[det.categories_.index(category)]) if category in det.categories_ else 0


def own_distances(store: ChromaStore) -> dict[str, np.ndarray]:
    """Stored distance to the own-category centroid, per category (posts with a verdict)."""
    chunks: dict[str, list[float]] = {}
    for page in store.pages(where={"verdict": {"$in": ["inlier", "outlier"]}}):
        for meta in page.metadatas:
            chunks.setdefault(str(meta.get("scored_against")), []).append(float(meta["distance"]))
    return {c: np.asarray(v, dtype=np.float32) for c, v in sorted(chunks.items())}


def sweep_radii(distances: np.ndarray, bars: int = 20) -> list[float]:
    """Evenly spaced radii over the observed distances (5th percentile to max), on a round step."""
    if not len(distances):
        return []
    lo, hi = float(np.quantile(distances, 0.05)), float(distances.max())
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if (hi - lo) / s <= bars), 1.0)
    start, stop = np.floor(lo / step) * step, np.ceil(hi / step) * step
    return [round(float(r), 2) for r in np.arange(start, stop + step / 2, step)]


def radius_sweep(
    distances_by_category: dict[str, np.ndarray], radii: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Number of posts beyond each radius (one radius for all categories), as in the notebook."""
    all_d = np.concatenate(list(distances_by_category.values())) if distances_by_category else np.zeros(0)
    grid = list(radii) if radii is not None else sweep_radii(all_d)
    return [{"radius": r, "n_outliers": int((all_d > r).sum())} for r in grid]
