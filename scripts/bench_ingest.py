"""Ingest benchmark: posts/s for embedding alone and for the full ingest, on the same real posts.

    .venv/bin/python scripts/bench_ingest.py [--archive PATH] [--posts 300] [--threads N]

Each measurement runs in its own process so its peak memory (max RSS) is its own:
  embed   the embedder alone on the arrival posts (cleaned text, model already loaded)
  ingest  the full ingest of the same posts as arrivals (id check, clean, embed, score against a
          baseline, upsert) into a store that already holds a baseline built from other posts
  rerun   the same ingest again (nothing to embed: measures the idempotent path)
Machines here are shared and noisy: compare the ratios within one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
SAMPLE = ROOT / "monitor" / "data" / "20news-sample.tar.gz"


def _posts(archive: str, split: str, per_category: int) -> list:
    from monitor.sources import NewsgroupArchive

    return list(
        NewsgroupArchive(archive, split=split, categories=["sci.*"], per_category=per_category, seed=1)
    )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, args: argparse.Namespace) -> dict:
    from monitor.api import Monitor
    from monitor.embedders.minilm import OnnxMiniLM
    from monitor.preprocess import clean_seed

    per = args.posts // 4
    arrivals = _posts(args.archive, "test", per)
    embedder = OnnxMiniLM(threads=args.threads)
    embedder.encode(["warm up"])
    if name == "embed":
        texts = [clean_seed(p.text) for p in arrivals]
        start = time.perf_counter()
        embedder.encode(texts)
        seconds = time.perf_counter() - start
        return {"phase": name, "posts": len(texts), "seconds": seconds, "peak_mb": _peak_mb()}
    mon = Monitor(args.db, embedder=embedder)
    if name == "ingest":
        mon.ingest(_posts(args.archive, "train", per))
        mon.build_baseline()
    start = time.perf_counter()
    report = mon.ingest(arrivals)
    seconds = time.perf_counter() - start
    return {
        "phase": name,
        "posts": len(arrivals),
        "seconds": seconds,
        "peak_mb": _peak_mb(),
        "added": report.added,
        "unchanged": report.unchanged,
        "flagged": report.flagged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(SHARED if SHARED.is_file() else SAMPLE))
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--phase", choices=["embed", "ingest", "rerun"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("embed", "ingest", "rerun"):
            cmd = [
                sys.executable,
                __file__,
                "--phase",
                name,
                "--archive",
                args.archive,
                "--posts",
                str(args.posts),
            ]
            cmd += ["--db", str(Path(tmp) / "db")]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    base = results[0]["posts"] / results[0]["seconds"]
    print(f"archive: {args.archive}")
    print(f"{'phase':8} {'posts':>6} {'seconds':>8} {'posts/s':>8} {'vs embed':>8} {'peak MB':>8}")
    for r in results:
        rate = r["posts"] / r["seconds"]
        print(
            f"{r['phase']:8} {r['posts']:6d} {r['seconds']:8.2f} {rate:8.1f} {rate / base:8.2f} {r['peak_mb']:8.0f}"
        )
    ingest = results[1]
    print(
        f"full ingest stored {ingest['added']} posts, flagged {ingest['flagged']}; rerun left {results[2]['unchanged']} unchanged"
    )


if __name__ == "__main__":
    main()
