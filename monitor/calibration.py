"""Thresholds that keep their promise: policies and conformal p-values over calibration scores.

A category's *calibration scores* are the leave-one-out scores of its baseline posts: each
post scored against the others, exactly as a new arrival is scored against all of them. New
normal posts are exchangeable with those, so the split-conformal p-value

    p(s) = (1 + #{calibration scores >= s}) / (n + 1)

is uniform for normal posts and "flag when p <= alpha" flags at most (and about) alpha of them.

Policies (``--policy``):

- ``alpha:A``    conformal: flag when the p-value is at most A (the default, ``alpha:0.05``);
- ``quantile:Q`` the Q-quantile of the *in-sample* scores (each post scored with itself in the
  reference set, as the seed notebook did) — biased low, kept for comparison;
- ``fixed:R``    one threshold for every category (the seed's ``0.58`` radius).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.errors import BaselineError

DEFAULT_POLICY = "alpha:0.05"
SKETCH_POINTS = 1001
"""Calibration sets larger than this are persisted as this many quantiles (p-values to ~0.001)."""


@dataclass(frozen=True)
class ThresholdPolicy:
    """How a category's threshold is derived: ``alpha``, ``quantile`` or ``fixed``."""

    kind: str
    value: float

    @classmethod
    def parse(cls, spec: str | ThresholdPolicy) -> ThresholdPolicy:
        if isinstance(spec, ThresholdPolicy):
            return spec
        kind, _, raw = str(spec).partition(":")
        usage = "use alpha:A (0 < A < 1), quantile:Q (0 < Q < 1) or fixed:R (R > 0)"
        try:
            value = float(raw)
        except ValueError:
            raise BaselineError(f"bad policy {spec!r}: {usage}") from None
        if not math.isfinite(value):
            raise BaselineError(f"bad policy {spec!r}: the number must be finite")
        if kind == "fixed" and value > 0:
            return cls("fixed", value)
        if kind in ("quantile", "alpha") and 0 < value < 1:
            return cls(kind, value)
        raise BaselineError(f"bad policy {spec!r}: {usage}")

    def threshold(self, calibration: Calibration, in_sample: np.ndarray | None = None) -> float:
        """The score above which a post is flagged (``inf``: too few posts to flag at this alpha)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "quantile":
            scores = in_sample if in_sample is not None and len(in_sample) else calibration.values
            return float(np.quantile(scores, self.value))
        return calibration.conformal_threshold(self.value)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass(frozen=True)
class Calibration:
    """A category's sorted leave-one-out scores (or, when persisted large, their quantiles).

    ``n`` is the number of calibration posts; ``values`` holds all n sorted scores when
    ``exact``, else ``SKETCH_POINTS`` evenly spaced quantiles of them.
    """

    values: np.ndarray
    n: int
    exact: bool = True

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> Calibration:
        values = np.sort(np.asarray(scores, dtype=np.float64))
        if not np.all(np.isfinite(values)):
            raise BaselineError("calibration scores must be finite")
        return cls(values, len(values), True)

    def sketch(self) -> Calibration:
        """At most ``SKETCH_POINTS`` values: itself if small, else its quantiles."""
        if not self.exact or self.n <= SKETCH_POINTS:
            return self
        return Calibration(np.quantile(self.values, np.linspace(0, 1, SKETCH_POINTS)), self.n, False)

    def p_values(self, scores: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
        """Conformal p-values of ``scores`` (higher score = more unusual = smaller p).

        ``members[i]``: score i is itself one of the calibration scores (a baseline post scored
        leave-one-out); it is then compared with the other n - 1 only.
        """
        s = np.asarray(scores, dtype=np.float64)
        if self.n == 0:
            return np.full(s.shape, np.nan)
        own = np.zeros(s.shape) if members is None else np.asarray(members, dtype=np.float64)
        if self.exact:
            # compared at float32, the precision Chroma keeps the calibration scores in: a baseline
            # post's recomputed score then equals its stored copy and counts itself, not a neighbour
            values = self.values.astype(np.float32)
            at_least = self.n - np.searchsorted(values, s.astype(np.float32), side="left")
        else:
            grid = np.linspace(0, 1, len(self.values))
            below = np.interp(s, self.values, grid, left=0.0, right=1.0)
            at_least = self.n * (1.0 - below)
        at_least = np.maximum(at_least, own)  # a baseline post's own score is among the n
        return np.clip((1.0 + at_least - own) / (self.n + 1.0 - own), 0.0, 1.0)

    def conformal_threshold(self, alpha: float) -> float:
        """Smallest t such that every score above t has p <= alpha (``inf`` if none can)."""
        k = math.floor(alpha * (self.n + 1))  # at most k-1 calibration scores may lie above a flag
        if k < 1 or self.n == 0:
            return math.inf
        if self.exact:
            return float(self.values[self.n - k])
        return float(np.quantile(self.values, 1.0 - k / self.n)) if self.n else math.inf
