"""Quality runs against a store: labelled arrivals from a file, or the 20 Newsgroups recipe.

The metrics themselves live in :mod:`monitor.evaluate` (pure arrays); this module gets the
vectors: the reference posts from Chroma, labelled arrivals embedded with the store's embedder
(and *not* stored), or the recipe's posts ingested once into the given store and split in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from monitor.calibration import DEFAULT_POLICY
from monitor.detector import CategoryDetector
from monitor.embedders import Embedder
from monitor.errors import InputError
from monitor.evaluate import (
    DEFAULT_SCORES,
    Labelled,
    evaluate,
    misfiled_precision,
    newsgroups_split,
)
from monitor.posts import Post, Skipped, cleaned_text
from monitor.preprocess import get_cleaner
from monitor.store import ChromaStore

TRUE_WORDS = {"1", "true", "yes", "y", "anomaly", "outlier", "off-topic", "offtopic"}
FALSE_WORDS = {"0", "false", "no", "n", "normal", "inlier", "in-topic", "intopic", ""}
Progress = Callable[[int], None]
AVERAGED = ("auc", "ap", "flag_rate", "recall")
RECIPE_KEY = "evaluation_recipe"  # collection metadata: this store was filled by the recipe


def stored_vectors(store: ChromaStore) -> tuple[np.ndarray, list[str]]:
    """Every stored post that has a category: its vector and its category."""
    parts: list[np.ndarray] = []
    cats: list[str] = []
    for page in store.pages(where={"has_category": True}, vectors=True):
        if page.vectors is not None and len(page.vectors):
            parts.append(page.vectors)
            cats += [str(m["category"]) for m in page.metadatas]
    if not parts:
        raise InputError(f"no categorised posts in {store.location}: ingest the reference posts first")
    return np.concatenate(parts), cats


def truth_value(value: object, where: str, field: str) -> bool:
    """A truth label: true/1/yes/anomaly/outlier or false/0/no/normal/inlier."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return value == 1.0
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InputError(f"{where}: {field!r} is {value!r}: expected true/false, 1/0, anomaly/normal")


def labelled_arrivals(
    items: Iterable[Post | Skipped],
    embedder: Embedder,
    *,
    truth_field: str,
    clean: str = "seed",
    progress: Progress | None = None,
) -> Labelled:
    """Embed labelled posts (not stored): each needs a category and a truth value."""
    cleaner = get_cleaner(clean)
    texts: list[str] = []
    claimed: list[str] = []
    anomaly: list[bool] = []
    key = "src_" + truth_field
    for item in items:
        if isinstance(item, Skipped):
            raise InputError(f"{item.where}: {item.reason}")
        if item.category is None:
            raise InputError(
                f"{item.where}: no category: every labelled post must say which category it claims"
            )
        if key not in item.extra:
            raise InputError(f"{item.where}: no {truth_field!r} field (set it with --truth-field)")
        text, problem = cleaned_text(item.text, cleaner)
        if problem:
            raise InputError(f"{item.where}: {problem}")
        anomaly.append(truth_value(item.extra[key], item.where, truth_field))
        claimed.append(item.category)
        texts.append(text)
    if not texts:
        raise InputError("no labelled posts in the input")
    vectors = []
    for start in range(0, len(texts), 64):
        vectors.append(embedder.embed(texts[start : start + 64]))
        if progress:
            progress(len(vectors[-1]))
    return Labelled(np.concatenate(vectors), claimed, np.asarray(anomaly, dtype=bool))


def average_over_seeds(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several seeds' runs (same shape) with the metrics averaged."""
    out = []
    for rows in zip(*runs, strict=True):
        row = dict(rows[0])
        for key in AVERAGED:
            vals = [r[key] for r in rows if r[key] is not None]
            row[key] = round(float(np.mean(vals)), 4) if vals else None
        row["seeds"] = len(rows)
        out.append(row)
    return out


def newsgroups_recipe(
    vectors: np.ndarray,
    categories: Sequence[str],
    *,
    in_topic: str = "sci.*",
    off_topic: int = 200,
    seeds: Sequence[int] = (0,),
    scores: Sequence[str] = DEFAULT_SCORES,
    policies: Sequence[str] | None = None,
    robust: bool = False,
    per_category: bool = False,
) -> dict[str, Any]:
    """The 20 Newsgroups recipe over stored vectors, averaged over ``seeds`` random splits.

    Returns ``rows`` (score x policy metrics), ``misfiled`` (looks-like precision per score at
    the default policy if listed, else the first) and ``contaminated`` (the same metrics with a burst of off-topic
    posts stored in the reference, without and with the robust baseline).
    """
    runs, contaminated, misfiled = [], [], []
    for seed in seeds:
        split = newsgroups_split(vectors, categories, in_topic=in_topic, off_topic=off_topic, seed=seed)
        kw = {"scores": scores, "policies": policies, "per_category": per_category}
        runs.append(evaluate(split.reference_X, split.reference_y, split.arrivals, robust=robust, **kw))
        dirty_X = np.vstack([split.reference_X, split.contamination.X])
        dirty_y = [*split.reference_y, *split.contamination.claimed]
        contaminated.append(
            [
                *evaluate(dirty_X, dirty_y, split.arrivals, robust=False, **kw),
                *evaluate(dirty_X, dirty_y, split.arrivals, robust=True, **kw),
            ]
        )
        listed = list(policies or [DEFAULT_POLICY])
        policy = DEFAULT_POLICY if DEFAULT_POLICY in listed else listed[0]
        misfiled.append(
            [
                misfiled_precision(
                    CategoryDetector(score=s, policy=policy).fit(split.reference_X, split.reference_y),
                    split.misfiled,
                )
                for s in scores
            ]
        )
    return {
        "rows": average_over_seeds(runs),
        "contaminated": average_over_seeds(contaminated),
        "misfiled": _sum_misfiled(misfiled),
        "seeds": list(seeds),
    }


def _sum_misfiled(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for rows in zip(*runs, strict=True):
        row = dict(rows[0])
        for key in ("misfiled", "flagged", "named", "named_right"):
            row[key] = sum(int(r[key]) for r in rows)
        row["precision"] = round(row["named_right"] / row["named"], 4) if row["named"] else None
        out.append(row)
    return out
