"""Scale benchmark: a store past Chroma's 32,766-row `get` limit through baseline, stats, outliers, snapshot.

    .venv/bin/python scripts/bench_scale.py [--posts 40000] [--dim 384]

Vectors are synthetic (8 noisy clusters, unit length) and written straight to the store, so the run
measures the store-side work (paging, streaming baseline, re-scoring, queries, t-SNE map) rather than the
model. Shared, noisy machine: compare phases within one run.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from monitor.api import Monitor
from monitor.embedders.hashing import HashingEmbedder
from monitor.store import ChromaStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        store = ChromaStore.open(db)
        store.check_stamp(HashingEmbedder(args.dim).stamp())
        centres = rng.normal(size=(8, args.dim))
        timings: list[tuple[str, float, str]] = []

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            result = fn()
            timings.append((name, time.perf_counter() - start, ""))
            return result

        def fill() -> None:
            for s in range(0, args.posts, 5000):
                idx = np.arange(s, min(args.posts, s + 5000))
                X = centres[idx % 8] + rng.normal(0, 3, (len(idx), args.dim))
                X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
                metas = [{"category": f"g{i % 8}", "has_category": True} for i in idx]
                store.upsert([f"p{i}" for i in idx], X, [f"post {i}" for i in idx], metas)

        timed("upsert", fill)
        mon = Monitor(db, embedder=HashingEmbedder(args.dim))
        _, report = timed("baseline + re-score", mon.build_baseline)
        timed("stats", mon.stats)
        rows = timed("outliers", mon.outliers)
        summary = timed("snapshot", lambda: mon.snapshot(Path(tmp) / "snap"))
    print(f"{args.posts} posts x {args.dim} dims; {report.outliers} flagged, {len(rows)} outlier rows")
    for name, seconds, _ in timings:
        print(f"{name:20} {seconds:7.1f} s")
    print(f"map points {summary['map']['points']} ({summary['map']['flagged_points']} flagged)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
