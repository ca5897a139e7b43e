"""Scores and calibration on synthetic data where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.calibration import Calibration, ThresholdPolicy
from monitor.detector import CategoryDetector
from monitor.errors import BaselineError
from monitor.scores import ScoreSpec, centroid_loo, knn_scores, loo_scores


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _blob(rng: np.random.Generator, centre: int, n: int, dim: int = 16, spread: float = 0.3) -> np.ndarray:
    mean = np.zeros(dim)
    mean[centre] = 1.0
    return _unit(mean + rng.normal(0, spread, (n, dim)))


def test_centroid_leave_one_out_matches_brute_force() -> None:
    X = _blob(np.random.default_rng(1), 0, 30)
    c = X.mean(0)
    brute = [np.linalg.norm(X[i] - np.delete(X, i, axis=0).mean(0)) for i in range(len(X))]
    np.testing.assert_allclose(centroid_loo(X, c), brute, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7, 40])
def test_knn_scores_match_brute_force(k: int) -> None:
    rng = np.random.default_rng(2)
    R, Q = _blob(rng, 0, 25), _blob(rng, 1, 6)
    cos = 1 - Q @ R.T
    brute = np.sort(cos, axis=1)[:, : min(k, 25)].mean(1)
    np.testing.assert_allclose(knn_scores(Q, R, k), brute, rtol=1e-5, atol=1e-6)
    # leave-one-out of the reference itself, and "drop my own entry" when scoring members
    self_cos = 1 - R @ R.T
    np.fill_diagonal(self_cos, np.inf)
    loo = np.sort(self_cos, axis=1)[:, : min(k, 24)].mean(1)
    np.testing.assert_allclose(knn_scores(R, R, k, leave_one_out=True), loo, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(knn_scores(R[:5], R, k, drop_nearest=True), loo[:5], rtol=1e-4, atol=1e-5)


def test_exact_p_values_follow_the_conformal_formula() -> None:
    cal = Calibration.from_scores(np.array([0.1, 0.2, 0.3, 0.4]))
    # p = (1 + #{cal >= s}) / (n + 1)
    np.testing.assert_allclose(cal.p_values(np.array([0.05, 0.2, 0.35, 0.9])), [1.0, 0.8, 0.4, 0.2])


def test_a_calibration_post_is_compared_with_the_others_only() -> None:
    cal = Calibration.from_scores(np.array([0.1, 0.2, 0.3, 0.4]))
    # the post scoring 0.4 is one of the four: 1 + #{other three >= 0.4} over 3 + 1
    np.testing.assert_allclose(cal.p_values(np.array([0.4, 0.1]), np.array([True, True])), [0.25, 1.0])


def test_conformal_threshold_agrees_with_p_values() -> None:
    rng = np.random.default_rng(3)
    cal = Calibration.from_scores(rng.random(499))
    s = rng.random(5000) * 1.1
    for alpha in (0.01, 0.05, 0.1):
        t = cal.conformal_threshold(alpha)
        assert ((s > t) == (cal.p_values(s) <= alpha)).all()
    assert cal.conformal_threshold(0.001) == math.inf  # 500 * 0.001 < 1: nothing can be that rare


def test_sketched_calibration_gives_nearly_the_same_p_values() -> None:
    rng = np.random.default_rng(4)
    cal = Calibration.from_scores(rng.normal(size=20_000))
    sketch = cal.sketch()
    assert not sketch.exact and len(sketch.values) == 1001 and sketch.n == 20_000
    s = rng.normal(size=2000)
    assert np.abs(sketch.p_values(s) - cal.p_values(s)).max() < 0.002
    assert abs(sketch.conformal_threshold(0.05) - cal.conformal_threshold(0.05)) < 0.01


@pytest.mark.parametrize("score", ["centroid", "knn:5"])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.10])
def test_alpha_policy_flags_about_alpha_of_new_normal_posts(score: str, alpha: float) -> None:
    rng = np.random.default_rng(5)
    ref = np.vstack([_blob(rng, 0, 1500), _blob(rng, 1, 1500)])
    y = ["a"] * 1500 + ["b"] * 1500
    fresh = np.vstack([_blob(rng, 0, 4000), _blob(rng, 1, 4000)])
    det = CategoryDetector(score=score, policy=f"alpha:{alpha}").fit(ref, y)
    rate = (det.predict(fresh, ["a"] * 4000 + ["b"] * 4000) == -1).mean()
    assert abs(rate - alpha) < 0.01, rate
    p = det.p_values(fresh, ["a"] * 4000 + ["b"] * 4000)
    assert abs((p <= alpha).mean() - alpha) < 0.01  # p-values are uniform: any alpha after the fact


def test_in_sample_quantile_is_biased_for_knn() -> None:
    """Scored with itself among its neighbours, a post looks more normal than a newcomer."""
    rng = np.random.default_rng(6)
    ref, fresh = _blob(rng, 0, 800), _blob(rng, 0, 4000)
    naive = CategoryDetector(score="knn:5", policy="quantile:0.95").fit(ref, ["a"] * 800)
    rate = (naive.predict(fresh, ["a"] * 4000) == -1).mean()
    assert rate > 0.10  # promised 5%


def test_knn_separates_planted_outliers_and_names_their_category() -> None:
    rng = np.random.default_rng(7)
    ref = np.vstack(
        [_blob(rng, 0, 300, spread=0.15), _blob(rng, 1, 300, spread=0.15), _blob(rng, 2, 300, spread=0.15)]
    )
    y = ["a"] * 300 + ["b"] * 300 + ["c"] * 300
    det = CategoryDetector(score="knn", policy="alpha:0.05").fit(ref, y)
    misfiled = _blob(rng, 1, 40, spread=0.15)  # "b" posts filed under "a"
    normal = _blob(rng, 0, 40, spread=0.15)
    verdicts = det.verdicts(np.vstack([misfiled, normal]), ["a"] * 80)
    assert all(v.is_outlier for v in verdicts[:40])
    named = [v.looks_like for v in verdicts[:40] if v.looks_like]
    assert set(named) == {"b"} and len(named) >= 32  # ~5% of b's own posts are outside b too
    assert sum(v.is_outlier for v in verdicts[40:]) <= 8
    assert all(v.looks_like is None for v in verdicts[40:] if not v.is_outlier)
    assert all(0 < v.p_value <= 1 for v in verdicts)


def test_fit_predict_scores_the_training_posts_leave_one_out() -> None:
    rng = np.random.default_rng(8)
    X = _blob(rng, 0, 400)
    det = CategoryDetector(score="knn:1", policy="alpha:0.05")
    labels = det.fit_predict(X, ["a"] * 400)
    # each post scored against the others flags about alpha; against itself (distance 0) it never would
    assert 0.02 <= (labels == -1).mean() <= 0.08


def test_loo_scores_dispatch_on_the_spec() -> None:
    X = _blob(np.random.default_rng(9), 0, 20)
    np.testing.assert_allclose(
        loo_scores(ScoreSpec.parse("centroid"), X, X.mean(0)), centroid_loo(X, X.mean(0))
    )
    np.testing.assert_allclose(
        loo_scores(ScoreSpec.parse("knn:3"), X, X.mean(0)), knn_scores(X, X, 3, leave_one_out=True)
    )


@pytest.mark.parametrize("spec", ["knn:0", "knn:x", "mahalanobis", "centroid:3", ""])
def test_bad_scores_are_refused(spec: str) -> None:
    with pytest.raises(BaselineError, match="score"):
        ScoreSpec.parse(spec)


@pytest.mark.parametrize("spec", ["alpha:0", "alpha:1", "alpha:nan", "alpha:", "beta:0.1"])
def test_bad_alpha_policies_are_refused(spec: str) -> None:
    with pytest.raises(BaselineError, match="policy"):
        ThresholdPolicy.parse(spec)


def test_a_baseline_post_scoring_a_hair_above_its_stored_score_keeps_the_floor() -> None:
    cal = Calibration.from_scores(np.array([0.1, 0.2, 0.3, 0.4]))
    p = cal.p_values(np.array([0.4 + 1e-7]), np.array([True]))
    assert p[0] == pytest.approx(0.25)  # never 0: it is at least as extreme as itself


def test_a_baseline_post_is_not_outranked_by_its_own_float32_copy() -> None:
    """Chroma keeps the calibration scores as float32; a baseline post's score recomputed in float64
    can land just above its stored copy. It must still count itself, not the score above it."""
    f32 = np.float32(0.6352882)
    recomputed = float(f32) + 0.4 * float(np.spacing(f32))  # rounds to f32, but lies above it
    exact = np.array([0.18, 0.31, recomputed, 0.7731])
    stored = Calibration(exact.astype(np.float32).astype(np.float64), 4)  # as read back from Chroma
    assert stored.values[2] < exact[2]  # the round trip did move it down
    p = stored.p_values(np.array([recomputed]), np.array([True]))
    assert p[0] == pytest.approx((1 + 1) / 4)  # (1 + #{other three >= s}) / (3 + 1): only 0.7731
