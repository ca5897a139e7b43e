"""The embedder interface: texts in, unit vectors out.

Every embedder has an ``id`` (stamped on the Chroma collection so that vectors from
different models are never mixed) and a fixed ``dim``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EmbeddingBatch:
    """Vectors for a batch of texts, row i for text i, plus which texts were cut to fit the model."""

    vectors: np.ndarray  # (n, dim) float32, rows L2-normalised
    truncated: np.ndarray  # (n,) bool


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    id: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed ``texts``; rows in input order."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` and return just the (n, dim) float32 array."""
        return self.encode(texts).vectors

    def stamp(self) -> dict[str, str | int]:
        """What identifies this embedder's vector space; stored on the collection."""
        return {"embedder": self.id, "embedding_dim": self.dim}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim})"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
