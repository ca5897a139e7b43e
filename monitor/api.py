"""The friendly Python API: one :class:`Monitor` per store, with the CLI's verbs as methods.

>>> from monitor import Monitor
>>> m = Monitor("monitor-db")
>>> m.ingest("20news-bydate.tar.gz", categories=["sci.*"], per_category=150)
>>> m.build_baseline("quantile:0.95")
>>> m.outliers(category="sci.space", limit=10)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.baseline import Baseline, build_baseline, load_baseline
from monitor.detector import DEFAULT_MIN_POSTS, DEFAULT_POLICY
from monitor.embedders import DEFAULT_EMBEDDER, Embedder, make_embedder
from monitor.ingest import DEFAULT_CHUNK, IngestReport, ingest
from monitor.posts import Post, Skipped
from monitor.query import collection_stats, find_outliers, own_distances, parse_since, radius_sweep
from monitor.scoring import RescoreReport, rescore
from monitor.sources import open_source
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
        id_field: str = "id",
        text_field: str = "text",
        category_field: str = "category",
        clean: str = "seed",
        as_category: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        progress: Progress | None = None,
        on_results: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> IngestReport:
        """Ingest a path (archive, folder, JSONL, CSV, ``-`` for stdin) or an iterable of posts."""
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
            chunk_size=chunk_size,
            progress=progress,
            on_results=on_results,
        )

    def build_baseline(
        self,
        policy: str = DEFAULT_POLICY,
        min_posts: int = DEFAULT_MIN_POSTS,
        *,
        rescore_posts: bool = True,
        progress: Progress | None = None,
    ) -> tuple[Baseline, RescoreReport | None]:
        """Recompute centroids and radii from the store, persist them, and re-score stored posts."""
        baseline = build_baseline(self.store, policy, min_posts, progress=progress)
        report = rescore(self.store, baseline, progress=progress) if rescore_posts else None
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
    ) -> list[dict[str, Any]]:
        """Flagged posts, most distant first; ``since`` is a datetime, ISO text or an age (``7d``)."""
        when = parse_since(since) if isinstance(since, str) else since
        return find_outliers(
            self.store, category=category, since=when, min_distance=min_distance, limit=limit
        )

    def stats(self) -> dict[str, Any]:
        """Counts and outlier rates per category, baseline version and age."""
        return collection_stats(self.store)

    def radius_sweep(self, radii: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """How many stored posts lie beyond each radius (the notebook's table)."""
        return radius_sweep(own_distances(self.store), radii)

    def snapshot(self, out: str | Path, **options: Any) -> dict[str, Any]:
        """Write the t-SNE map, radius sweep, tables, HTML page and JSON summary into ``out``."""
        from monitor.snapshot import write_snapshot

        return write_snapshot(self.store, Path(out), **options)

    def nightly(self, out: str | Path, *, keep: int = 14, **options: Any) -> dict[str, Any]:
        """Recompute the baseline, re-score, and snapshot into ``out/<UTC time>/``, keeping the last ``keep``."""
        from monitor.nightly import run_nightly

        return run_nightly(self, Path(out), keep=keep, **options)
