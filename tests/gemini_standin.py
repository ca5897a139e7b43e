"""A local stand-in for the Gemini API's embedding endpoint, for tests and the benchmark.

It answers ``POST /{version}/models/{model}:batchEmbedContents`` (what ``google-genai``'s
``client.models.embed_content`` calls on the Gemini API) and ``:embedContent`` the way the API
does: JSON in, ``{"embeddings": [{"values": [...]}]}`` out, errors as ``{"error": {code, message,
status}}``. Vectors are deterministic bag-of-words hashing vectors (texts sharing words are
close, so the monitor's outlier logic has structure to find); like the real model they are unit
length only at 3072 dimensions, so the client must normalise smaller ones itself.

Every request is checked (model, task type, dimensionality, number of texts, text size, API
key) and recorded. ``plan`` scripts the answers, one per request: ``"ok"``, ``"429"`` (with
``Retry-After: retry_after``), ``"500"``, ``"503"``, ``"slow"`` (answer after ``slow_seconds``),
``"400"``, ``"401"``, ``"403"``, ``"404"``; after the plan, ``default`` applies to every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_PATH = re.compile(
    r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^:/]+):(?P<method>batchEmbedContents|embedContent)$"
)
FULL_DIM = 3072
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def standin_vector(text: str, dim: int) -> np.ndarray:
    """The stand-in's embedding: signed word hashing, unit length at 3072 dims, not below."""
    vec = np.zeros(dim, dtype=np.float64)
    words = _WORD.findall(text.lower()) or ["<empty>"]
    for word in words:
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    vec /= np.linalg.norm(vec) or 1.0
    return vec if dim == FULL_DIM else vec * (0.5 + (len(words) % 7) / 4)  # like the API: not unit


@dataclass
class Seen:
    """One request as the stand-in received it."""

    path: str
    model: str
    texts: list[str]
    task_types: list[str | None]
    dims: list[int | None]
    api_key: str | None
    answered: int = 0
    at: float = 0.0


@dataclass
class StandIn:
    """The stand-in server; use as a context manager. ``url`` is the SDK's ``base_url``."""

    model: str = "gemini-embedding-001"
    task_type: str = "CLUSTERING"
    dim: int = FULL_DIM
    api_key: str | None = None  # when set, any other key gets the API's 400 API_KEY_INVALID
    max_texts: int = 100
    max_chars: int | None = None  # refuse (400) a text longer than this: the client must cut
    plan: list[str] = field(default_factory=list)
    default: str = "ok"
    retry_after: float = 0.05
    slow_seconds: float = 1.0
    requests: list[Seen] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plan: deque[str] = deque(self.plan)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> StandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *answers: str, default: str | None = None) -> None:
        """Queue answers for the next requests (and optionally change the default after them)."""
        with self._lock:
            self._plan.extend(answers)
            if default is not None:
                self.default = default

    # -- what it saw -------------------------------------------------------------------------

    @property
    def texts_seen(self) -> list[str]:
        """Texts of requests answered with vectors (200)."""
        return [t for r in self.requests if r.answered == 200 for t in r.texts]

    def answered(self, code: int) -> int:
        return sum(r.answered == code for r in self.requests)

    # -- answering ---------------------------------------------------------------------------

    def _answer(
        self, path: str, body: dict[str, Any], key: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        match = _PATH.match(path)
        items = body.get("requests") if match and match["method"] == "batchEmbedContents" else [body]
        items = items if isinstance(items, list) else []
        texts = ["".join(p.get("text", "") for p in (i.get("content") or {}).get("parts", [])) for i in items]
        seen = Seen(
            path=path,
            model=match["model"] if match else "",
            texts=texts,
            task_types=[i.get("taskType") for i in items],
            dims=[i.get("outputDimensionality") for i in items],
            api_key=key,
            at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(seen)
            action = self._plan.popleft() if self._plan else self.default
        code, payload, headers = self._respond(action, match, items, texts, key)
        seen.answered = code
        return code, payload, headers

    def _respond(
        self, action: str, match: re.Match[str] | None, items: list[Any], texts: list[str], key: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if match is None:
            return _error(404, "unknown method")
        if self.api_key is not None and key != self.api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        if action == "slow":
            time.sleep(self.slow_seconds)
        elif action == "429-body":  # no header: the wait only in google.rpc.RetryInfo, as the API sends it
            retry_info = {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{self.retry_after:g}s",
            }
            return _error(429, "Quota exceeded.", details=[retry_info])
        elif action == "429":
            return _error(
                429,
                "Resource has been exhausted (e.g. check quota).",
                {"Retry-After": f"{self.retry_after:g}"},
            )
        elif action != "ok":
            code = int(action)
            messages = {
                403: "Method doesn't allow unregistered callers. Please use an API Key.",
                404: f"models/{match['model']} is not found for API version v1.",
            }
            return _error(code, messages.get(code, "Internal error encountered."))
        problem = self._check(match, items, texts)
        if problem:
            self.violations.append(problem)
            return _error(400, problem)
        dim = items[0].get("outputDimensionality") or FULL_DIM
        embeddings = [{"values": [round(float(x), 7) for x in standin_vector(t, dim)]} for t in texts]
        return (
            200,
            {"embeddings": embeddings}
            if match["method"] == "batchEmbedContents"
            else {"embedding": embeddings[0]},
            {},
        )

    def _check(self, match: re.Match[str], items: list[Any], texts: list[str]) -> str | None:
        if match["model"] != self.model:
            return f"model {match['model']!r}, expected {self.model!r}"
        if not items:
            return "no requests"
        if len(items) > self.max_texts:
            return f"{len(items)} requests in one batch, at most {self.max_texts} allowed"
        for item, text in zip(items, texts, strict=True):
            if match["method"] == "batchEmbedContents" and item.get("model") != f"models/{self.model}":
                return f"request model {item.get('model')!r} does not match the URL's"
            if item.get("taskType") != self.task_type:
                return f"taskType {item.get('taskType')!r}, expected {self.task_type!r}"
            if item.get("outputDimensionality") != self.dim:
                return f"outputDimensionality {item.get('outputDimensionality')!r}, expected {self.dim}"
            if not text.strip():
                return "empty text"
            if self.max_chars is not None and len(text) > self.max_chars:
                return f"text of {len(text)} characters, at most {self.max_chars}"
        return None


def _error(
    code: int, message: str, headers: dict[str, str] | None = None, details: list[Any] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {"code": code, "message": message, "status": STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return code, {"error": error}, headers or {}


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                body = {}
            code, payload, headers = standin._answer(self.path, body, self.headers.get("x-goog-api-key"))
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler
