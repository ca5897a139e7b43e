"""Detection quality on the real archive, with fixed seeds: scores x policies, preprocessing, windows, speed.

    .venv/bin/python scripts/bench_quality.py [--archive PATH] [--cache DIR] [--seeds 5]
        [--variants seed-first,strip-first,seed-mean,strip-mean] [--timing-per-category 20000]
        [--json results.json]

The recipe (`monitor evaluate --recipe`): every sci.* post of the archive (all splits) and 25 posts of
each of the 16 other groups are embedded once into a cached store per variant (cleaning x long-text
windows); each seed then splits in memory: 80% of each sci.* group is the baseline, the other 20% arrive
as normal posts, 200 off-topic posts arrive filed under a random sci.* group (the other 200 are the
"stored burst" for the robust-baseline experiment), and held-out posts filed under a wrong sci.* group
measure the "looks like" precision. Numbers are means over the seeds.

Timing: a store with two categories of N posts each (real vectors plus noise), a knn baseline, then
single arrivals scored through the product path (`scoring.score`) — embedding excluded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.api import Monitor
from monitor.baseline import build_baseline, load_baseline
from monitor.evaluate import default_policies
from monitor.output import format_table
from monitor.quality import newsgroups_recipe, stored_vectors
from monitor.scoring import score
from monitor.store import ChromaStore

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
EMBEDDERS = {"first": "minilm", "mean": "minilm:mean"}


def prepared(archive: str, cache: Path, variant: str) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The variant's cached store (built on first use), its vectors, and how long embedding took."""
    clean, windows = variant.split("-")
    mon = Monitor(cache / variant, embedder=EMBEDDERS[windows])
    t = time.perf_counter()
    a = mon.ingest(archive, split="all", categories=["sci.*"], clean=clean)
    b = mon.ingest(archive, split="all", exclude=["sci.*"], per_category=25, clean=clean)
    info = {
        "variant": variant,
        "posts": mon.store.count(),
        "embedded_now": a.added + b.added,
        "seconds": round(time.perf_counter() - t, 1),
    }
    X, y = stored_vectors(mon.store)
    return X, y, info


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    return f"\n## {title}\n\n" + format_table(rows, columns) + "\n"


def timing(cache: Path, X: np.ndarray, y: list[str], per_category: int, seed: int = 0) -> dict[str, Any]:
    """Per-arrival scoring time (no embedding) against knn baselines of ``per_category`` posts."""
    rng = np.random.default_rng(seed)
    folder = cache / f"timing-{per_category}"
    store = ChromaStore.open(folder)
    cats = ["sci.space", "sci.med"]
    if store.count() != 2 * per_category:
        store.check_stamp({"embedder": "minilm-l6-v2-int8", "embedding_dim": X.shape[1]})
        for cat in cats:
            base = X[np.asarray(y) == cat]
            rows = base[rng.integers(0, len(base), per_category)] + rng.normal(
                0, 0.02, (per_category, X.shape[1])
            )
            rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
            ids = [f"{cat}/{i}" for i in range(per_category)]
            metas = [{"category": cat, "has_category": True} for _ in ids]
            store.upsert(ids, rows, [""] * len(ids), metas)
    t = time.perf_counter()
    build_baseline(store, "alpha:0.05", score="knn:5")
    build_s = time.perf_counter() - t
    baseline = load_baseline(store)
    assert baseline is not None
    arrivals = X[np.asarray(y) == "sci.space"][:100]  # real sci.space posts, claimed as sci.space
    off = X[~np.char.startswith(np.asarray(y, dtype=str), "sci.")][:100]
    t = time.perf_counter()
    score(baseline, arrivals[:1], ["sci.space"])  # first use reads the category's reference from Chroma
    first_s = time.perf_counter() - t
    score(baseline, arrivals[:1], ["sci.med"])
    times = {"in-topic": [], "off-topic (flagged: looks-like checks the other category)": []}
    for name, rows in zip(times, (arrivals, off), strict=True):
        for x in rows:
            t = time.perf_counter()
            score(baseline, x[None, :], ["sci.space"])
            times[name].append((time.perf_counter() - t) * 1000)
    return {
        "per_category": per_category,
        "baseline_build_s": round(build_s, 1),
        "first_arrival_s (reads the reference)": round(first_s, 2),
        **{
            f"{k} ms median / p95": f"{statistics.median(v):.2f} / {np.quantile(v, 0.95):.2f}"
            for k, v in times.items()
        },
    }


def hnsw_vs_exact(cache: Path, variant: str, n: int = 200, k: int = 5) -> dict[str, Any]:
    """Chroma's own filtered query (HNSW, approximate) against the exact knn score the monitor uses."""
    store = ChromaStore.open(cache / variant)
    X, y = stored_vectors(store)
    rng = np.random.default_rng(0)
    cats = np.asarray(y)
    picks = rng.choice(np.flatnonzero(np.char.startswith(cats.astype(str), "sci.")), n, replace=False)
    exact_s, hnsw_s, same, t_exact, t_hnsw = [], [], 0, 0.0, 0.0
    for i in picks:
        ref = X[cats == cats[i]]
        t = time.perf_counter()
        d = np.sort(1.0 - ref @ X[i])[1 : k + 1]  # the post itself is stored: leave it out
        t_exact += time.perf_counter() - t
        t = time.perf_counter()
        res = store.posts.query(
            query_embeddings=X[i : i + 1],
            n_results=k + 1,
            where={"category": str(cats[i])},
            include=["distances"],
        )
        t_hnsw += time.perf_counter() - t
        h = np.sort(np.asarray(res["distances"][0]))[1 : k + 1]
        exact_s.append(d.mean())
        hnsw_s.append(h.mean())
        same += int(np.allclose(d, h, atol=1e-4))
    diff = np.abs(np.asarray(exact_s) - np.asarray(hnsw_s))
    return {
        "queries": n,
        "identical neighbour distances": f"{same}/{n}",
        "score difference max / mean": f"{diff.max():.5f} / {diff.mean():.6f}",
        "exact ms per query": round(t_exact / n * 1000, 2),
        "chroma filtered query ms per query": round(t_hnsw / n * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(SHARED))
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache" / "quality")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--variants", default="seed-first,strip-first,seed-mean,strip-mean")
    parser.add_argument("--best", default="seed-first", help="variant for the detailed tables")
    parser.add_argument("--scores", default="centroid,knn:1,knn:3,knn:5,knn:10,knn:20")
    parser.add_argument("--timing-per-category", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    report: dict[str, Any] = {"seeds": seeds}
    out: list[str] = [f"# bench_quality (means over seeds {seeds})"]

    variants = []
    for variant in args.variants.split(","):
        X, y, info = prepared(args.archive, args.cache, variant)
        res = newsgroups_recipe(X, y, seeds=seeds, scores=["centroid", "knn:5"], policies=["alpha:0.05"])
        for r in res["rows"]:
            variants.append({**info, **{k: r[k] for k in ("score", "auc", "ap", "flag_rate", "recall")}})
    report["variants"] = variants
    out.append(
        table(
            "Preprocessing x long-text windows (alpha:0.05)",
            variants,
            ["variant", "score", "auc", "ap", "flag_rate", "recall"],
        )
    )

    X, y, _ = prepared(args.archive, args.cache, args.best)
    scores = args.scores.split(",")
    res = newsgroups_recipe(X, y, seeds=seeds, scores=scores, policies=default_policies())
    report["scores"] = res
    cols = ["score", "policy", "auc", "ap", "promised", "flag_rate", "recall"]
    out.append(table(f"Scores x policies ({args.best})", res["rows"], cols))
    out.append(
        table(
            "Stored off-topic burst in the baseline: plain vs robust", res["contaminated"], ["robust", *cols]
        )
    )
    out.append(table("Misfiled sci.* posts: looks-like precision", res["misfiled"], list(res["misfiled"][0])))
    clean_robust = newsgroups_recipe(
        X, y, seeds=seeds, scores=["centroid", "knn:5"], policies=["alpha:0.05"], robust=True
    )
    report["clean_robust"] = clean_robust["rows"]
    out.append(table("Clean baseline with --robust (alpha:0.05)", clean_robust["rows"], ["robust", *cols]))

    check = hnsw_vs_exact(args.cache, args.best)
    report["hnsw_vs_exact"] = check
    out.append(
        "\n## Chroma's filtered HNSW query vs the exact knn score\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in check.items())
    )

    if args.timing_per_category:
        t = timing(args.cache, X, y, args.timing_per_category)
        report["timing"] = t
        out.append(
            "\n## Scoring one arrival (no embedding), knn:5\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in t.items())
        )
    text = "\n".join(out)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
