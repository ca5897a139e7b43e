"""The Chroma store: posts with their vectors and verdicts, and the persisted baseline.

Everything Chroma-specific lives here: opening the client (embedded path or server URL),
the collections, paging every read, batching every write, and the embedder stamp.
Facts this relies on (Chroma 1.5): no default embedding function, cosine space set at
creation, ``get`` over ~32k rows with metadatas fails (so we page), 5,461 rows per write
at most, metadata values are plain str/int/float/bool, and ``update`` with ``None`` deletes a key.
Over HTTP one request is capped at 40 MB, so writes are also split by estimated payload size, and
transient connection errors are retried (every write here is an idempotent upsert/update).
An embedded folder takes one writer process at a time (:mod:`monitor.locks`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import EmbedderMismatchError, StoreError
from monitor.locks import ProcessLock, describe, held_elsewhere, writer_lock

log = logging.getLogger(__name__)

DEFAULT_DB = "monitor-db"
DEFAULT_COLLECTION = "posts"
PAGE_SIZE = 2000
ID_LOOKUP_BATCH = 1000
STAMP_KEYS = ("embedder", "embedding_dim", "embedding_model", "embedding_task")  # the last two: remote APIs
#: One HTTP request may carry 40 MB (the server's default cap); stay well below it.
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
#: Attempts for a call that fails on a dropped connection (server restarting, network blip).
RETRIES = 4
RETRY_WAIT = 0.5  # seconds, doubled after each attempt

Metadata = dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of stored posts; ``vectors`` is float32 (n, dim) or None when not requested."""

    ids: list[str]
    metadatas: list[Metadata]
    vectors: np.ndarray | None = None
    documents: list[str] | None = None


def normalise_url(url: str) -> str:
    """``http(s)://HOST[:PORT]`` in canonical form (lower-case scheme and host, explicit port).

    Anything Chroma's client would silently drop — a path, a query, credentials — is refused, as
    are IPv6 literals (the client cannot build their URL) and bad ports.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    shown = url if "@" not in parts.netloc else url.replace(parts.netloc.rsplit("@", 1)[0] + "@", "***@")
    bad = f"bad Chroma URL {shown!r}: expected http://HOST:PORT or https://HOST:PORT"
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"{bad} (the port must be a number from 1 to 65535)") from None
    if scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(bad)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise StoreError(f"{bad} (no path or query: the server's API is at its root)")
    if parts.username or parts.password:
        raise StoreError(f"{bad} (credentials in the URL are not supported)")
    if ":" in parts.hostname:
        raise StoreError(f"{bad} (IPv6 addresses are not supported by the Chroma client; use a host name)")
    if port == 0:
        raise StoreError(f"{bad} (the port must be a number from 1 to 65535)")
    return f"{scheme}://{parts.hostname.lower()}:{port or (443 if scheme == 'https' else 8000)}"


def _client(db: str | Path | None, url: str | None) -> Any:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if url is not None:
        from urllib.parse import urlsplit

        parsed = urlsplit(url)  # normalised by ChromaStore.open
        for attempt in range(1, RETRIES + 1):
            try:
                return chromadb.HttpClient(
                    host=parsed.hostname,
                    port=parsed.port,
                    ssl=parsed.scheme == "https",
                    settings=settings,
                )
            except Exception as exc:  # ValueError "Could not connect to a Chroma server"
                if _first_line(exc).lstrip().startswith("<"):  # a web page: something else listens there
                    raise StoreError(
                        f"{url} answers, but not as a Chroma server (it sent a web page): check the port"
                    ) from exc
                if attempt == RETRIES:
                    hint = " (is it an http server? the URL says https)" if parsed.scheme == "https" else ""
                    raise StoreError(
                        f"cannot reach the Chroma server at {url} (tried {RETRIES} times){hint}: {_first_line(exc)}"
                    ) from exc
                time.sleep(RETRY_WAIT * 2 ** (attempt - 1))
    path = Path(db or DEFAULT_DB)
    if path.exists() and not path.is_dir():
        raise StoreError(f"--db {path} is a file, not a database folder")
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:
        if "readonly database" in str(exc):  # Chroma's sqlite opens read-write, even to read
            raise StoreError(
                f"cannot open the Chroma database at {path}: this user cannot write there, and Chroma "
                "needs write access to the folder even to read it"
            ) from exc
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _transient(exc: BaseException) -> bool:
    """A dropped or refused connection, worth retrying (httpx's transport errors)."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - chromadb depends on httpx
        return False
    return isinstance(exc, httpx.TransportError)


def row_bytes(dim: int, document: str | None, metadata: Mapping[str, Any] | None, pid: str = "") -> int:
    """Upper estimate of one row's share of an HTTP write: base64 float32 vector, text, metadata."""
    size = 64 + len(pid.encode()) * 2
    size += (dim * 4 * 4) // 3 + 8  # float32, base64-encoded
    if document:
        size += len(document.encode()) * 2  # JSON escapes at most double what matters here
    if metadata:
        size += len(json.dumps(metadata, default=str, ensure_ascii=False).encode()) * 2
    return size


def write_batches(
    n: int,
    max_rows: int,
    size_of: Any,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of ``n`` rows: at most ``max_rows`` and about ``max_bytes`` each."""
    start = 0
    while start < n:
        end, total = start, 0
        while end < n and end - start < max_rows:
            size = size_of(end)
            if end > start and total + size > max_bytes:
                break
            total += size
            end += 1
        yield start, end
        start = end


def _plain(value: Any) -> Any:
    """Metadata values as plain Python types (Chroma rejects numpy scalars)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def plain_metadata(meta: Mapping[str, Any], *, keep_none: bool = False) -> Metadata:
    return {k: _plain(v) for k, v in meta.items() if keep_none or v is not None}


def _stamp_of(stamp: Mapping[str, Any]) -> dict[str, Any]:
    return {k: stamp[k] for k in STAMP_KEYS if stamp.get(k) is not None}


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
        self.max_payload = MAX_PAYLOAD_BYTES
        self.retries = RETRIES if self.is_server else 1
        # an embedded folder: one writer process at a time, claimed by the first write
        self._lock: ProcessLock | None = (
            writer_lock(Path(self.uri), shown=self.location) if self.uri and not self.is_server else None
        )
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
        if url is not None:
            if not url.strip():
                raise StoreError("--chroma-url is empty: give http://HOST:PORT, or leave it out for --db")
            url = normalise_url(url)
            return cls(_client(None, url), collection, url, url)
        path = Path(db or DEFAULT_DB)
        return cls(_client(db, None), collection, str(path), str(path.resolve()))

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def claim_writer(self, command: str | None = None) -> None:
        """Take an embedded folder's single-writer lock (no-op on a server, or if held already).

        Raises :class:`~monitor.errors.LockedError` naming the holder if another process writes.
        Every write claims it; commands that write claim it first, before any work.
        """
        if self._lock is not None and not self._lock.held:
            if command:
                self._lock.command = command
            self._lock.acquire()

    def _writer_hint(self) -> str:
        """For an embedded read that failed while another process writes: say so."""
        if self._lock is None or self._lock.held:
            return ""
        info = held_elsewhere(self._lock.path)
        if info is None:
            return ""
        return f" (while {describe(info)} writes to it; nothing is damaged: run this again when it is done)"

    def close(self) -> None:
        """Release the writer lock (the process keeps no claim on the folder)."""
        if self._lock is not None:
            self._lock.release()

    # -- collections -------------------------------------------------------------------------

    def _get_or_create(self, name: str, space: str, metadata: Metadata | None = None) -> Any:
        def open_collection() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    configuration={"hnsw": {"space": space}},
                    metadata=metadata,
                )

        return self._call(f"open of collection {name!r}", open_collection)

    def require_collection(self) -> None:
        """Fail with a clear line if the posts collection does not exist (read-only commands)."""
        names = [getattr(c, "name", c) for c in self._call("listing", self.client.list_collections)]
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
        self.claim_writer()
        meta = self.collection_metadata()
        meta.update(plain_metadata(updates))
        self._call("write", self.posts.modify, metadata=meta)
        self._posts = None

    # -- embedder stamp ----------------------------------------------------------------------

    def stamp(self) -> dict[str, Any]:
        meta = self.collection_metadata()
        return {k: meta[k] for k in STAMP_KEYS if k in meta}

    def check_stamp(self, stamp: Mapping[str, Any]) -> None:
        """Stamp an empty collection with the embedder; refuse a different embedder later.

        An empty collection (new, or left by a failed first ingest) takes the new stamp.
        """
        wanted = _stamp_of(stamp)
        if self.count() == 0:
            if self.stamp() != wanted:
                meta = {k: v for k, v in self.collection_metadata().items() if k not in STAMP_KEYS}
                self.posts.modify(metadata={**meta, **plain_metadata(wanted)})
                self._posts = None
            return
        if not self.stamp():
            raise EmbedderMismatchError(
                f"collection {self.name!r} in {self.location} holds vectors of an unknown embedder; "
                "use a new --db or --collection"
            )
        self.require_stamp(stamp)

    def require_stamp(self, stamp: Mapping[str, Any]) -> None:
        """Refuse an embedder other than the one the stored vectors came from (only reads)."""
        wanted = _stamp_of(stamp)
        current = self.stamp()
        if current and current != wanted:
            raise EmbedderMismatchError(
                f"collection {self.name!r} in {self.location} was built with embedder "
                f"{_describe(current)}, not {_describe(wanted)}; their vectors cannot be "
                "mixed: use the same --embedder, or a new --db or --collection"
            )

    # -- reads -------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._call("read", self.posts.count))

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
        """Insert or overwrite posts, in batches Chroma accepts (row count and payload size)."""
        self.claim_writer()
        dim = int(vectors.shape[1]) if len(ids) else 0
        metas = [plain_metadata(m) for m in metadatas]

        def size(i: int) -> int:
            return row_bytes(dim, documents[i], metas[i], ids[i])

        for start, end in write_batches(len(ids), self.max_batch, size, self.max_payload):
            self._call(
                "write",
                self.posts.upsert,
                ids=list(ids[start:end]),
                embeddings=np.asarray(vectors[start:end], dtype=np.float32),
                documents=list(documents[start:end]),
                metadatas=metas[start:end],
            )

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Merge keys into stored metadata; a ``None`` value deletes that key."""
        self.claim_writer()
        metas = [plain_metadata(m, keep_none=True) for m in metadatas]

        def size(i: int) -> int:
            return row_bytes(0, None, metas[i], ids[i])

        for start, end in write_batches(len(ids), self.max_batch, size, self.max_payload):
            self._call("write", self.posts.update, ids=list(ids[start:end]), metadatas=metas[start:end])

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
        self.claim_writer()
        col = self.baseline_collection
        # Two builds racing on a server may both take this version: the build id keeps their
        # records apart, so the header (written last) always finds its own build's records.
        build = str(header.get("build_id", ""))
        ids = [f"v{version}/{build}/{c}" if build else f"v{version}/{c}" for c in categories]
        metas = [
            plain_metadata({**r, "version": version, "category": c, "build_id": build})
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

    def baseline_header(self) -> Metadata:
        """The current baseline's header (version, build id, policy, ...); {} before the first build.

        Read fresh every time: a Collection keeps the metadata it was fetched with, and another
        process (on a server) or another client may have saved a newer baseline since.
        """
        self._baseline = None
        return dict(self._call("read", lambda: self.baseline_collection.metadata) or {})

    def load_baseline(self) -> tuple[Metadata, list[str], np.ndarray, list[Metadata]] | None:
        """The current baseline: (header, categories, centroids, per-category records), or None.

        The header is read fresh (see :meth:`baseline_header`).
        """
        header = self.baseline_header()
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
        build = header.get("build_id")
        mine = [i for i, m in enumerate(metas) if build and m.get("build_id") == build]
        # records written before they carried a build id: the version's records are the build's
        order = sorted(mine or range(len(metas)), key=lambda i: metas[i]["category"])
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
        """Run one Chroma call; errors become one :class:`StoreError` line.

        On a server, a dropped or refused connection is retried (``self.retries`` attempts,
        waiting 0.5, 1, 2 s): every call made here is idempotent (get, count, upsert, update,
        modify, delete by id), so a request that did reach the server does no harm twice.
        """
        for attempt in range(1, self.retries + 1):
            try:
                return fn(**kwargs)
            except (KeyboardInterrupt, SystemExit, GeneratorExit, StoreError):
                raise
            except BaseException as exc:  # Chroma raises many types (even Rust panics); one line for the user
                if _transient(exc):
                    if attempt < self.retries:
                        log.info("Chroma %s: %s; retrying", what, _first_line(exc))
                        time.sleep(RETRY_WAIT * 2 ** (attempt - 1))
                        continue
                    if self.is_server:
                        raise StoreError(
                            f"cannot reach the Chroma server at {self.location} (Chroma {what}, "
                            f"tried {self.retries} times): {_first_line(exc)}"
                        ) from exc
                raise StoreError(
                    f"Chroma {what} failed on {self.location}: {_first_line(exc)}{self._writer_hint()}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _concat(pages: list[Page], vectors: bool, documents: bool) -> Page:
    ids = [i for p in pages for i in p.ids]
    metas = [m for p in pages for m in p.metadatas]
    vecs = None
    if vectors:
        parts = [p.vectors for p in pages if p.vectors is not None and len(p.vectors)]
        vecs = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    docs = [d for p in pages for d in (p.documents or [])] if documents else None
    return Page(ids=ids, metadatas=metas, vectors=vecs, documents=docs)
