"""Gemini embeddings through the official ``google-genai`` SDK (the seed notebook's model).

``GeminiEmbedder`` sends many texts per request (``client.models.embed_content``, which the SDK
posts to ``models/{model}:batchEmbedContents`` on the Gemini API), cuts texts longer than the
model's input window, spaces requests to a requests-per-minute limit, and retries 429/5xx/timeouts
with our own backoff policy (the SDK's retries are switched off, so retries are never doubled).
400/401/403/404 are not retried: they become one :class:`EmbedderError` line.

The API key is read by the SDK from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``; Vertex AI works
through the SDK's own variables (``GOOGLE_GENAI_USE_VERTEXAI``, ``GOOGLE_CLOUD_PROJECT``,
``GOOGLE_CLOUD_LOCATION``). The key is never logged, stored or put in a message: every message
that quotes the server is scrubbed of it.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from monitor.embedders.backoff import RetryPolicy, Transient
from monitor.embedders.base import Embedder, EmbeddingBatch, l2_normalise
from monitor.embedders.ratelimit import RateLimiter
from monitor.errors import EmbedderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-embedding-001"
DEFAULT_TASK_TYPE = "CLUSTERING"
DEFAULT_DIM = 3072
TASK_TYPES = (
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "RETRIEVAL_DOCUMENT",
    "RETRIEVAL_QUERY",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
MIN_DIM, MAX_DIM = 128, 3072
MAX_TEXTS_PER_REQUEST = 100  # batchEmbedContents accepts at most 100 requests per call
# gemini-embedding-001 reads 2,048 tokens. Tokens cannot be counted offline, so texts are cut by
# characters at a conservative ~3 characters per token (English averages ~4).
DEFAULT_MAX_CHARS = 6_000
DEFAULT_MAX_REQUEST_CHARS = 300_000  # keeps one request's JSON body well under a megabyte
DEFAULT_TIMEOUT = 60.0
CHUNK_LINGER = 0.5  # seconds a live stream's post may wait for others to share its request
RETRIABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def _secrets() -> list[str]:
    return [v for v in (os.environ.get(k, "") for k in KEY_VARIABLES) if len(v) >= 4]


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with any API key (given or from the environment) replaced by ``***``."""
    for secret in [*secrets, *_secrets()]:
        text = text.replace(secret, "***")
    return text


def _is_network_error(exc: BaseException) -> bool:
    """A timeout or connection failure of httpx/httpx2 (the SDK's transports), or the OS's own."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "TimeoutException"}) or isinstance(
        exc, (TimeoutError, ConnectionError)
    )


def _retry_after(exc: Any) -> float | None:
    """Seconds the server asked us to wait: the ``Retry-After`` header, else google.rpc.RetryInfo."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass  # not a date either: fall back to the body's retryDelay, else our backoff
    details = getattr(exc, "details", None)
    error = details.get("error", {}) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                pass
    return None


def _cut(text: str, max_chars: int) -> tuple[str, bool]:
    """Text cut to ``max_chars`` (at a space when one is near the end)."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    space = head.rfind(" ", max(0, max_chars - 200))
    return (head[:space] if space > 0 else head), True


class GeminiEmbedder(Embedder):
    """Gemini embeddings (default ``gemini-embedding-001``, ``CLUSTERING``, 3072 dimensions).

    ``dim`` is the output dimensionality (768, 1536 or 3072 are the recommended sizes); vectors
    are L2-normalised here whatever the API returns, so radii mean the same at every size.
    ``requests_per_minute`` spaces requests (free-tier quotas need it; ``None``: no limit).
    ``batch_size`` texts per request (at most 100), ``max_chars`` per text, ``max_request_chars``
    per request. ``retry`` is the backoff policy; ``base_url`` and ``timeout`` (seconds) go to the
    SDK's HTTP options. ``client`` replaces the SDK client (it must offer ``models.embed_content``).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        task_type: str = DEFAULT_TASK_TYPE,
        dim: int = DEFAULT_DIM,
        requests_per_minute: float | None = None,
        batch_size: int = MAX_TEXTS_PER_REQUEST,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_request_chars: int = DEFAULT_MAX_REQUEST_CHARS,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: Any = None,
    ) -> None:
        model = model.strip().removeprefix("models/")
        if not model:
            raise EmbedderError("gemini:<model> needs a model name, e.g. gemini:gemini-embedding-001")
        task_type = task_type.strip().upper()
        if task_type not in TASK_TYPES:
            raise EmbedderError(
                f"unknown Gemini task type {task_type!r} (choose one of {', '.join(TASK_TYPES)})"
            )
        if not MIN_DIM <= dim <= MAX_DIM:
            raise EmbedderError(
                f"Gemini output dimensionality must be {MIN_DIM}-{MAX_DIM} (768, 1536 or 3072 recommended), got {dim}"
            )
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise EmbedderError(f"requests per minute must be positive, got {requests_per_minute}")
        self.model = model
        self.task_type = task_type
        self.dim = dim
        self.id = f"gemini:{model}"
        self.batch_size = max(1, min(batch_size, MAX_TEXTS_PER_REQUEST))
        self.preferred_chunk = self.batch_size  # ingest reads this many posts per chunk: one full request
        self.chunk_linger = CHUNK_LINGER  # and waits this long for a chunk to fill (live streams)
        self.max_chars = max_chars
        self.max_request_chars = max(max_request_chars, max_chars)
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter(requests_per_minute)
        self.requests = 0  # HTTP requests sent, retries included
        self.texts_embedded = 0
        # the SDK client (and with it the API key) is needed only once something is sent: an ingest
        # of posts that are all stored already runs without a key
        self._client_obj = client
        self._client_settings = (base_url, timeout)
        self._config = _config(task_type, dim)

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            self._client_obj = _make_client(*self._client_settings)
        return self._client_obj

    def stamp(self) -> dict[str, str | int]:
        return {
            **super().stamp(),
            "embedding_model": self.model,
            "embedding_task": self.task_type,
        }

    def encode(self, texts: Sequence[str]) -> EmbeddingBatch:
        cut = [_cut(t, self.max_chars) for t in texts]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        truncated = np.array([c for _, c in cut], dtype=bool)
        for start, stop in self._requests([t for t, _ in cut]):
            batch = [t for t, _ in cut[start:stop]]
            vectors[start:stop] = self._embed_batch(batch)
            self.texts_embedded += len(batch)
        return EmbeddingBatch(l2_normalise(vectors), truncated)

    def _requests(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """Consecutive [start, stop) ranges within the per-request count and size caps."""
        start = 0
        while start < len(texts):
            stop, size = start, 0
            while stop < len(texts) and stop - start < self.batch_size:
                if stop > start and size + len(texts[stop]) > self.max_request_chars:
                    break
                size += len(texts[stop])
                stop += 1
            yield start, stop
            start = stop

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        client = self._client  # set up (key checked) before the rate limiter starts its clock

        def attempt() -> np.ndarray:
            self.limiter.acquire()
            self.requests += 1
            return self._send(client, texts)

        return self.retry.call(attempt, what=f"Gemini {self.model} request")

    def _send(self, client: Any, texts: list[str]) -> np.ndarray:
        try:
            response = client.models.embed_content(
                model=self.model, contents=texts, config=self._config
            )
        except Exception as exc:
            raise self._translate(exc) from None
        embeddings = list(getattr(response, "embeddings", None) or [])
        if len(embeddings) != len(texts):
            raise EmbedderError(
                f"Gemini {self.model} returned {len(embeddings)} embeddings for {len(texts)} texts"
            )
        rows = np.array([list(e.values or []) for e in embeddings], dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            width = rows.shape[1] if rows.ndim == 2 else "ragged"
            raise EmbedderError(
                f"Gemini {self.model} returned {width}-dimensional vectors, asked for {self.dim}"
            )
        if not np.isfinite(rows).all():
            raise EmbedderError(f"Gemini {self.model} returned non-finite numbers")
        return rows

    def _translate(self, exc: Exception) -> Exception:
        """An SDK/transport failure as :class:`Transient` (to retry) or one-line :class:`EmbedderError`."""
        code = getattr(exc, "code", None)
        if isinstance(code, int):
            status = getattr(exc, "status", None) or ""
            raw = str(getattr(exc, "message", None) or "").strip()
            message = redact(raw.splitlines()[0]) if raw else ""
            label = f"{code} {status}".strip()
            if code in RETRIABLE_CODES:
                return Transient(label, _retry_after(exc))
            return EmbedderError(self._explain(code, label, message))
        if _is_network_error(exc):
            return Transient(
                f"{type(exc).__name__} (no answer in time or connection failed)",
                advice="check the network (and GOOGLE_GEMINI_BASE_URL if set), then run the same command "
                "again: posts stored so far are kept",
            )
        first = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        return EmbedderError(f"Gemini {self.model} request failed: {type(exc).__name__}: {first}")

    def _explain(self, code: int, label: str, message: str) -> str:
        said = f" ({label}: {message})" if message else f" ({label})"
        lowered = message.lower()
        if code in (401, 403) or (code == 400 and "api key" in lowered):
            return f"Gemini API key rejected or not allowed to use {self.model}{said}"
        if code == 404:
            return f"Gemini model not found: {self.model}{said}"
        return f"Gemini {self.model} refused the request{said}"


def _config(task_type: str, dim: int) -> Any:
    from google.genai import types

    return types.EmbedContentConfig(task_type=task_type, output_dimensionality=dim)


def _make_client(base_url: str | None, timeout: float) -> Any:
    try:
        from google import genai
        from google.genai import types
    except ImportError as exc:  # pragma: no cover - google-genai is a dependency
        raise EmbedderError(
            f"--embedder gemini needs google-genai ({exc.name} is missing): pip install monitor"
        ) from None
    options = types.HttpOptions(
        base_url=base_url,
        timeout=int(timeout * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),  # our RetryPolicy is the one in control
    )
    try:
        return genai.Client(http_options=options)
    except Exception as exc:  # the SDK raises ValueError when no key or project is configured
        detail = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        if not any(os.environ.get(k) for k in KEY_VARIABLES):
            raise EmbedderError(
                "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY); for Vertex AI set "
                "GOOGLE_GENAI_USE_VERTEXAI=true, GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION"
            ) from None
        raise EmbedderError(f"cannot set up the Gemini client: {detail}") from None
