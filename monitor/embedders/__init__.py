"""Embedders: texts to unit vectors. ``make_embedder("minilm")`` is the offline default."""

from __future__ import annotations

from monitor.embedders.base import Embedder, EmbeddingBatch, l2_normalise
from monitor.errors import EmbedderError

DEFAULT_EMBEDDER = "minilm"


def make_embedder(
    spec: str = DEFAULT_EMBEDDER,
    *,
    threads: int | None = None,
    task_type: str | None = None,
    dim: int | None = None,
    requests_per_minute: float | None = None,
    texts_per_request: int | None = None,
) -> Embedder:
    """Build an embedder from a short spec.

    - ``minilm``: all-MiniLM-L6-v2 int8 on onnxruntime (offline, 384 dims), the default;
      ``minilm:mean`` averages a long text's 256-token windows instead of keeping the first.
    - ``gemini`` or ``gemini:MODEL``: Gemini embeddings through google-genai (needs an API key);
      ``task_type`` (CLUSTERING), ``dim`` (3072), ``requests_per_minute`` (no limit) and
      ``texts_per_request`` (100) apply to it only.
    - ``hashing`` or ``hashing:DIM``: deterministic bag-of-words hashing, for tests only.
    """
    name, _, arg = spec.partition(":")
    gemini_options = {
        "task_type": task_type,
        "dim": dim,
        "requests_per_minute": requests_per_minute,
        "batch_size": texts_per_request,
    }
    if name == "gemini":
        from monitor.embedders.gemini import DEFAULT_MODEL, GeminiEmbedder

        return GeminiEmbedder(
            arg or DEFAULT_MODEL, **{k: v for k, v in gemini_options.items() if v is not None}
        )
    names = {"dim": "dimensions", "batch_size": "texts per request"}
    given = [names.get(k, k.replace("_", " ")) for k, v in gemini_options.items() if v is not None]
    if given:
        raise EmbedderError(f"{', '.join(given)}: only for --embedder gemini, not {spec!r}")
    if name == "minilm":
        from monitor.embedders.minilm import OnnxMiniLM

        if arg not in ("", "first", "mean"):
            raise EmbedderError(f"bad embedder spec {spec!r}: use minilm or minilm:mean")
        return OnnxMiniLM(threads=threads, windows=arg or "first")
    if name == "hashing":
        from monitor.embedders.hashing import HashingEmbedder

        if arg and not (arg.isdigit() and int(arg) >= 1):
            raise EmbedderError(f"bad embedder spec {spec!r}: hashing:DIM needs a whole number of at least 1")
        return HashingEmbedder(dim=int(arg) if arg else 64)
    raise EmbedderError(f"unknown embedder {spec!r} (choose minilm, gemini[:MODEL] or hashing[:DIM])")


__all__ = ["DEFAULT_EMBEDDER", "Embedder", "EmbeddingBatch", "l2_normalise", "make_embedder"]
