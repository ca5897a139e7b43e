"""Snapshot report: t-SNE map, radius sweep, distance histograms, top outliers, change since last.

Reads the store (metadata for every post, vectors only for the sampled map points), renders
PNGs, one self-contained HTML page and a JSON summary into a folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from monitor.baseline import load_baseline, now_iso
from monitor.embedding_map import category_centroids_2d, stratified_sample, tsne_2d
from monitor.errors import BaselineError, MonitorError
from monitor.plots import plot_distance_histograms, plot_embedding_map, plot_radius_sweep
from monitor.query import collection_stats, find_outliers, own_distances, radius_sweep
from monitor.report_html import render_report, write_report
from monitor.store import ChromaStore

DEFAULT_MAX_POINTS = 2000
DEFAULT_TOP = 10
SUMMARY = "summary.json"


def write_snapshot(
    store: ChromaStore,
    out: Path,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    top: int = DEFAULT_TOP,
    seed: int = 0,
    compare_to: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the snapshot into ``out`` and return its summary (also saved as summary.json)."""
    say = progress or (lambda _msg: None)
    baseline = load_baseline(store)
    if baseline is None:
        raise BaselineError("no baseline yet: run `monitor baseline` before a snapshot")
    if out.exists() and not out.is_dir():
        raise MonitorError(f"--out {out} is a file, not a folder")
    identity = {
        "store": store.uri,
        "collection": store.name,
        "embedder": store.stamp().get("embedder"),
    }
    previous = _previous_summary(out, compare_to, identity)
    _check_writable(out)

    say("reading verdicts")
    ids, cats, flagged = [], [], []
    for page in store.pages():
        for pid, meta in zip(page.ids, page.metadatas, strict=True):
            ids.append(pid)
            cats.append(str(meta.get("category", meta.get("scored_against", "(none)"))))
            flagged.append(bool(meta.get("is_outlier", False)))
    if not ids:
        raise MonitorError(f"the store at {store.location} is empty: nothing to snapshot")
    flags = np.asarray(flagged, dtype=bool)

    say("embedding map (t-SNE)")
    # a stratified sample of up to max_points posts, every flagged post always among them; when
    # flags are many, normal posts still get max_points // 2 places, so the map shows what is normal
    chosen = stratified_sample(cats, flags, max_points, seed, min_context=max_points // 2)
    fetched = store.get([ids[i] for i in chosen], vectors=True)
    row_of = {pid: r for r, pid in enumerate(fetched.ids)}
    vectors = fetched.vectors[[row_of[ids[i]] for i in chosen]]
    coords = tsne_2d(vectors, seed=seed)
    map_cats = [cats[i] for i in chosen]
    images = {
        "Embedding map (t-SNE): categories, centroids (X), outliers (red circles)": plot_embedding_map(
            coords,
            map_cats,
            flags[chosen],
            category_centroids_2d(coords, map_cats),
            out / "embedding_map.png",
        )
    }

    say("radius sweep")
    distances = own_distances(store)
    sweep = radius_sweep(distances)
    radii = {c: r for c in distances if (r := baseline.radius_of(c)) is not None}
    if sweep:
        images["Number of outliers vs radius (one radius for every category)"] = plot_radius_sweep(
            [s["radius"] for s in sweep], [s["n_outliers"] for s in sweep], out / "radius_sweep.png"
        )
    if distances:
        images["Distance to the category centroid, with each category's radius"] = plot_distance_histograms(
            distances, radii, out / "distances.png"
        )

    say("tables")
    stats = collection_stats(store, baseline)
    outliers = find_outliers(store)
    top_rows: dict[str, list[dict[str, Any]]] = {}
    for row in outliers:
        bucket = top_rows.setdefault(str(row["category"]), [])
        if len(bucket) < top:
            bucket.append(row)
    flagged_ids = sorted(r["id"] for r in outliers)
    changes = _changes(previous, stats, flagged_ids, baseline.version) if previous else None

    generated_at = now_iso()
    summary: dict[str, Any] = {
        "generated_at": generated_at,
        "location": store.location,
        **identity,
        "baseline": stats["baseline"],
        "posts": stats["posts"],
        "outliers": len(flagged_ids),
        "categories": stats["categories"],
        "radius_sweep": sweep,
        "map": {
            "points": len(chosen),
            "flagged_points": int(flags[chosen].sum()),
            "seed": seed,
            "cap": max_points,
        },
        "top_outliers": top_rows,
        "flagged_ids": flagged_ids,
        "changes": changes,
        "files": [*sorted(p.name for p in images.values()), "report.html", SUMMARY],
    }
    notes = [
        f"Baseline v{baseline.version} ({baseline.policy}, min {baseline.min_posts} posts per category), "
        f"built {baseline.created_at} from {baseline.n_posts} posts.",
        f"Map: {len(chosen)} of {len(ids)} posts, a stratified sample with every flagged post included "
        f"({int(flags[chosen].sum())} of the points, so flags are over-represented when the store is larger "
        f"than the map); t-SNE seed {seed}. Centroids on the map are the mean of each category's 2-D points.",
    ]
    html = render_report(
        title=f"monitor snapshot: {store.name}",
        generated_at=generated_at,
        summary_rows=stats["categories"],
        images=images,
        top_outliers=top_rows,
        sweep_rows=sweep,
        changes=changes,
        notes=notes,
    )
    write_report(out / "report.html", html)
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there, before any work is done."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".monitor-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MonitorError(f"cannot write the snapshot to {out}: {exc.strerror or exc}") from None


def _previous_summary(out: Path, compare_to: Path | None, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The earlier snapshot of the same store to compare with.

    ``compare_to`` if given (it must be a snapshot of this store), else the snapshot being
    replaced in ``out``, else the newest snapshot folder beside ``out`` of this same store.
    Snapshots of other stores, collections or embedders are never compared.
    """
    if compare_to is not None:
        path = compare_to / SUMMARY if compare_to.is_dir() else compare_to
        data = _read_summary(path)
        if data is None:
            raise MonitorError(f"--compare-to {compare_to}: no readable snapshot {SUMMARY} there")
        if not _same_store(data, identity):
            raise MonitorError(
                f"--compare-to {compare_to} is a snapshot of {data.get('store')} "
                f"(collection {data.get('collection')}, embedder {data.get('embedder')}), not of this store"
            )
        return data
    candidates = [out / SUMMARY]
    if out.parent.is_dir():
        candidates += sorted(
            (p / SUMMARY for p in out.parent.iterdir() if p != out and (p / SUMMARY).is_file()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
    for path in candidates:
        data = _read_summary(path)
        if data is not None and _same_store(data, identity):
            return data
    return None


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("flagged_ids", []), list):
        return None
    data["_path"] = str(path.parent)
    return data


def _same_store(summary: dict[str, Any], identity: dict[str, Any]) -> bool:
    return all(summary.get(k) == v for k, v in identity.items())


def _changes(
    previous: dict[str, Any], stats: dict[str, Any], flagged_ids: list[str], version: int
) -> dict[str, Any]:
    before = set(previous.get("flagged_ids", []))
    now = set(flagged_ids)
    old_rates = {r["category"]: r for r in previous.get("categories", [])}
    rows = []
    for r in stats["categories"]:
        old = old_rates.get(r["category"], {})
        rows.append(
            {
                "category": r["category"],
                "posts": r["posts"],
                "posts_change": r["posts"] - int(old.get("posts", 0)),
                "outliers": r["outliers"],
                "outliers_change": r["outliers"] - int(old.get("outliers", 0)),
                "outlier_rate": r["outlier_rate"],
                "previous_rate": old.get("outlier_rate"),
            }
        )
    return {
        "previous_snapshot": previous.get("_path"),
        "previous_generated_at": previous.get("generated_at"),
        "previous_baseline_version": (previous.get("baseline") or {}).get("version"),
        "baseline_version": version,
        "new_flags": len(now - before),
        "cleared_flags": len(before - now),
        "new_flag_ids": sorted(now - before)[:50],
        "cleared_flag_ids": sorted(before - now)[:50],
        "per_category": rows,
    }
