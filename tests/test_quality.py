"""Scores, calibration and evaluation through the real store (embedded Chroma)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Target, topic_text

from monitor.api import Monitor
from monitor.baseline import MEMBER_KEY, load_baseline
from monitor.cli import main
from monitor.embedders.hashing import HashingEmbedder
from monitor.errors import InputError
from monitor.posts import Post


def _posts(topic: str, n: int, prefix: str, category: str | None = None) -> list[Post]:
    return [
        Post(topic_text(topic, f"{prefix}{i}"), category or topic, f"{prefix}-{topic}-{i}") for i in range(n)
    ]


@pytest.fixture
def mon(target: Target) -> Monitor:
    """Three topics of 80 posts, embedded and on a real Chroma server."""
    m = target.monitor(embedder=HashingEmbedder(64))
    m.ingest([*_posts("space", 80, "r"), *_posts("med", 80, "r"), *_posts("crypt", 80, "r")])
    return m


def _stored(m: Monitor) -> dict[str, dict[str, Any]]:
    return {pid: meta for page in m.store.pages() for pid, meta in zip(page.ids, page.metadatas, strict=True)}


def test_knn_baseline_survives_a_reload_from_chroma(mon: Monitor) -> None:
    built, _ = mon.build_baseline("alpha:0.1", score="knn:3")
    loaded = load_baseline(mon.store)
    assert loaded is not None and loaded.score == "knn:3" and loaded.policy == "alpha:0.1"
    # every baseline post is marked, and the lazily read reference is exactly those posts
    stored = _stored(mon)
    assert all(m[MEMBER_KEY] == built.version for m in stored.values())
    for cat in ("space", "med", "crypt"):
        assert loaded.detector.reference_[cat].shape == (80, 64)
    new = HashingEmbedder(64).embed(
        [topic_text("space", f"n{i}") for i in range(20)] + [topic_text("med", f"x{i}") for i in range(3)]
    )
    cats = ["space"] * 20 + ["space"] * 3
    a, b = built.detector.verdicts(new, cats), loaded.detector.verdicts(new, cats)
    assert [v.status for v in a] == [v.status for v in b]
    np.testing.assert_allclose([v.p_value for v in a], [v.p_value for v in b], rtol=1e-6)
    np.testing.assert_allclose([v.score for v in a], [v.score for v in b], rtol=1e-5)
    assert all(v.is_outlier and v.looks_like == "med" for v in b[20:])


def test_arrivals_store_score_p_value_and_looks_like(mon: Monitor) -> None:
    mon.build_baseline("alpha:0.05", score="knn")
    misfiled = _posts("med", 10, "m", category="space")  # medical posts filed under space
    normal = _posts("space", 30, "n")
    report = mon.ingest([*misfiled, *normal])
    stored = _stored(mon)
    mis = [stored[p.id] for p in misfiled]
    assert all(m["is_outlier"] and m["looks_like"] == "med" and m["p_value"] <= 0.05 for m in mis)
    ok = [stored[p.id] for p in normal]
    assert sum(m["is_outlier"] for m in ok) <= 5
    assert all(0 < m["p_value"] <= 1 and m["score"] >= 0 and m["threshold"] > 0 for m in ok)
    assert report.flagged == sum(m["is_outlier"] for m in [*mis, *ok])
    # any alpha after the fact, from the stored p-values
    at_20 = mon.outliers(alpha=0.2)
    assert {r["id"] for r in at_20} == {i for i, m in stored.items() if m.get("p_value", 1) <= 0.2}
    for bad in (5, 0, float("nan")):  # the Python API refuses what the CLI refuses
        with pytest.raises(InputError, match="bad --alpha"):
            mon.outliers(alpha=bad)


def test_robust_baseline_leaves_flagged_posts_out(mon: Monitor) -> None:
    mon.build_baseline("alpha:0.05", score="knn")
    burst = _posts("autos", 12, "b", category="space")  # an outlier burst filed under space
    mon.ingest(burst)
    stored = _stored(mon)
    flagged = {i for i, m in stored.items() if m["is_outlier"]}
    assert {p.id for p in burst} <= flagged
    plain, _ = mon.build_baseline("alpha:0.05", score="knn", rescore_posts=False)
    assert plain.detector.counts_.tolist() == [80, 80, 92]  # crypt, med, space (+ the burst)
    robust, _ = mon.build_baseline("alpha:0.05", score="knn", robust=True)
    assert robust.robust and robust.excluded == len(flagged)
    stored = _stored(mon)
    members = {i for i, m in stored.items() if m.get(MEMBER_KEY) == robust.version}
    assert members == set(stored) - flagged
    assert int(robust.detector.counts_.sum()) == len(stored) - len(flagged)
    # the next autos post filed under space: with the burst among its neighbours it looks normal;
    # with the burst left out of the reference it is as far from space as the burst itself was
    late = HashingEmbedder(64).embed([topic_text("autos", "late")])
    v_plain = plain.detector.verdicts(late, ["space"])[0]
    v_robust = robust.detector.verdicts(late, ["space"])[0]
    assert v_plain.is_outlier is False and v_plain.score < 0.5
    assert v_robust.score > v_plain.score + 0.2 and v_robust.p_value <= v_plain.p_value
    # left-out posts are still scored for calibration (as newcomers): thresholds keep their promise
    assert robust.detector.calibrations_[2].n == 92


def test_evaluate_labelled_file_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mon = Monitor(tmp_path / "db", embedder=HashingEmbedder(64))
    mon.ingest([*_posts("space", 80, "r"), *_posts("med", 80, "r"), *_posts("crypt", 80, "r")])
    mon.close()
    records = [
        {"text": topic_text("space", f"e{i}"), "category": "space", "anomaly": False} for i in range(40)
    ]
    records += [{"text": topic_text("med", f"e{i}"), "category": "med", "anomaly": 0.0} for i in range(40)]
    records += [
        {"text": topic_text("autos", f"e{i}"), "category": "space", "anomaly": "yes"} for i in range(20)
    ]
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    before = mon.store.count()
    main(
        [
            "--db",
            str(tmp_path / "db"),
            "evaluate",
            str(path),
            "--embedder",
            "hashing",
            "--per-category",
            "--policies",
            "alpha:0.05,quantile:0.95",
            "--format",
            "json",
        ]
    )
    rows = json.loads(capsys.readouterr().out)
    assert mon.store.count() == before  # evaluation arrivals are not stored
    assert len(rows) == 2 * 2 * 3  # scores x policies x (all, med, space)
    overall = {(r["score"], r["policy"]): r for r in rows if r["category"] == "all"}
    knn = overall[("knn:5", "alpha:0.05")]
    assert (knn["normal"], knn["anomalous"]) == (80, 20)
    assert knn["auc"] >= 0.95 and knn["recall"] >= 0.9
    assert knn["flag_rate"] <= 0.15
    space = next(r for r in rows if r["category"] == "space" and r["score"] == "knn:5")
    assert (space["normal"], space["anomalous"]) == (40, 20)


def test_recipe_on_the_real_sample(sample_archive: Path, tmp_path: Path, minilm: Any) -> None:
    """The built-in recipe on real posts and the real model: knn beats the seed's centroid, and
    alpha keeps its promise within sampling error."""
    m = Monitor(tmp_path / "evaldb", embedder=minilm)
    recipe: dict[str, Any] = {
        "off_topic": 24,
        "off_topic_pool": 3,
        "seeds": (0, 1),
        "scores": ("centroid", "knn:5"),
        "policies": ["alpha:0.1"],
    }
    result = m.evaluate_newsgroups(sample_archive, **recipe)
    rows = {r["score"]: r for r in result["rows"]}
    assert rows["knn:5"]["normal"] == 160 and rows["knn:5"]["anomalous"] == 24
    assert rows["knn:5"]["auc"] > rows["centroid"]["auc"]
    assert rows["knn:5"]["auc"] >= 0.9
    for r in rows.values():
        assert abs(r["flag_rate"] - 0.1) <= 0.06  # 320 held-out verdicts: about 1.7 pp standard error
    misfiled = {r["score"]: r for r in result["misfiled"]}
    assert misfiled["knn:5"]["precision"] >= 0.8
    again = m.evaluate_newsgroups(sample_archive, **recipe)
    assert again["rows"] == result["rows"]  # seeded: the same numbers, and nothing re-embedded
    assert m.store.count() == 800 + 48


def test_a_baseline_replaced_meanwhile_is_reported(mon: Monitor) -> None:
    """Two builds at once (possible on a server): the one whose verdicts may be mixed says so."""
    from monitor.baseline import build_baseline, check_current
    from monitor.errors import BaselineError

    first = build_baseline(mon.store, "alpha:0.05")
    check_current(mon.store, first)  # still current: fine
    second = build_baseline(mon.store, "alpha:0.1")
    with pytest.raises(BaselineError, match="another baseline build saved v2"):
        check_current(mon.store, first)
    check_current(mon.store, second)


def test_a_baseline_saved_by_another_client_is_seen(mon: Monitor, target: Target) -> None:
    """A second client (another process on a server) must not trust the header it read earlier."""
    from monitor.baseline import check_current
    from monitor.errors import BaselineError

    mon.build_baseline("alpha:0.05")
    other = target.monitor(embedder=HashingEmbedder(64))
    seen = load_baseline(other.store)  # the other client has read v1 (and holds its collection)
    assert seen is not None and seen.version == 1
    mon.build_baseline("alpha:0.1")  # meanwhile this one saves v2
    with pytest.raises(BaselineError, match="another baseline build saved v2"):
        check_current(other.store, seen)
    fresh = load_baseline(other.store)
    assert fresh is not None and (fresh.version, fresh.policy) == (2, "alpha:0.1")


def test_two_builds_of_one_version_never_mix_their_records(target: Target) -> None:
    """Two builds racing on a server can both save v7; the header written last must get its own records."""
    store = target.open()
    cats, centroids = ["med", "space"], np.eye(2, 4, dtype=np.float32)

    def save(build: str, thresholds: list[float]) -> None:
        header = {"build_id": build, "created_at": "2026-12-04T00:00:00+00:00", "policy": "alpha:0.05"}
        store.save_baseline(7, header, cats, centroids, [{"threshold": t} for t in thresholds])

    save("A", [0.1, 0.2])
    save("B", [0.9, 0.8])  # B's records and header, then A's header lands late (a slow network)
    store.baseline_collection.modify(metadata={"version": 7, "build_id": "A", "created_by": "monitor"})
    loaded = store.load_baseline()
    assert loaded is not None
    header, categories, _, records = loaded
    assert header["build_id"] == "A" and categories == cats
    assert [r["threshold"] for r in records] == [0.1, 0.2]


def test_robust_refuses_to_starve_a_category(mon: Monitor) -> None:
    from monitor.errors import BaselineError

    mon.build_baseline("fixed:0.01", score="centroid")  # flags (nearly) everything
    before = load_baseline(mon.store)
    with pytest.raises(BaselineError, match="--robust would leave fewer than 20 posts"):
        mon.build_baseline(robust=True)
    after = load_baseline(mon.store)
    assert after is not None and before is not None and after.version == before.version  # kept


def test_refiled_baseline_posts_leave_the_reference(mon: Monitor) -> None:
    mon.build_baseline("alpha:0.05", score="knn")
    moved = _posts("med", 10, "r")  # the same med posts, now filed under space
    mon.ingest([Post(p.text, "space", p.id) for p in moved])
    stored = _stored(mon)
    assert all(stored[p.id]["category"] == "space" and MEMBER_KEY not in stored[p.id] for p in moved)
    fresh = load_baseline(mon.store)
    assert fresh is not None
    assert fresh.detector.reference_["space"].shape[0] == 80  # they did not join space's neighbours
    assert fresh.detector.reference_["med"].shape[0] == 70
