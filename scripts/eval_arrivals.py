"""Arrival quality on the real archive: are off-topic arrivals flagged far more than in-topic ones?

    .venv/bin/python scripts/eval_arrivals.py [--archive PATH] [--train 360] [--test 90] [--offtopic 13]
        [--policy alpha:0.05] [--score knn] [--db DIR] [--seed 0]

The documented recipe: the sci.* groups; a baseline from --train training posts per group;
then, as arrivals, --test held-out (test split) posts per sci.* group and --offtopic posts from
each of the 16 other groups filed under a random sci.* group. Everything goes through the real
product path (Monitor API -> Chroma); the rates and the ROC AUC are read back from the verdicts
stored with the posts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from monitor.api import Monitor
from monitor.calibration import DEFAULT_POLICY
from monitor.scores import DEFAULT_SCORE

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(SHARED))
    parser.add_argument("--train", type=int, default=360)
    parser.add_argument("--test", type=int, default=90)
    parser.add_argument("--offtopic", type=int, default=13)
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--score", default=DEFAULT_SCORE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default=None, help="keep the store here (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        mon = Monitor(args.db or Path(tmp) / "db")
        a = args.archive
        mon.ingest(a, split="train", categories=["sci.*"], per_category=args.train, seed=args.seed)
        base, _ = mon.build_baseline(args.policy, score=args.score)
        mon.ingest(a, split="test", categories=["sci.*"], per_category=args.test, seed=args.seed)
        mon.ingest(
            a,
            split="test",
            exclude=["sci.*"],
            per_category=args.offtopic,
            seed=args.seed,
            as_category="sci.*",
        )
        rows = [
            (
                m.get("split"),
                "original_category" in m,
                bool(m.get("is_outlier")),
                float(m.get("distance", np.nan)),
                float(m.get("score", np.nan)),
            )
            for page in mon.store.pages()
            for m in page.metadatas
        ]
    arrivals = [r for r in rows if r[0] == "test"]
    off = np.array([r[1] for r in arrivals])
    flagged = np.array([r[2] for r in arrivals])
    distance = np.array([r[3] for r in arrivals])
    scores = np.array([r[4] for r in arrivals])
    result = {
        "archive": a,
        "policy": args.policy,
        "score": base.score,
        "baseline_posts": base.n_posts,
        "in_topic_arrivals": int((~off).sum()),
        "off_topic_arrivals": int(off.sum()),
        "in_topic_flag_rate": round(float(flagged[~off].mean()), 4),
        "off_topic_flag_rate": round(float(flagged[off].mean()), 4),
        "roc_auc_score": round(float(roc_auc_score(off, scores)), 4),
        "roc_auc_centroid_distance": round(float(roc_auc_score(off, distance)), 4),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
