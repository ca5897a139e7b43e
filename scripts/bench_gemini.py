"""Gemini ingest benchmark against the local stand-in: requests and wall time for N posts.

    .venv/bin/python scripts/bench_gemini.py [--posts 600] [--rpm 60] [--texts-per-request 100]
        [--dim 3072] [--archive PATH]

The free-tier setting of the README: --rpm 3 --texts-per-request 20 (about ten minutes for 600 posts).

Starts the test stand-in of the Gemini API on 127.0.0.1 (tests/gemini_standin.py), then ingests
the same real sci.* training posts (the seed's 600 = 150 per group) through the real google-genai
client three times into fresh embedded Chroma stores:
  limited    with --requests-per-minute RPM (what a free-tier user runs)
  unlimited  no rate limit (the stand-in answers in milliseconds: this is the local overhead)
  rerun      the limited store again (every post already stored: no request at all)
The stand-in is not Google: its answer time is ~0, so real runs add the API's latency per request.
No network, no key (a dummy one is set for the SDK).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
SAMPLE = ROOT / "monitor" / "data" / "20news-sample.tar.gz"
sys.path.insert(0, str(ROOT / "tests"))


def run(label: str, db: Path, posts: list, server, args: argparse.Namespace, rpm: float | None) -> dict:
    from monitor.api import Monitor
    from monitor.embedders.gemini import GeminiEmbedder

    embedder = GeminiEmbedder(
        dim=args.dim, requests_per_minute=rpm, batch_size=args.texts_per_request, base_url=server.url
    )
    before = len(server.requests)
    start = time.perf_counter()
    report = Monitor(db, embedder=embedder).ingest(posts)
    seconds = time.perf_counter() - start
    return {
        "run": label,
        "requests_per_minute": rpm,
        "posts": report.read,
        "embedded": report.added + report.updated,
        "requests": len(server.requests) - before,
        "texts_per_request": round(embedder.texts_embedded / max(1, embedder.requests), 1),
        "cut_to_window": report.truncated,
        "rate_limit_wait_s": round(sum(embedder.limiter.waits), 2),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", default=str(SHARED if SHARED.is_file() else SAMPLE))
    parser.add_argument("--posts", type=int, default=600, help="total posts (split over the 4 sci.* groups)")
    parser.add_argument("--rpm", type=float, default=60.0)
    parser.add_argument("--texts-per-request", type=int, default=100, help="posts per request (max 100)")
    parser.add_argument("--dim", type=int, default=3072)
    args = parser.parse_args()

    from gemini_standin import StandIn

    from monitor.sources import NewsgroupArchive

    os.environ.setdefault("GEMINI_API_KEY", "bench-dummy-key")
    os.environ.pop("GOOGLE_GENAI_USE_VERTEXAI", None)
    posts = list(
        NewsgroupArchive(
            args.archive, split="train", categories=["sci.*"], per_category=math.ceil(args.posts / 4)
        )
    )[: args.posts]
    rows = []
    with StandIn(dim=args.dim) as server, tempfile.TemporaryDirectory() as tmp:
        limited, unlimited = Path(tmp) / "limited", Path(tmp) / "unlimited"
        rows.append(run("limited", limited, posts, server, args, args.rpm))
        rows.append(run("unlimited", unlimited, posts, server, args, None))
        rows.append(run("rerun", limited, posts, server, args, args.rpm))
        assert not server.violations, server.violations
    print(
        f"archive {args.archive}; {len(posts)} posts; {args.dim} dims; stand-in on 127.0.0.1", file=sys.stderr
    )
    for row in rows:
        print(json.dumps(row))
    lim, unl = rows[0], rows[1]
    print(
        f"limited/unlimited wall time: {lim['seconds'] / max(unl['seconds'], 1e-9):.1f}x; "
        f"the limit's floor is (requests - 1) * 60 / rpm = {(lim['requests'] - 1) * 60 / args.rpm:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
