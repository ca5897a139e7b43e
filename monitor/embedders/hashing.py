"""A tiny deterministic embedder for tests and dry runs (no model, no quality).

Words are hashed into signed buckets (the "hashing trick"), so texts sharing words get
similar vectors. Use it where embedding quality is irrelevant; never for real monitoring.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from monitor.embedders.base import Embedder, EmbeddingBatch, l2_normalise

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder(Embedder):
    """Bag-of-words hashed into ``dim`` buckets; ``max_words`` plays the model's window."""

    def __init__(self, dim: int = 64, max_words: int = 256) -> None:
        self.dim = dim
        self.max_words = max_words
        self.id = f"hashing-{dim}"
        self.calls = 0
        self.texts_embedded = 0

    def encode(self, texts: Sequence[str]) -> EmbeddingBatch:
        self.calls += 1
        self.texts_embedded += len(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        truncated = np.zeros(len(texts), dtype=bool)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            truncated[row] = len(words) > self.max_words
            for word in words[: self.max_words]:
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                vectors[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not words:
                vectors[row, 0] = 1.0
        return EmbeddingBatch(l2_normalise(vectors), truncated)
