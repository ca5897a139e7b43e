"""Ingest benchmark: posts/s for embedding alone and for the full ingest, on the same real posts.

    .venv/bin/python scripts/bench_ingest.py [--archive PATH] [--posts 300] [--threads N]
                                             [--server | --chroma-url http://HOST:PORT]

Each measurement runs in its own process so its peak memory (max RSS) is its own:
  embed   the embedder alone on the arrival posts (cleaned text, model already loaded)
  ingest  the full ingest of the same posts as arrivals (id check, clean, embed, score against a
          baseline, upsert) into a store that already holds a baseline built from other posts
  rerun   the same ingest again (nothing to embed: measures the idempotent path)
With --server (starts `chroma run` on 127.0.0.1 itself) or --chroma-url, ingest and rerun run
twice, into an embedded folder and into the server, and the server/embedded ratio is printed.
Machines here are shared and noisy: compare the ratios within one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


def _time_store_calls(store: object) -> list[float]:
    """Add up the time spent in the store's Chroma calls (every call goes through ``_call``)."""
    total = [0.0]
    call = store._call  # type: ignore[attr-defined]

    def timed(*a: object, **kw: object) -> object:
        start = time.perf_counter()
        try:
            return call(*a, **kw)
        finally:
            total[0] += time.perf_counter() - start

    store._call = timed  # type: ignore[attr-defined]
    return total


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
    mon = Monitor(args.db, url=args.url, collection=args.collection, embedder=embedder)
    if name == "ingest":
        mon.ingest(_posts(args.archive, "train", per))
        mon.build_baseline()
    in_store = _time_store_calls(mon.store)
    start = time.perf_counter()
    report = mon.ingest(arrivals)
    seconds = time.perf_counter() - start
    return {
        "phase": name,
        "posts": len(arrivals),
        "seconds": seconds,
        "store_seconds": in_store[0],
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
    parser.add_argument(
        "--repeat", type=int, default=1, help="Ingest/re-run rounds (alternating stores with a server)."
    )
    parser.add_argument("--phase", choices=["embed", "ingest", "rerun"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--collection", default="posts", help=argparse.SUPPRESS)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--server", action="store_true", help="Also ingest into a local `chroma run` started here."
    )
    where.add_argument("--chroma-url", help="Also ingest into this Chroma server.")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp, _server(args, Path(tmp)) as url:
        runs: list[tuple[str, str | None, int]] = [("embed", None, 0)]
        for k in range(args.repeat):
            for server in (None, url) if url else (None,):
                runs += [("ingest", server, k), ("rerun", server, k)]
        tag = uuid.uuid4().hex[:8]
        for name, server, k in runs:
            cmd = [sys.executable, __file__, "--phase", name, "--archive", args.archive]
            cmd += ["--posts", str(args.posts), "--db", str(Path(tmp) / f"db{k}")]
            if server:
                cmd += ["--url", server, "--collection", f"bench-{tag}-{k}"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results.append({**row, "store": "server" if server else "embedded", "round": k})
    base = results[0]["posts"] / results[0]["seconds"]
    print(f"archive: {args.archive}")
    print(
        f"{'phase':8} {'store':9} {'round':>5} {'posts':>6} {'seconds':>8} {'in store':>8} "
        f"{'posts/s':>8} {'vs embed':>8} {'peak MB':>8}"
    )
    for r in results:
        rate = r["posts"] / r["seconds"]
        store = "-" if r["phase"] == "embed" else r["store"]
        in_store = f"{r['store_seconds']:8.2f}" if "store_seconds" in r else f"{'-':>8}"
        print(
            f"{r['phase']:8} {store:9} {r['round']:5d} {r['posts']:6d} {r['seconds']:8.2f} {in_store} "
            f"{rate:8.1f} {rate / base:8.2f} {r['peak_mb']:8.0f}"
        )
    ingest, rerun = results[1], results[2]
    print(
        f"full ingest stored {ingest['added']} posts, flagged {ingest['flagged']}; "
        f"rerun left {rerun['unchanged']} unchanged"
    )
    if url:
        for name in ("ingest", "rerun"):
            for key, what in (("seconds", "whole"), ("store_seconds", "time in Chroma calls")):
                emb = statistics.median(
                    r[key] for r in results if r["phase"] == name and r["store"] == "embedded"
                )
                srv = statistics.median(
                    r[key] for r in results if r["phase"] == name and r["store"] == "server"
                )
                print(
                    f"{name} ({what}, median of {args.repeat}): embedded {emb:.2f}s, server {srv:.2f}s, "
                    f"server/embedded throughput {emb / srv:.2f}"
                )
        srv_ingest = [r for r in results if r["phase"] == "ingest" and r["store"] == "server"]
        print(f"server stored {srv_ingest[0]['added']} posts, flagged {srv_ingest[0]['flagged']}")


@contextmanager
def _server(args: argparse.Namespace, tmp: Path) -> Iterator[str | None]:
    """The server to compare with: --chroma-url, or a `chroma run` started here (--server), or None."""
    if not args.server:
        yield args.chroma_url
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    chroma = Path(sys.executable).parent / "chroma"
    with (tmp / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(chroma), "run", "--path", str(tmp / "server"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"chroma run did not start; see {tmp / 'server.log'}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
