"""Ingest: posts from a source are cleaned, embedded once, checked against the baseline and stored.

Idempotent: ids are stable (source id, else a content hash) and writes are upserts. A post whose
id is already stored with the same text is not re-embedded; with changed text it is re-embedded
and overwritten; with the same text under another category only its category and verdict change.
Posts flow in chunks fed by a reader thread, so a live stdin stream is scored as lines arrive.
"""

from __future__ import annotations

import fnmatch
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.baseline import MEMBER_KEY, Baseline, load_baseline
from monitor.chunks import live_chunks
from monitor.embedders.base import Embedder
from monitor.errors import InputError, MonitorError
from monitor.posts import MAX_POST_CHARS, Post, Skipped, cleaned_text, is_valid_unicode, text_digest
from monitor.preprocess import get_cleaner
from monitor.scoring import score
from monitor.store import ChromaStore

DEFAULT_CHUNK = 64
BASELINE_RECHECK = 30.0  # seconds: how often a long ingest looks for a newer baseline
DEFAULT_MAX_CHARS = MAX_POST_CHARS
MAX_SKIP_EXAMPLES = 20


@dataclass
class IngestReport:
    """What one ingest did; ``skip_reasons`` counts skipped records by reason."""

    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    refiled: int = 0
    duplicates_in_input: int = 0
    truncated: int = 0
    flagged: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    skip_reasons: Counter[str] = field(default_factory=Counter)
    skip_examples: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return sum(self.skip_reasons.values())

    @property
    def stored(self) -> int:
        return self.added + self.updated + self.refiled

    def skip(self, where: str, reason: str) -> None:
        self.skip_reasons[reason] += 1
        if len(self.skip_examples) < MAX_SKIP_EXAMPLES:
            self.skip_examples.append((where, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "added": self.added,
            "updated": self.updated,
            "refiled": self.refiled,
            "unchanged": self.unchanged,
            "duplicates_in_input": self.duplicates_in_input,
            "skipped": self.skipped,
            "skip_reasons": dict(self.skip_reasons),
            "skip_examples": [{"where": w, "reason": r} for w, r in self.skip_examples],
            "truncated": self.truncated,
            "flagged": self.flagged,
            "verdicts": dict(self.verdicts),
            "seconds": round(self.seconds, 2),
        }


class CategoryAssigner:
    """Files posts under a claimed category (e.g. off-topic posts arriving in a sci.* group).

    ``spec`` is a category name, a comma list, or a glob matched against the baseline's
    categories; with several choices each post gets one at random, seeded by its id so a
    re-run files it in the same place.
    """

    def __init__(self, spec: str, known: Sequence[str], seed: int = 0) -> None:
        choices: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if any(ch in part for ch in "*?["):
                matched = fnmatch.filter(known, part)
                if not matched:
                    raise InputError(
                        f"--as-category {part!r} matches no baseline category (have: {', '.join(known) or 'none'})"
                    )
                choices.extend(matched)
            elif known and part not in known:  # a typo would file every post where no baseline is
                raise InputError(
                    f"--as-category {part!r} is not a baseline category (have: {', '.join(known)})"
                )
            else:
                choices.append(part)
        if not choices:
            raise InputError("--as-category is empty")
        self.choices = sorted(set(choices))
        self.seed = seed

    def __call__(self, post_id: str) -> str:
        if len(self.choices) == 1:
            return self.choices[0]
        return random.Random(f"{self.seed}:{post_id}").choice(self.choices)


@dataclass
class _Prepared:
    id: str
    text: str
    category: str | None
    meta: dict[str, Any]


class Interrupted(MonitorError):
    """Ctrl-C during an ingest: what was stored stays stored; a re-run continues."""

    exit_code = 130

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        super().__init__(
            f"interrupted after storing {report.stored} posts ({report.unchanged} already there); "
            "run the same command again to continue"
        )


def ingest(
    store: ChromaStore,
    embedder: Embedder,
    source: Iterable[Post | Skipped],
    *,
    clean: str = "seed",
    as_category: str | None = None,
    seed: int = 0,
    source_name: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    max_chars: int = DEFAULT_MAX_CHARS,
    progress: Callable[[int], None] | None = None,
    on_results: Callable[[list[dict[str, Any]]], None] | None = None,
    baseline_recheck: float = BASELINE_RECHECK,
) -> IngestReport:
    """Read ``source``, embed new posts, score them against the current baseline, store them.

    A long ingest (a live stream) looks for a newer baseline — a nightly rebuild — at most every
    ``baseline_recheck`` seconds, between chunks, and scores what follows against it.
    """
    started = checked = time.monotonic()
    cleaner = get_cleaner(clean)
    store.check_stamp(embedder.stamp())
    baseline = _usable_baseline(store, embedder)
    assigner = (
        CategoryAssigner(as_category, baseline.detector.categories_ if baseline else [], seed)
        if as_category is not None
        else None
    )
    report = IngestReport()
    seen: set[str] = set()  # ids met earlier in this input: a repeat is counted; the last one wins
    try:
        for chunk in live_chunks(source, chunk_size, getattr(embedder, "chunk_linger", 0.0)):
            prepared = _prepare(chunk, cleaner, assigner, source_name, max_chars, report, seen)
            if prepared:
                if time.monotonic() - checked >= baseline_recheck:
                    checked = time.monotonic()
                    if _replaced(store, baseline):
                        baseline = _usable_baseline(store, embedder)
                _store_chunk(store, embedder, baseline, prepared, report, on_results)
            if progress:
                progress(len(chunk))
    except KeyboardInterrupt:
        raise Interrupted(report) from None
    report.seconds = time.monotonic() - started
    return report


def _usable_baseline(store: ChromaStore, embedder: Embedder) -> Baseline | None:
    """The current baseline, unless it was built from another embedder's vectors."""
    baseline = load_baseline(store)
    if baseline is not None and baseline.embedder and baseline.embedder != embedder.id:
        return None  # never score with centroids from another vector space
    return baseline


def _replaced(store: ChromaStore, baseline: Baseline | None) -> bool:
    """Whether the stored baseline is no longer ``baseline`` (one header read)."""
    header = store.baseline_header()
    if baseline is None:
        return header.get("version") is not None
    return (header.get("version"), str(header.get("build_id", ""))) != (baseline.version, baseline.build_id)


def _prepare(
    chunk: list[Post | Skipped],
    cleaner: Callable[[str], str],
    assigner: CategoryAssigner | None,
    source_name: str,
    max_chars: int,
    report: IngestReport,
    seen: set[str],
) -> list[_Prepared]:
    by_id: dict[str, _Prepared] = {}
    for item in chunk:
        report.read += 1
        if isinstance(item, Skipped):
            report.skip(item.where, item.reason)
            continue
        if not isinstance(item, Post):
            raise InputError(f"ingest takes monitor.Post items (or a path), got {type(item).__name__}")
        pid = item.stable_id()
        where = item.where or pid.encode("utf-8", "backslashreplace").decode()  # printable even if bad
        bad = next(
            (
                name
                for name, v in (("id", item.id), ("category", item.category))
                if v is not None and not is_valid_unicode(v)
            ),
            None,
        )
        text, problem = cleaned_text(item.text, cleaner, max_chars)
        if bad or problem:
            report.skip(where, f"{bad} is not valid Unicode (a lone surrogate)" if bad else str(problem))
            continue
        category = item.category.strip() if item.category and item.category.strip() else None
        meta: dict[str, Any] = dict(item.extra)
        if assigner is not None:
            if category is not None:
                meta["original_category"] = category
            category = assigner(pid)
        meta.update(
            {
                "category": category,
                "has_category": category is not None,
                "text_sha": text_digest(text),
                "chars": len(text),
                "source": source_name,
            }
        )
        if pid in by_id or pid in seen:
            report.duplicates_in_input += 1
        seen.add(pid)
        by_id[pid] = _Prepared(pid, text, category, meta)
    return list(by_id.values())


def _store_chunk(
    store: ChromaStore,
    embedder: Embedder,
    baseline: Baseline | None,
    posts: list[_Prepared],
    report: IngestReport,
    on_results: Callable[[list[dict[str, Any]]], None] | None,
) -> None:
    """Sort a chunk into new/changed (embed), re-filed (re-score) and unchanged posts; store them."""
    stored = store.metadata_for([p.id for p in posts])
    fresh: list[_Prepared] = []
    refile: list[_Prepared] = []
    for p in posts:
        old = stored.get(p.id)
        if old is not None and p.category is None and old.get("category") is not None:
            p = _keep_category(p, str(old["category"]))  # a record without one never un-files a post
        if old is None or old.get("text_sha") != p.meta["text_sha"]:
            fresh.append(p)
        elif old.get("category") != p.category:
            refile.append(p)
        else:
            report.unchanged += 1
    results = _embed_and_store(store, embedder, baseline, fresh, stored, report) if fresh else []
    if refile:
        results += _refile(store, baseline, refile)
        report.refiled += len(refile)
    for r in results:
        report.verdicts[r["verdict"]] += 1
        report.flagged += int(r["verdict"] == "outlier")
    if on_results and results:
        on_results(results)


def _keep_category(p: _Prepared, category: str) -> _Prepared:
    return _Prepared(p.id, p.text, category, {**p.meta, "category": category, "has_category": True})


def _embed_and_store(
    store: ChromaStore,
    embedder: Embedder,
    baseline: Baseline | None,
    posts: list[_Prepared],
    stored: dict[str, dict[str, Any]],
    report: IngestReport,
) -> list[dict[str, Any]]:
    """Embed new or changed posts once, score them on arrival, upsert them with their verdicts."""
    batch = embedder.encode([p.text for p in posts])
    verdicts = score(baseline, batch.vectors, [p.category for p in posts])
    now = datetime.now(UTC)
    stamp = {"ingested_at": now.isoformat(timespec="seconds"), "ingested_ts": now.timestamp()}
    metas = [
        {**p.meta, **v, "truncated": bool(cut), **stamp}
        for p, v, cut in zip(posts, verdicts, batch.truncated, strict=True)
    ]
    store.upsert([p.id for p in posts], batch.vectors, [p.text for p in posts], metas)
    # Chroma's upsert merges metadata: drop keys an overwritten post no longer has.
    stale = {p.id: _stale_keys(stored[p.id], m) for p, m in zip(posts, metas, strict=True) if p.id in stored}
    stale = {pid: keys for pid, keys in stale.items() if keys}
    if stale:
        store.update_metadata(list(stale), list(stale.values()))
    report.updated += sum(p.id in stored for p in posts)
    report.added += sum(p.id not in stored for p in posts)
    report.truncated += int(batch.truncated.sum())
    return [
        _result(p, v, "updated" if p.id in stored else "added") for p, v in zip(posts, verdicts, strict=True)
    ]


def _stale_keys(old: dict[str, Any], new: dict[str, Any]) -> dict[str, None]:
    """``None`` for each key the old metadata has and the new one does not (an update deletes them)."""
    kept = {k for k, v in new.items() if v is not None}
    return {k: None for k in old.keys() - kept}


def _refile(store: ChromaStore, baseline: Baseline | None, posts: list[_Prepared]) -> list[dict[str, Any]]:
    """Same text under another category: keep the stored vector, update category and verdict."""
    page = store.get([p.id for p in posts], vectors=True)
    row = {pid: i for i, pid in enumerate(page.ids)}
    vectors = page.vectors[[row[p.id] for p in posts]]
    verdicts = score(baseline, vectors, [p.category for p in posts])
    # a re-filed post leaves the baseline's reference posts (it must not join another category's)
    updates = [
        {
            **{k: p.meta.get(k) for k in ("category", "has_category", "original_category")},
            **v,
            MEMBER_KEY: None,
        }
        for p, v in zip(posts, verdicts, strict=True)
    ]
    store.update_metadata([p.id for p in posts], updates)
    return [_result(p, v, "refiled") for p, v in zip(posts, verdicts, strict=True)]


def _result(p: _Prepared, verdict: dict[str, Any], action: str) -> dict[str, Any]:
    return {
        "id": p.id,
        "action": action,
        "category": p.category,
        "verdict": verdict["verdict"],
        "score": _round(verdict["score"]),
        "threshold": _round(verdict["threshold"]),
        "p_value": _round(verdict["p_value"]),
        "looks_like": verdict["looks_like"],
        "distance": _round(verdict["distance"]),
        "nearest_category": verdict["nearest_category"],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
