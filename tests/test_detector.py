"""The centroid detector as an estimator over arrays (synthetic data with known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detector import CategorySums, CentroidDetector, RadiusPolicy
from monitor.errors import BaselineError


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def clusters() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    a = _unit(np.array([1.0, 0, 0, 0]) + rng.normal(0, 0.1, (200, 4)))
    b = _unit(np.array([0, 1.0, 0, 0]) + rng.normal(0, 0.1, (200, 4)))
    return np.vstack([a, b]), ["a"] * 200 + ["b"] * 200


def test_centroids_are_category_means(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    assert det.categories_ == ["a", "b"]
    np.testing.assert_allclose(det.centroids_[0], X[:200].mean(0), atol=1e-6)
    np.testing.assert_allclose(det.centroids_[1], X[200:].mean(0), atol=1e-6)


def test_quantile_radius_flags_that_share_of_training_posts(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector("quantile:0.9").fit(X, y)
    flagged = (det.predict(X, y) == -1).mean()
    assert 0.08 <= flagged <= 0.11
    d = np.linalg.norm(X[:200] - det.centroids_[0], axis=1)
    assert det.radii_[0] == pytest.approx(np.quantile(d, 0.9), rel=1e-5)


def test_fixed_radius_is_the_same_for_all(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector("fixed:0.3").fit(X, y)
    assert det.radii_.tolist() == [0.3, 0.3]


def test_far_post_is_an_outlier_and_names_the_nearest_category(
    clusters: tuple[np.ndarray, list[str]],
) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    post_b_filed_as_a = _unit(np.array([[0.0, 1.0, 0.05, 0.0]]))
    (v,) = det.verdicts(post_b_filed_as_a, ["a"])
    assert v.status == "outlier" and v.is_outlier
    assert v.scored_against == "a" and v.nearest_category == "b"
    assert v.distance > v.radius
    assert det.decision_function(post_b_filed_as_a, ["a"])[0] < 0
    assert det.score_samples(post_b_filed_as_a, ["a"])[0] == pytest.approx(-v.distance)


def test_typical_post_is_an_inlier(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    assert det.predict(_unit(np.array([[1.0, 0.0, 0.0, 0.0]])), ["a"]).tolist() == [1]


def test_post_without_category_is_scored_against_nearest(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    (v,) = det.verdicts(_unit(np.array([[0.1, 1.0, 0.0, 0.0]])), [None])
    assert v.scored_against == "b" == v.nearest_category
    assert v.status == "inlier"


def test_small_category_gets_no_verdict_not_a_flag(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    X2 = np.vstack([X, _unit(np.array([[0, 0, 1.0, 0]] * 5))])
    det = CentroidDetector(min_posts=20).fit(X2, [*y, *["tiny"] * 5])
    assert np.isnan(det.radii_[det.categories_.index("tiny")])
    (v,) = det.verdicts(_unit(np.array([[0, 0, 0, 1.0]])), ["tiny"])
    assert v.status == "insufficient_baseline" and not v.is_outlier and v.distance is None
    assert det.predict(_unit(np.array([[0, 0, 0, 1.0]])), ["tiny"]).tolist() == [0]
    (u,) = det.verdicts(_unit(np.array([[0, 0, 0, 1.0]])), ["never-seen"])
    assert u.status == "insufficient_baseline"


def test_streaming_sums_equal_one_shot_fit(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    sums = CategorySums()
    for start in range(0, len(X), 37):
        sums.add(X[start : start + 37], y[start : start + 37])
    cats, centroids = sums.centroids()
    det = CentroidDetector().fit(X, y)
    assert cats == det.categories_
    np.testing.assert_allclose(centroids, det.centroids_, atol=1e-6)


def test_rows_without_category_do_not_move_centroids(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    noise = _unit(np.array([[0, 0, 0, 1.0]] * 50))
    det = CentroidDetector().fit(np.vstack([X, noise]), [*y, *[None] * 50])
    np.testing.assert_allclose(det.centroids_[0], X[:200].mean(0), atol=1e-6)


@pytest.mark.parametrize(
    "spec", ["fixed:-1", "fixed:0", "quantile:1.5", "quantile:0", "median", "quantile:x"]
)
def test_bad_policies_are_refused(spec: str) -> None:
    with pytest.raises(BaselineError, match="policy"):
        RadiusPolicy.parse(spec)


def test_unfitted_detector_says_so() -> None:
    with pytest.raises(BaselineError, match="not fitted"):
        CentroidDetector().predict(np.zeros((1, 4)), ["a"])


def test_from_state_reproduces_verdicts(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    again = CentroidDetector.from_state(
        det.categories_,
        det.centroids_,
        det.counts_.tolist(),
        det.thresholds_.tolist(),
        det.radii_.tolist(),
        det.calibrations_,
        score="centroid",
        policy=det.policy,
        min_posts=det.min_posts,
    )
    assert (again.predict(X, y) == det.predict(X, y)).all()
    np.testing.assert_allclose(again.p_values(X, y), det.p_values(X, y))


def test_is_a_scikit_learn_estimator(clusters: tuple[np.ndarray, list[str]]) -> None:
    from sklearn.base import clone

    X, y = clusters
    det = CentroidDetector("quantile:0.8", min_posts=5)
    assert det.get_params() == {"policy": "quantile:0.8", "min_posts": 5}
    copy = clone(det)
    assert copy.get_params() == det.get_params() and not hasattr(copy, "centroids_")
    labels = det.fit_predict(X, y)
    assert set(labels.tolist()) == {-1, 1}
    assert 0.15 <= (labels == -1).mean() <= 0.25


@pytest.mark.parametrize("scale", [0.1, 7.0])
def test_raw_vectors_are_normalised_so_knn_means_the_same(
    clusters: tuple[np.ndarray, list[str]], scale: float
) -> None:
    """The scores are cosine-based: vectors of any length give the verdicts of their unit rows."""
    from monitor.detector import CategoryDetector

    X, y = clusters
    new = np.vstack([X[:5], -X[:5]])  # five typical posts of "a", five pointing the other way
    cats = ["a"] * 10
    unit = CategoryDetector(score="knn:5").fit(X, y)
    raw = CategoryDetector(score="knn:5").fit(X * scale, y)
    np.testing.assert_allclose(raw.thresholds_, unit.thresholds_, atol=1e-6)
    assert (raw.thresholds_ > 0).all()
    np.testing.assert_array_equal(raw.predict(new * scale, cats), unit.predict(new, cats))
    assert list(raw.predict(-X[:5] * scale, ["a"] * 5)) == [-1] * 5


def test_a_vector_of_the_wrong_width_is_a_clear_error(clusters: tuple[np.ndarray, list[str]]) -> None:
    X, y = clusters
    det = CentroidDetector().fit(X, y)
    with pytest.raises(ValueError, match="X has 3 columns; the detector was fitted on 4"):
        det.predict(np.ones((2, 3)), ["a", "b"])
