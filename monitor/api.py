"""The friendly Python API: one :class:`Monitor` per store, with the CLI's verbs as methods.

>>> from monitor import Monitor
>>> m = Monitor("monitor-db")
>>> m.ingest("20news-bydate.tar.gz", categories=["sci.*"], per_category=150)
>>> m.build_baseline("alpha:0.05", score="knn")
>>> m.outliers(category="sci.space", limit=10)
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.baseline import Baseline, build_baseline, check_current, load_baseline
from monitor.calibration import DEFAULT_POLICY
from monitor.detector import DEFAULT_MIN_POSTS
from monitor.embedders import DEFAULT_EMBEDDER, Embedder, make_embedder
from monitor.errors import InputError
from monitor.evaluate import DEFAULT_SCORES, evaluate
from monitor.ingest import DEFAULT_CHUNK, IngestReport, ingest
from monitor.posts import Post, Skipped
from monitor.quality import RECIPE_KEY, labelled_arrivals, newsgroups_recipe, stored_vectors
from monitor.query import collection_stats, find_outliers, own_distances, parse_since, radius_sweep
from monitor.scores import DEFAULT_SCORE
from monitor.scoring import RescoreReport, rescore
from monitor.sources import NewsgroupArchive, open_source, resolve_format
from monitor.store import DEFAULT_COLLECTION, DEFAULT_DB, ChromaStore

Progress = Callable[[int], None]


class Monitor:
    """An outlier monitor over one Chroma collection.

    ``db`` is an embedded database folder (default ``./monitor-db``); ``url`` a Chroma server
    instead. ``embedder`` is a spec (``minilm``) or an :class:`Embedder`; it is loaded lazily,
    only by operations that embed.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        url: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        embedder: str | Embedder = DEFAULT_EMBEDDER,
        threads: int | None = None,
    ) -> None:
        self.store = ChromaStore.open(db or DEFAULT_DB, url=url, collection=collection)
        self._embedder_spec = embedder
        self._threads = threads
        self._embedder: Embedder | None = embedder if isinstance(embedder, Embedder) else None

    def close(self) -> None:
        """Release the embedded folder's writer lock, if this monitor wrote (see ``monitor.locks``)."""
        self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(str(self._embedder_spec), threads=self._threads)
        return self._embedder

    # -- verbs --------------------------------------------------------------------------------

    def ingest(
        self,
        source: str | os.PathLike[str] | Iterable[Post | Skipped],
        *,
        format: str | None = None,
        split: str = "train",
        categories: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        per_category: int | None = None,
        seed: int = 0,
        id_field: str | None = None,
        text_field: str = "text",
        category_field: str | None = None,
        clean: str = "seed",
        as_category: str | None = None,
        chunk_size: int | None = None,
        progress: Progress | None = None,
        on_results: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> IngestReport:
        """Ingest a path (archive, folder, JSONL, CSV, ``-`` for stdin) or an iterable of posts.

        ``chunk_size``: posts read, embedded and stored together (default: the embedder's
        ``preferred_chunk``, e.g. one full request for a remote API, else 64).
        """
        name = str(getattr(source, "description", "python"))
        if isinstance(source, (str, os.PathLike)):
            opened = open_source(
                os.fspath(source),
                format=format,
                split=split,
                categories=categories,
                exclude=exclude,
                per_category=per_category,
                seed=seed,
                id_field=id_field,
                text_field=text_field,
                category_field=category_field,
            )
            name, source = opened.description, opened
        return ingest(
            self.store,
            self.embedder,
            source,
            clean=clean,
            as_category=as_category,
            seed=seed,
            source_name=name,
            chunk_size=chunk_size or getattr(self.embedder, "preferred_chunk", None) or DEFAULT_CHUNK,
            progress=progress,
            on_results=on_results,
        )

    def build_baseline(
        self,
        policy: str = DEFAULT_POLICY,
        min_posts: int = DEFAULT_MIN_POSTS,
        *,
        score: str = DEFAULT_SCORE,
        robust: bool = False,
        rescore_posts: bool = True,
        progress: Progress | None = None,
    ) -> tuple[Baseline, RescoreReport | None]:
        """Recompute the per-category baseline from the store, persist it, and re-score stored posts.

        ``score``: ``knn`` (default), ``knn:K`` or ``centroid``; ``policy``: ``alpha:A`` (default),
        ``quantile:Q`` or ``fixed:R``; ``robust``: leave currently flagged posts out.
        """
        baseline = build_baseline(
            self.store, policy, min_posts, score=score, robust=robust, progress=progress
        )
        report = rescore(self.store, baseline, progress=progress) if rescore_posts else None
        check_current(self.store, baseline)  # another build meanwhile (server) would mix verdicts
        return baseline, report

    def baseline(self) -> Baseline | None:
        """The current persisted baseline (None before the first ``build_baseline``)."""
        return load_baseline(self.store)

    def outliers(
        self,
        *,
        category: str | None = None,
        since: str | datetime | None = None,
        min_distance: float | None = None,
        limit: int | None = None,
        alpha: float | None = None,
    ) -> list[dict[str, Any]]:
        """Flagged posts, most unusual first; ``since`` is a datetime, ISO text or an age (``7d``).

        ``alpha``: instead of the baseline's flags, every post whose stored p-value is <= alpha.
        """
        when = parse_since(since) if isinstance(since, str) else since
        return find_outliers(
            self.store, category=category, since=when, min_distance=min_distance, limit=limit, alpha=alpha
        )

    def stats(self) -> dict[str, Any]:
        """Counts and outlier rates per category, baseline version and age."""
        return collection_stats(self.store)

    def radius_sweep(self, radii: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """How many stored posts lie beyond each radius (the notebook's table)."""
        return radius_sweep(own_distances(self.store), radii)

    def evaluate(
        self,
        source: str | os.PathLike[str] | Iterable[Post | Skipped],
        *,
        truth_field: str = "anomaly",
        scores: Sequence[str] = DEFAULT_SCORES,
        policies: Sequence[str] | None = None,
        clean: str = "seed",
        per_category: bool = True,
        robust: bool = False,
        format: str | None = None,
        text_field: str = "text",
        category_field: str | None = None,
        progress: Progress | None = None,
    ) -> list[dict[str, Any]]:
        """Score labelled arrivals (JSONL/CSV with a truth field; not stored) against the stored
        categorised posts with each score x policy: ROC AUC, AP, realised flag rate, recall."""
        self.store.require_stamp(self.embedder.stamp())
        if isinstance(source, (str, os.PathLike)):
            source = open_source(
                os.fspath(source), format=format, text_field=text_field, category_field=category_field
            )
        arrivals = labelled_arrivals(
            source, self.embedder, truth_field=truth_field, clean=clean, progress=progress
        )
        X, y = stored_vectors(self.store)
        return evaluate(
            X, y, arrivals, scores=scores, policies=policies, per_category=per_category, robust=robust
        )

    def evaluate_newsgroups(
        self,
        archive: str | os.PathLike[str],
        *,
        in_topic: str = "sci.*",
        off_topic: int = 200,
        off_topic_pool: int = 25,
        seeds: Sequence[int] = (0,),
        scores: Sequence[str] = DEFAULT_SCORES,
        policies: Sequence[str] | None = None,
        robust: bool = False,
        clean: str = "seed",
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """The built-in 20 Newsgroups recipe. Stores (once) every ``in_topic`` post of the archive and
        ``off_topic_pool`` posts of each other group in this store — use a store of its own — then
        splits them in memory for each seed (see :func:`monitor.quality.newsgroups_recipe`)."""
        if resolve_format(os.fspath(archive), None) != "20news":
            raise InputError(f"--recipe needs a 20 Newsgroups archive or folder, not {os.fspath(archive)}")
        groups = NewsgroupArchive(archive, split="all").categories_found  # checked before any work
        topics = [g for g in groups if fnmatch.fnmatchcase(g, in_topic)]
        if len(topics) < 2 or len(topics) == len(groups):
            raise InputError(
                f"--in-topic {in_topic!r} matches {len(topics)} of the archive's {len(groups)} groups: "
                "the recipe needs at least two in-topic groups and some others"
            )
        stored = self.store.count()
        marker = self.store.collection_metadata().get(RECIPE_KEY) if stored else None
        if stored and marker is None:
            raise InputError(
                f"collection {self.store.name!r} in {self.store.location} already holds "
                f"{stored} posts that the recipe did not put there (it would re-file them): "
                "give the recipe a --db or --collection of its own"
            )
        if marker is None:
            self.store.set_collection_metadata({RECIPE_KEY: in_topic})
        self.ingest(archive, split="all", categories=[in_topic], clean=clean, progress=progress)
        self.ingest(
            archive,
            split="all",
            exclude=[in_topic],
            per_category=off_topic_pool,
            clean=clean,
            progress=progress,
        )
        X, y = stored_vectors(self.store)
        return newsgroups_recipe(
            X,
            y,
            in_topic=in_topic,
            off_topic=off_topic,
            seeds=seeds,
            scores=scores,
            policies=policies,
            robust=robust,
        )

    def snapshot(self, out: str | Path, **options: Any) -> dict[str, Any]:
        """Write the t-SNE map, radius sweep, tables, HTML page and JSON summary into ``out``."""
        from monitor.snapshot import write_snapshot

        return write_snapshot(self.store, Path(out), **options)

    def nightly(self, out: str | Path, *, keep: int = 14, **options: Any) -> dict[str, Any]:
        """Recompute the baseline, re-score, and snapshot into ``out/<UTC time>/``, keeping the last ``keep``."""
        from monitor.nightly import run_nightly

        return run_nightly(self, Path(out), keep=keep, **options)
