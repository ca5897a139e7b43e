"""Measure detection quality on labelled arrivals: ROC AUC, average precision, promised vs realised
flag rates, recall, and whether flagged misfiled posts are named by the category they belong to.

Pure functions over arrays (reference vectors with categories, arrivals with the category they
claim and a truth label). :func:`newsgroups_split` builds the standard 20 Newsgroups recipe from
stored vectors: in-topic groups split into reference and held-out arrivals, posts of the other
groups arriving under a random in-topic category.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.calibration import ThresholdPolicy
from monitor.detector import DEFAULT_MIN_POSTS, CategoryDetector
from monitor.errors import InputError
from monitor.scores import ScoreSpec

DEFAULT_SCORES = ("centroid", "knn")
DEFAULT_ALPHAS = (0.01, 0.05, 0.10)


@dataclass
class Labelled:
    """Vectors with the category each claims and whether it is really an anomaly."""

    X: np.ndarray
    claimed: list[str]
    anomaly: np.ndarray  # bool
    true_category: list[str] | None = None


def default_policies(alphas: Sequence[float] = DEFAULT_ALPHAS) -> list[str]:
    """For each alpha: the conformal ``alpha:A`` and the in-sample ``quantile:1-A``."""
    return [f"alpha:{a:g}" for a in alphas] + [f"quantile:{1 - a:g}" for a in alphas]


def promised_rate(policy: ThresholdPolicy) -> float | None:
    """The flag rate on normal posts a policy promises (None for a fixed threshold)."""
    if policy.kind == "alpha":
        return policy.value
    if policy.kind == "quantile":
        return round(1.0 - policy.value, 10)
    return None


def _rank_metrics(scores: np.ndarray, anomaly: np.ndarray) -> tuple[float | None, float | None]:
    ok = np.isfinite(scores)
    s, a = scores[ok], anomaly[ok]
    if a.all() or not a.any():
        return None, None
    return float(roc_auc_score(a, s)), float(average_precision_score(a, s))


def evaluate(
    reference_X: np.ndarray,
    reference_y: Sequence[str],
    arrivals: Labelled,
    *,
    scores: Sequence[str] = DEFAULT_SCORES,
    policies: Sequence[str] | None = None,
    min_posts: int = DEFAULT_MIN_POSTS,
    robust: bool = False,
    per_category: bool = True,
) -> list[dict[str, object]]:
    """One row per score x policy x (category | "all"): AUC, AP, realised flag rate, recall.

    ``robust``: fit once, then fit again with the posts it flagged out of the reference (see
    :func:`robust_exclusions`).
    """
    policies = list(policies or default_policies())
    rows: list[dict[str, object]] = []
    claimed = np.asarray(arrivals.claimed, dtype=object)
    groups = [("all", np.ones(len(claimed), bool))]
    if per_category:
        groups += [(str(c), claimed == c) for c in sorted(set(arrivals.claimed))]
    for score in scores:
        spec = ScoreSpec.parse(score)
        ref_y = list(reference_y)
        for spec_policy in policies:
            policy = ThresholdPolicy.parse(spec_policy)
            det = CategoryDetector(score=spec, policy=policy, min_posts=min_posts)
            exclude = robust_exclusions(det, reference_X, ref_y) if robust else None
            det.fit(reference_X, ref_y, exclude=exclude)
            verdicts = det.verdicts(arrivals.X, arrivals.claimed)
            s = np.array([np.nan if v.score is None else v.score for v in verdicts])
            flagged = np.array([v.is_outlier for v in verdicts])
            scored = np.isfinite(s)
            for name, mask in groups:
                m = mask & scored
                normal, anomalous = m & ~arrivals.anomaly, m & arrivals.anomaly
                auc, ap = _rank_metrics(s[m], arrivals.anomaly[m])
                rows.append(
                    {
                        "score": str(spec),
                        "policy": str(policy),
                        "robust": robust,
                        "category": name,
                        "normal": int(normal.sum()),
                        "anomalous": int(anomalous.sum()),
                        "no_verdict": int((mask & ~scored).sum()),
                        "auc": _r(auc),
                        "ap": _r(ap),
                        "promised": promised_rate(policy),
                        "flag_rate": _r(flagged[normal].mean() if normal.any() else None),
                        "recall": _r(flagged[anomalous].mean() if anomalous.any() else None),
                    }
                )
    return rows


def robust_exclusions(det: CategoryDetector, X: np.ndarray, y: list[str]) -> np.ndarray:
    """The reference posts a first fit flags (each scored leave-one-out): the robust baseline
    leaves them out of the reference and scores them for calibration like newcomers."""
    return det.fit_predict(X, y) == -1


def misfiled_precision(det: CategoryDetector, misfiled: Labelled) -> dict[str, object]:
    """Posts filed under the wrong category: how many are flagged, named ("looks like"), rightly."""
    if misfiled.true_category is None:
        raise ValueError("misfiled posts need their true category")
    verdicts = det.verdicts(misfiled.X, misfiled.claimed)
    flagged = [i for i, v in enumerate(verdicts) if v.is_outlier]
    named = [i for i in flagged if verdicts[i].looks_like]
    right = [i for i in named if verdicts[i].looks_like == misfiled.true_category[i]]
    return {
        "score": str(ScoreSpec.parse(det.score)),
        "policy": str(ThresholdPolicy.parse(det.policy)),
        "misfiled": len(verdicts),
        "flagged": len(flagged),
        "named": len(named),
        "named_right": len(right),
        "precision": _r(len(right) / len(named) if named else None),
    }


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


@dataclass
class Split:
    """The 20 Newsgroups recipe drawn from stored vectors."""

    reference_X: np.ndarray
    reference_y: list[str]
    arrivals: Labelled  # held-out in-topic posts (normal) + off-topic posts (anomalies)
    misfiled: Labelled  # held-out in-topic posts filed under another in-topic category
    contamination: Labelled  # off-topic posts not among the arrivals, filed under in-topic categories


def newsgroups_split(
    X: np.ndarray,
    categories: Sequence[str],
    *,
    in_topic: str = "sci.*",
    train_fraction: float = 0.8,
    off_topic: int = 200,
    seed: int = 0,
) -> Split:
    """Split stored posts: each in-topic group ``train_fraction`` reference / rest held out;
    ``off_topic`` posts of the other groups arrive under a random in-topic category (a disjoint
    set of other posts is returned as ``contamination``, for robust-baseline experiments)."""
    rng = np.random.default_rng(seed)
    cats = np.asarray(categories, dtype=object)
    topics = sorted({c for c in cats.tolist() if fnmatch.fnmatchcase(c, in_topic)})
    if len(topics) < 2:
        raise InputError(f"the recipe needs at least two groups matching {in_topic!r}")
    ref_idx: list[int] = []
    held_idx: list[int] = []
    for t in topics:
        idx = rng.permutation(np.flatnonzero(cats == t))
        cut = round(train_fraction * len(idx))
        ref_idx += idx[:cut].tolist()
        held_idx += idx[cut:].tolist()
    others = rng.permutation(np.flatnonzero(~np.isin(cats, topics)))
    arrive, spare = others[:off_topic], others[off_topic:]
    topic_arr = np.asarray(topics, dtype=object)

    def filed(idx: np.ndarray) -> list[str]:
        return [str(c) for c in topic_arr[rng.integers(0, len(topics), len(idx))]]

    held = np.asarray(held_idx, dtype=int)
    arr_idx = np.concatenate([held, arrive])
    arrivals = Labelled(
        X[arr_idx],
        [str(c) for c in cats[held]] + filed(arrive),
        np.r_[np.zeros(len(held), bool), np.ones(len(arrive), bool)],
        [str(c) for c in cats[arr_idx]],
    )
    wrong = [
        str(topic_arr[(topics.index(c) + rng.integers(1, len(topics))) % len(topics)]) for c in cats[held]
    ]
    misfiled = Labelled(X[held], wrong, np.ones(len(held), bool), [str(c) for c in cats[held]])
    contamination = Labelled(X[spare], filed(spare), np.ones(len(spare), bool), [str(c) for c in cats[spare]])
    ref = np.asarray(ref_idx, dtype=int)
    return Split(X[ref], [str(c) for c in cats[ref]], arrivals, misfiled, contamination)
