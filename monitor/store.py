"""The Chroma store: posts with their vectors and verdicts, and the persisted baseline.

Everything Chroma-specific lives here: opening the client (embedded path or server URL),
the collections, paging every read, batching every write, and the embedder stamp.
Facts this relies on (Chroma 1.5): no default embedding function, cosine space set at
creation, ``get`` over ~32k rows with metadatas fails (so we page), 5,461 rows per write
at most, metadata values are plain str/int/float/bool, and ``update`` with ``None`` deletes a key.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import EmbedderMismatchError, StoreError

log = logging.getLogger(__name__)

DEFAULT_DB = "monitor-db"
DEFAULT_COLLECTION = "posts"
PAGE_SIZE = 2000
ID_LOOKUP_BATCH = 1000
STAMP_KEYS = ("embedder", "embedding_dim", "embedding_model", "embedding_task")  # the last two: remote APIs

Metadata = dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of stored posts; ``vectors`` is float32 (n, dim) or None when not requested."""

    ids: list[str]
    metadatas: list[Metadata]
    vectors: np.ndarray | None = None
    documents: list[str] | None = None


def _client(db: str | Path | None, url: str | None) -> Any:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise StoreError(f"bad Chroma URL {url!r}: expected http://HOST:PORT")
        try:
            return chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            raise StoreError(f"cannot reach the Chroma server at {url}: {exc}") from exc
    path = Path(db or DEFAULT_DB)
    if path.exists() and not path.is_dir():
        raise StoreError(f"--db {path} is a file, not a database folder")
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:
        raise StoreError(f"cannot open the Chroma database at {path}: {exc}") from exc


BASELINE_SUFFIX = ".baseline"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,501}[a-zA-Z0-9]$")


def check_collection_name(name: str) -> None:
    """Chroma's naming rules, leaving room for the ``<name>.baseline`` collection beside it."""
    if name.endswith(BASELINE_SUFFIX):
        raise StoreError(
            f"collection name {name!r} is reserved: names ending in {BASELINE_SUFFIX} hold baselines"
        )
    if not _NAME.match(name):
        raise StoreError(
            f"bad collection name {name!r}: 3-503 characters of letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )


def _plain(value: Any) -> Any:
    """Metadata values as plain Python types (Chroma rejects numpy scalars)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def plain_metadata(meta: Mapping[str, Any], *, keep_none: bool = False) -> Metadata:
    return {k: _plain(v) for k, v in meta.items() if keep_none or v is not None}


def _describe(stamp: Mapping[str, Any]) -> str:
    """``gemini:gemini-embedding-001 (task CLUSTERING, 3072 dims)`` from a stamp."""
    task = f"task {stamp['embedding_task']}, " if stamp.get("embedding_task") else ""
    return f"{stamp.get('embedder')} ({task}{stamp.get('embedding_dim')} dims)"


class ChromaStore:
    """Posts collection plus its baseline collection in one Chroma database.

    Open with :meth:`open` (embedded folder, or a server URL). The posts collection uses
    cosine space and no embedding function: vectors always come from our embedder.
    """

    def __init__(
        self, client: Any, collection: str = DEFAULT_COLLECTION, location: str = "", uri: str = ""
    ) -> None:
        self.client = client
        self.name = collection
        self.location = location  # as the user gave it, for messages
        self.uri = uri or location  # absolute path or server URL: which store this is
        self._posts: Any = None
        self._baseline: Any = None
        try:
            self.max_batch = int(client.get_max_batch_size())
        except Exception:
            self.max_batch = 5000

    @classmethod
    def open(
        cls,
        db: str | Path | None = None,
        *,
        url: str | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> ChromaStore:
        """Open (creating if needed) the store at folder ``db`` or at server ``url``."""
        check_collection_name(collection)  # before the client creates anything on disk
        path = Path(db or DEFAULT_DB)
        return cls(_client(db, url), collection, url or str(path), url or str(path.resolve()))

    # -- collections -------------------------------------------------------------------------

    def _get_or_create(self, name: str, space: str, metadata: Metadata | None = None) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": space}},
                    metadata=metadata,
                )
        except Exception as exc:
            raise StoreError(f"cannot open collection {name!r} in {self.location}: {exc}") from exc

    def require_collection(self) -> None:
        """Fail with a clear line if the posts collection does not exist (read-only commands)."""
        try:
            names = [getattr(c, "name", c) for c in self.client.list_collections()]
        except Exception as exc:
            raise StoreError(f"cannot list collections in {self.location}: {exc}") from exc
        if self.name not in names:
            have = ", ".join(sorted(n for n in names if not n.endswith(BASELINE_SUFFIX))) or "none"
            raise StoreError(f"no collection {self.name!r} in {self.location} (collections: {have})")

    @property
    def posts(self) -> Any:
        if self._posts is None:
            self._posts = self._get_or_create(self.name, "cosine", {"created_by": "monitor"})
        return self._posts

    @property
    def baseline_collection(self) -> Any:
        # l2 space: centroids are stored exactly as computed (not unit vectors).
        if self._baseline is None:
            self._baseline = self._get_or_create(
                f"{self.name}{BASELINE_SUFFIX}", "l2", {"created_by": "monitor"}
            )
        return self._baseline

    def collection_metadata(self) -> Metadata:
        return dict(self.posts.metadata or {})

    def set_collection_metadata(self, updates: Mapping[str, Any]) -> None:
        meta = self.collection_metadata()
        meta.update(plain_metadata(updates))
        self.posts.modify(metadata=meta)
        self._posts = None

    # -- embedder stamp ----------------------------------------------------------------------

    def stamp(self) -> dict[str, Any]:
        meta = self.collection_metadata()
        return {k: meta[k] for k in STAMP_KEYS if k in meta}

    def check_stamp(self, stamp: Mapping[str, Any]) -> None:
        """Stamp an empty collection with the embedder; refuse a different embedder later.

        An empty collection (new, or left by a failed first ingest) takes the new stamp.
        """
        wanted = {k: stamp[k] for k in STAMP_KEYS if stamp.get(k) is not None}
        if self.count() == 0:
            if self.stamp() != wanted:
                meta = {k: v for k, v in self.collection_metadata().items() if k not in STAMP_KEYS}
                self.posts.modify(metadata={**meta, **plain_metadata(wanted)})
                self._posts = None
            return
        current = self.stamp()
        if not current:
            raise EmbedderMismatchError(
                f"collection {self.name!r} in {self.location} holds vectors of an unknown embedder; "
                "use a new --db or --collection"
            )
        if current != wanted:
            raise EmbedderMismatchError(
                f"collection {self.name!r} in {self.location} was built with embedder "
                f"{_describe(current)}, not {_describe(wanted)}; their vectors cannot be "
                "mixed: use the same --embedder, or a new --db or --collection"
            )

    # -- reads -------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.posts.count())

    def metadata_for(self, ids: Sequence[str]) -> dict[str, Metadata]:
        """Metadata of those ``ids`` that are stored (missing ids are simply absent)."""
        found: dict[str, Metadata] = {}
        for start in range(0, len(ids), ID_LOOKUP_BATCH):
            batch = list(ids[start : start + ID_LOOKUP_BATCH])
            result = self._call("read", self.posts.get, ids=batch, include=["metadatas"])
            for pid, meta in zip(result["ids"], result["metadatas"] or [], strict=False):
                found[pid] = dict(meta or {})
        return found

    def get(self, ids: Sequence[str], *, vectors: bool = True, documents: bool = False) -> Page:
        """Posts by id (in batches), in the order Chroma returns them."""
        pages = [
            self._page(
                self._call(
                    "read",
                    self.posts.get,
                    ids=list(ids[start : start + ID_LOOKUP_BATCH]),
                    include=self._include(vectors, documents),
                ),
                vectors,
                documents,
            )
            for start in range(0, len(ids), ID_LOOKUP_BATCH)
        ]
        return _concat(pages, vectors, documents)

    def pages(
        self,
        *,
        where: Mapping[str, Any] | None = None,
        vectors: bool = False,
        documents: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Page]:
        """Every stored post (matching ``where``), page by page: memory bounded by the page size."""
        offset = 0
        while True:
            result = self._call(
                "read",
                self.posts.get,
                where=dict(where) if where else None,
                limit=page_size,
                offset=offset,
                include=self._include(vectors, documents),
            )
            if not result["ids"]:
                return
            yield self._page(result, vectors, documents)
            if len(result["ids"]) < page_size:
                return
            offset += page_size

    @staticmethod
    def _include(vectors: bool, documents: bool) -> list[str]:
        include = ["metadatas"]
        if vectors:
            include.append("embeddings")
        if documents:
            include.append("documents")
        return include

    @staticmethod
    def _page(result: Mapping[str, Any], vectors: bool, documents: bool) -> Page:
        vecs = None
        if vectors:
            raw = result["embeddings"]
            vecs = np.asarray(raw, dtype=np.float32) if raw is not None and len(raw) else None
            if vecs is None:
                vecs = np.zeros((0, 0), dtype=np.float32)
        return Page(
            ids=list(result["ids"]),
            metadatas=[dict(m or {}) for m in (result["metadatas"] or [])],
            vectors=vecs,
            documents=list(result["documents"]) if documents and result["documents"] is not None else None,
        )

    # -- writes ------------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or overwrite posts, in batches Chroma accepts."""
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self._call(
                "write",
                self.posts.upsert,
                ids=list(ids[start:end]),
                embeddings=np.asarray(vectors[start:end], dtype=np.float32),
                documents=list(documents[start:end]),
                metadatas=[plain_metadata(m) for m in metadatas[start:end]],
            )

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Merge keys into stored metadata; a ``None`` value deletes that key."""
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self._call(
                "write",
                self.posts.update,
                ids=list(ids[start:end]),
                metadatas=[plain_metadata(m, keep_none=True) for m in metadatas[start:end]],
            )

    # -- baseline persistence ----------------------------------------------------------------

    def save_baseline(
        self,
        version: int,
        header: Mapping[str, Any],
        categories: Sequence[str],
        centroids: np.ndarray,
        records: Sequence[Mapping[str, Any]],
        keep_versions: int = 5,
    ) -> None:
        """Store one baseline version: a record per category (centroid as its vector).

        The header (version, policy, time) goes into the baseline collection's metadata
        last, so a crash mid-write leaves the previous version current.
        """
        col = self.baseline_collection
        ids = [f"v{version}/{c}" for c in categories]
        metas = [
            plain_metadata({**r, "version": version, "category": c})
            for c, r in zip(categories, records, strict=True)
        ]
        if ids:
            self._call(
                "write", col.upsert, ids=ids, embeddings=np.asarray(centroids, np.float32), metadatas=metas
            )
        self._call(
            "write",
            col.modify,
            metadata=plain_metadata({**header, "version": version, "created_by": "monitor"}),
        )
        self._baseline = None
        old = self._call(
            "read",
            self.baseline_collection.get,
            where={"version": {"$lt": version - keep_versions + 1}},
            include=[],
        )
        if old["ids"]:
            self._call("write", self.baseline_collection.delete, ids=old["ids"])

    def load_baseline(self) -> tuple[Metadata, list[str], np.ndarray, list[Metadata]] | None:
        """The current baseline: (header, categories, centroids, per-category records), or None."""
        header = dict(self.baseline_collection.metadata or {})
        version = header.get("version")
        if version is None:
            return None
        result = self._call(
            "read",
            self.baseline_collection.get,
            where={"version": int(version)},
            include=["embeddings", "metadatas"],
        )
        metas = [dict(m or {}) for m in result["metadatas"] or []]
        order = sorted(range(len(metas)), key=lambda i: metas[i]["category"])
        cats = [metas[i]["category"] for i in order]
        raw = result["embeddings"]
        vecs = (
            np.asarray(raw, dtype=np.float32)[order]
            if raw is not None and len(raw)
            else np.zeros((0, 0), np.float32)
        )
        return header, cats, vecs, [metas[i] for i in order]

    # -- errors ------------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # Chroma raises many types (even Rust panics); one line for the user
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"Chroma {what} failed on {self.location}: {message}") from exc


def _concat(pages: list[Page], vectors: bool, documents: bool) -> Page:
    ids = [i for p in pages for i in p.ids]
    metas = [m for p in pages for m in p.metadatas]
    vecs = None
    if vectors:
        parts = [p.vectors for p in pages if p.vectors is not None and len(p.vectors)]
        vecs = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    docs = [d for p in pages for d in (p.documents or [])] if documents else None
    return Page(ids=ids, metadatas=metas, vectors=vecs, documents=docs)
