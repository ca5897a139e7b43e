"""Embedders: texts to unit vectors. ``make_embedder("minilm")`` is the offline default."""

from __future__ import annotations

from monitor.embedders.base import Embedder, EmbeddingBatch, l2_normalise
from monitor.errors import EmbedderError

DEFAULT_EMBEDDER = "minilm"


def make_embedder(spec: str = DEFAULT_EMBEDDER, *, threads: int | None = None) -> Embedder:
    """Build an embedder from a short spec.

    - ``minilm``: all-MiniLM-L6-v2 int8 on onnxruntime (offline, 384 dims), the default;
      ``minilm:mean`` averages a long text's 256-token windows instead of keeping the first.
    - ``hashing`` or ``hashing:DIM``: deterministic bag-of-words hashing, for tests only.
    """
    name, _, arg = spec.partition(":")
    if name == "minilm":
        from monitor.embedders.minilm import OnnxMiniLM

        if arg not in ("", "first", "mean"):
            raise EmbedderError(f"bad embedder spec {spec!r}: use minilm or minilm:mean")
        return OnnxMiniLM(threads=threads, windows=arg or "first")
    if name == "hashing":
        from monitor.embedders.hashing import HashingEmbedder

        try:
            return HashingEmbedder(dim=int(arg) if arg else 64)
        except ValueError as exc:
            raise EmbedderError(f"bad embedder spec {spec!r}: hashing:DIM needs an integer") from exc
    raise EmbedderError(f"unknown embedder {spec!r} (choose minilm or hashing[:DIM])")


__all__ = ["DEFAULT_EMBEDDER", "Embedder", "EmbeddingBatch", "l2_normalise", "make_embedder"]
