"""Ingest through the Python API: idempotence, updates and refiling, ids, arrival scoring,
re-scoring, restarts, the embedder stamp, --as-category, streaming chunks and skips.

Real Chroma, embedded in tmp folders and on a real server (the ``target`` fixture runs each
test both ways); the deterministic HashingEmbedder (embedding quality is irrelevant here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import Target, topic_text

from monitor.api import Monitor
from monitor.chunks import live_chunks
from monitor.embedders.hashing import HashingEmbedder
from monitor.errors import EmbedderMismatchError, InputError
from monitor.ingest import CategoryAssigner, ingest
from monitor.posts import Post, content_id
from monitor.store import ChromaStore

ARRIVAL_KEYS = (
    "verdict",
    "is_outlier",
    "distance",
    "radius",
    "nearest_category",
    "baseline_version",
    "scored_at",
)


def text_of(topic: str, n: int, seed: int, words: int = 25) -> str:
    return topic_text(topic, f"{n}:{seed}", words)


def posts(
    topic: str, n: int, *, category: str | None = "same", prefix: str = "", seed: int = 0
) -> list[Post]:
    cat = topic if category == "same" else category
    return [Post(text=text_of(topic, i, seed), category=cat, id=f"{prefix or topic}/{i}") for i in range(n)]


def all_meta(store: ChromaStore) -> dict[str, dict]:
    return {pid: meta for page in store.pages() for pid, meta in zip(page.ids, page.metadatas, strict=True)}


@pytest.fixture
def mon(target: Target) -> Monitor:
    return target.monitor(embedder=HashingEmbedder())


@pytest.fixture
def based(mon: Monitor) -> Monitor:
    """Two categories of 24 posts and one of 5 (below the default min_posts of 20), baseline v1."""
    mon.ingest(posts("space", 24) + posts("med", 24) + posts("crypt", 5))
    mon.build_baseline()
    return mon


# -- idempotence, updates, refiling -----------------------------------------------------------------------


def test_rerun_is_idempotent_and_embeds_nothing(mon: Monitor) -> None:
    batch = posts("space", 10) + posts("med", 10)
    first = mon.ingest(batch)
    assert (first.added, first.unchanged, first.read) == (20, 0, 20)
    embedded, count = mon.embedder.texts_embedded, mon.store.count()
    assert (embedded, count) == (20, 20)

    second = mon.ingest(batch)
    assert mon.store.count() == count
    assert mon.embedder.texts_embedded == embedded  # nothing embedded the second time
    assert (second.added, second.updated, second.refiled, second.unchanged) == (0, 0, 0, 20)
    assert second.as_dict()["unchanged"] == 20


def test_changed_text_is_reembedded_and_updated(mon: Monitor) -> None:
    mon.ingest(posts("space", 5))
    before = mon.store.metadata_for(["space/2"])["space/2"]
    embedded = mon.embedder.texts_embedded

    changed = Post(text=text_of("med", 99, 0), category="space", id="space/2")
    report = mon.ingest([changed])
    assert (report.updated, report.added, report.unchanged) == (1, 0, 0)
    assert mon.embedder.texts_embedded == embedded + 1
    assert mon.store.count() == 5
    page = mon.store.get(["space/2"], vectors=True, documents=True)
    assert page.documents == [changed.text]
    assert page.metadatas[0]["text_sha"] != before["text_sha"]
    expected = HashingEmbedder().embed([changed.text])[0]
    assert page.vectors[0] == pytest.approx(expected, abs=1e-6)


def test_same_text_other_category_is_refiled_not_reembedded(based: Monitor) -> None:
    base = based.baseline()
    assert base is not None
    old = based.store.metadata_for(["space/3"])["space/3"]
    assert old["category"] == "space" and old["scored_against"] == "space"
    embedded = based.embedder.texts_embedded

    report = based.ingest([Post(text=text_of("space", 3, 0), category="med", id="space/3")])
    assert (report.refiled, report.added, report.updated, report.unchanged) == (1, 0, 0, 0)
    assert based.embedder.texts_embedded == embedded
    assert based.store.count() == 53

    page = based.store.get(["space/3"], vectors=True)
    meta = page.metadatas[0]
    expected = base.detector.verdicts(page.vectors, ["med"])[0]
    assert meta["category"] == "med" and meta["scored_against"] == "med"
    assert meta["distance"] == pytest.approx(expected.distance, abs=1e-5)
    assert meta["radius"] == pytest.approx(base.radius_of("med"), abs=1e-6)
    assert meta["verdict"] == expected.status
    assert meta["text_sha"] == old["text_sha"]


def test_duplicate_ids_in_one_input_are_stored_once(mon: Monitor) -> None:
    dup = [Post(text="orbit rocket launch", id="d1"), Post(text="doctor patient", id="d2")]
    report = mon.ingest([*dup, Post(text="orbit rocket launch", id="d1"), dup[1]])
    assert report.read == 4
    assert report.duplicates_in_input == 2
    assert report.added == 2
    assert mon.store.count() == 2
    assert mon.embedder.texts_embedded == 2


def test_duplicate_ids_across_chunks_are_counted_as_duplicates(mon: Monitor) -> None:
    items = [Post(text="orbit rocket", id="a"), Post(text="doctor patient", id="b")]
    items += [Post(text="orbit rocket", id="a"), Post(text="orbit rocket booster", id="b")]
    report = mon.ingest(items, chunk_size=2)
    assert mon.store.count() == 2
    assert report.duplicates_in_input == 2
    # the last occurrence wins, as within one chunk: b's new text is an update, a's repeat is unchanged
    assert (report.added, report.updated, report.unchanged) == (2, 1, 1)
    assert mon.embedder.texts_embedded == 3
    assert mon.store.get(["b"], vectors=False, documents=True).documents == ["orbit rocket booster"]


def test_posts_without_id_get_a_content_id(mon: Monitor) -> None:
    text = "nasa shuttle launch delayed again"
    report = mon.ingest([Post(text=text, category="space"), Post(text=text, category="space")])
    assert report.duplicates_in_input == 1 and report.added == 1
    pid = content_id(text)
    assert pid.startswith("sha256:")
    assert list(mon.store.metadata_for([pid])) == [pid]

    again = mon.ingest([Post(text=text, category="space")])
    assert again.unchanged == 1 and again.added == 0
    assert mon.store.count() == 1


# -- arrival scoring and re-scoring ----------------------------------------------------------------------


def test_arrivals_carry_verdicts(based: Monitor) -> None:
    base = based.baseline()
    assert base is not None and base.version == 1
    arrivals = [
        *posts("space", 3, prefix="new-space", seed=1),
        *posts("autos", 3, category="space", prefix="autos-as-space"),
        *posts("med", 3, category=None, prefix="nocat", seed=2),
        *posts("crypt", 2, prefix="new-crypt", seed=3),
    ]
    report = based.ingest(arrivals)
    assert report.added == 11
    meta = all_meta(based.store)

    for p in arrivals:
        m = meta[p.stable_id()]
        assert m["baseline_version"] == 1 and m["scored_at"]
        if p.category == "crypt":  # 5 posts < min_posts 20: no verdict
            assert m["verdict"] == "insufficient_baseline"
            assert m["is_outlier"] is False
            assert "distance" not in m and "radius" not in m
            assert m["nearest_category"] in ("space", "med")
            continue
        for key in ARRIVAL_KEYS:
            assert key in m, (p.id, key)
        assert m["verdict"] in ("inlier", "outlier")
        assert m["is_outlier"] is (m["verdict"] == "outlier")
        assert m["is_outlier"] is (m["distance"] > m["radius"])
        if p.category is None:
            assert "category" not in m and m["has_category"] is False
            assert m["scored_against"] == m["nearest_category"] == "med"
        else:
            assert m["scored_against"] == p.category
            assert m["radius"] == pytest.approx(base.radius_of(p.category), abs=1e-6)

    # car talk filed under space is far from the space centroid: flagged
    assert all(meta[f"autos-as-space/{i}"]["is_outlier"] for i in range(3))
    assert report.flagged == sum(meta[p.stable_id()]["is_outlier"] for p in arrivals)
    assert report.verdicts["insufficient_baseline"] == 2


def test_second_baseline_rescores_every_post(based: Monitor) -> None:
    based.ingest(posts("autos", 4, category=None, prefix="nocat"))
    n = based.store.count()
    tight, report = based.build_baseline("fixed:0.01")
    assert tight.version == 2 and report is not None and report.posts == n
    meta = all_meta(based.store)
    assert {m["baseline_version"] for m in meta.values()} == {2}
    scored = [m for m in meta.values() if m["verdict"] in ("inlier", "outlier")]
    assert len(scored) == n - 5  # all but the 5 crypt posts
    assert all(m["radius"] == pytest.approx(0.01) and m["is_outlier"] for m in scored)
    assert report.outliers == len(scored) and report.newly_flagged > 0

    loose, report = based.build_baseline("fixed:10")
    assert loose.version == 3 and report is not None
    meta = all_meta(based.store)
    assert {m["baseline_version"] for m in meta.values()} == {3}
    assert not any(m["is_outlier"] for m in meta.values())
    assert report.cleared == len(scored) and report.outliers == 0


def test_restart_sees_the_same_baseline_and_flags(based: Monitor, target: Target) -> None:
    base = based.baseline()
    assert base is not None
    flags = {pid: m["is_outlier"] for pid, m in all_meta(based.store).items()}
    assert any(flags.values())
    radii = {c: base.radius_of(c) for c in base.detector.categories_}
    assert radii["crypt"] is None and radii["space"] is not None

    script = (
        "import json, sys\n"
        "from monitor.api import Monitor\n"
        "m = Monitor(sys.argv[1], url=sys.argv[2] or None, collection=sys.argv[3], embedder='hashing')\n"
        "b = m.baseline()\n"
        "flags = {i: md['is_outlier'] for p in m.store.pages() for i, md in zip(p.ids, p.metadatas)}\n"
        "print(json.dumps({'version': b.version, 'policy': b.policy,\n"
        "  'radii': {c: b.radius_of(c) for c in b.detector.categories_}, 'flags': flags}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target.db), target.url or "", target.collection],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["version"] == base.version and seen["policy"] == base.policy
    assert seen["radii"].keys() == radii.keys()
    for c, r in radii.items():
        assert seen["radii"][c] == (None if r is None else pytest.approx(r, rel=1e-6))
    assert seen["flags"] == flags

    again = target.monitor(embedder=HashingEmbedder())  # a new store object in this process
    assert again.baseline().version == base.version  # type: ignore[union-attr]
    report = again.ingest(posts("autos", 2, category="space", prefix="late"))
    late = again.store.metadata_for(["late/0"])["late/0"]
    assert report.added == 2 and late["baseline_version"] == base.version
    assert late["radius"] == pytest.approx(radii["space"], rel=1e-6)


def test_updated_post_does_not_keep_stale_verdict_keys(based: Monitor) -> None:
    old = based.store.metadata_for(["space/0"])["space/0"]
    assert "distance" in old and old["scored_against"] == "space"
    # new text, now filed under crypt, which has too few posts for a verdict
    report = based.ingest([Post(text=text_of("crypt", 50, 0), category="crypt", id="space/0")])
    assert report.updated == 1
    meta = based.store.metadata_for(["space/0"])["space/0"]
    assert meta["verdict"] == "insufficient_baseline" and meta["category"] == "crypt"
    assert "distance" not in meta
    assert "radius" not in meta
    assert meta.get("scored_against") in (None, "crypt")


# -- the embedder stamp -----------------------------------------------------------------------------------


def test_other_embedder_is_refused_and_stores_nothing(target: Target) -> None:
    target.monitor(embedder=HashingEmbedder(dim=64)).ingest(posts("space", 4))
    small = HashingEmbedder(dim=32)
    other = target.monitor(embedder=small)
    with pytest.raises(EmbedderMismatchError, match="hashing-64"):
        other.ingest(posts("med", 4))
    assert other.store.count() == 4
    assert small.texts_embedded == 0
    assert other.store.stamp() == {"embedder": "hashing-64", "embedding_dim": 64}


def test_failed_ingest_does_not_lock_an_empty_store(target: Target) -> None:
    with pytest.raises(InputError):  # --as-category needs a baseline: fails before storing anything
        target.monitor(embedder=HashingEmbedder(dim=32)).ingest(posts("space", 3), as_category="sci.*")
    mon = target.monitor(embedder=HashingEmbedder(dim=64))
    assert mon.store.count() == 0
    report = mon.ingest(posts("space", 3))
    assert report.added == 3


# -- --as-category ---------------------------------------------------------------------------------------


def test_category_assigner_globs_and_is_deterministic() -> None:
    known = ["sci.med", "sci.space", "talk.politics"]
    a = CategoryAssigner("sci.*", known, seed=0)
    assert a.choices == ["sci.med", "sci.space"]
    ids = [f"post/{i}" for i in range(40)]
    picks = [a(i) for i in ids]
    assert set(picks) == {"sci.med", "sci.space"}
    assert [CategoryAssigner("sci.*", known, seed=0)(i) for i in ids] == picks
    assert [CategoryAssigner("sci.*", known, seed=1)(i) for i in ids] != picks
    assert CategoryAssigner("talk.politics, sci.med", known).choices == ["sci.med", "talk.politics"]
    assert {CategoryAssigner("rec.autos", [])(i) for i in ids} == {"rec.autos"}  # no baseline: any name
    with pytest.raises(InputError, match=r"'rec\.autos' is not a baseline category"):
        CategoryAssigner("rec.autos", known)  # with one, a name must be one of its categories
    with pytest.raises(InputError, match="matches no baseline category"):
        CategoryAssigner("rec.*", known)
    for empty in (" , ", ""):
        with pytest.raises(InputError, match="empty"):
            CategoryAssigner(empty, known)


def test_an_empty_as_category_is_refused_not_ignored(based: Monitor) -> None:
    with pytest.raises(InputError, match="--as-category is empty"):
        based.ingest(posts("autos", 2, category="rec.autos", prefix="e"), as_category="")


def test_as_category_files_posts_and_keeps_original(based: Monitor) -> None:
    arrivals = posts("autos", 12, category="rec.autos", prefix="ot") + posts(
        "autos", 2, category=None, prefix="nc"
    )
    report = based.ingest(arrivals, as_category="*", seed=5)
    assert report.added == 14
    expected = CategoryAssigner("*", ["crypt", "med", "space"], seed=5)
    meta = all_meta(based.store)
    for p in arrivals:
        m = meta[p.stable_id()]
        assert m["category"] == expected(p.stable_id())
        assert m["has_category"] is True
        if p.category is None:
            assert "original_category" not in m
        else:
            assert m["original_category"] == "rec.autos"
    assert len({meta[p.stable_id()]["category"] for p in arrivals}) > 1

    again = based.ingest(arrivals, as_category="*", seed=5)
    assert again.unchanged == 14 and again.refiled == 0


# -- streaming --------------------------------------------------------------------------------------------


def test_live_chunks_yields_before_the_source_finishes() -> None:
    received = threading.Event()

    def slow() -> Iterator[str]:
        yield "first"
        if not received.wait(10):
            raise AssertionError("the first item was not handed on before the source finished")
        yield "second"

    chunks = live_chunks(slow(), 64)
    assert next(chunks) == ["first"]
    received.set()
    assert [x for chunk in chunks for x in chunk] == ["second"]


def test_live_chunks_raises_after_earlier_items() -> None:
    def failing() -> Iterator[int]:
        yield from range(5)
        raise InputError("broken at record 6")

    seen: list[int] = []
    with pytest.raises(InputError, match="record 6"):
        for chunk in live_chunks(failing(), 2):
            assert 1 <= len(chunk) <= 2
            seen.extend(chunk)
    assert seen == [0, 1, 2, 3, 4]


def test_source_error_surfaces_after_earlier_posts_are_stored(mon: Monitor) -> None:
    def failing() -> Iterator[Post]:
        yield from posts("space", 3)
        raise InputError("stream broke")

    with pytest.raises(InputError, match="stream broke"):
        mon.ingest(failing())
    assert mon.store.count() == 3


# -- skips ------------------------------------------------------------------------------------------------


def test_empty_and_oversized_posts_are_skipped_with_reasons(target: Target) -> None:
    store = target.open()
    emb = HashingEmbedder()
    items = [
        Post(text="", id="empty"),
        Post(text="  \n\t  ", id="blank"),
        Post(text="someone@example.com (Some One)", id="only-address"),  # empty after cleaning
        Post(text="x" * 101, id="huge"),
        Post(text="orbit " * 16, id="ok"),  # 96 characters
    ]
    report = ingest(store, emb, items, max_chars=100)
    assert report.read == 5 and report.added == 1
    assert report.skipped == 4
    assert report.skip_reasons == {"empty post": 3, "post longer than 100 characters": 1}
    assert ("huge", "post longer than 100 characters") in report.skip_examples
    assert store.count() == 1
    assert list(store.metadata_for([p.id for p in items if p.id])) == ["ok"]
    assert emb.texts_embedded == 1
    assert set(report.as_dict()["skip_reasons"]) == {"empty post", "post longer than 100 characters"}


def test_ctrl_c_reports_what_was_stored(mon: Monitor) -> None:
    from monitor.ingest import Interrupted

    def source() -> Iterator[Post]:
        yield Post(text="orbit rocket launch", category="space", id="first")
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted after storing 1 posts") as info:
        mon.ingest(source(), chunk_size=1)
    assert info.value.exit_code == 130
    assert mon.store.count() == 1


def test_api_rejects_items_that_are_not_posts(mon: Monitor) -> None:
    with pytest.raises(InputError, match=r"monitor\.Post"):
        mon.ingest(["just a string"])
    assert mon.store.count() == 0


def test_a_long_ingest_scores_against_a_baseline_rebuilt_meanwhile(based: Monitor, target: Target) -> None:
    """A live stream (``tail -f | monitor ingest -``) follows a nightly rebuild done by another client."""
    nightly = target.monitor(embedder=HashingEmbedder())

    def stream() -> Iterator[Post]:
        yield from posts("space", 3, prefix="early")
        nightly.build_baseline("alpha:0.1")  # v2, saved by another client while the ingest runs
        yield from posts("space", 3, prefix="late", seed=1)

    report = ingest(based.store, based.embedder, stream(), chunk_size=1, baseline_recheck=0.0)
    assert report.added == 6
    meta = all_meta(based.store)
    assert {meta[f"late/{i}"]["baseline_version"] for i in range(3)} == {2}  # scored by v2 on arrival
    assert all(meta[f"late/{i}"]["threshold"] is not None for i in range(3))


def test_a_rebuild_is_not_looked_for_more_often_than_asked(based: Monitor, target: Target) -> None:
    nightly = target.monitor(embedder=HashingEmbedder())

    def stream() -> Iterator[Post]:
        yield from posts("space", 2, prefix="early")
        nightly.build_baseline("alpha:0.1")
        yield from posts("space", 2, prefix="late", seed=1)

    ingest(based.store, based.embedder, stream(), chunk_size=1, baseline_recheck=3600.0)
    meta = all_meta(based.store)
    assert {meta[f"late/{i}"]["baseline_version"] for i in range(2)} == {1}  # within the hour: v1 kept
