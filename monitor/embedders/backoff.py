"""Retry with exponential backoff and jitter, for calls to a remote embedding API.

The caller turns a failure it considers transient (429, 5xx, a timeout) into :class:`Transient`,
optionally with the server's ``Retry-After``; anything else propagates at once. Waits grow as
``base_delay * 2**k`` (capped at ``max_delay``), with "equal jitter" (half fixed, half random), never
shorter than what the server asked for, and the total wait is bounded by ``max_total_wait``.
``sleep`` and ``rng`` are injectable so tests run fast and can assert on the recorded ``waits``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from monitor.errors import EmbedderError

log = logging.getLogger(__name__)
T = TypeVar("T")


RETRY_ADVICE = "try again later or lower --requests-per-minute"


class Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested wait in seconds."""

    def __init__(
        self, reason: str, retry_after: float | None = None, advice: str = RETRY_ADVICE
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.advice = advice  # what to tell the user if it never succeeds


class RetriesExhausted(EmbedderError):
    """Still failing after the allowed attempts or the allowed total wait."""


@dataclass
class RetryPolicy:
    """How often and how long to retry a transient failure.

    ``max_attempts`` counts the first try. ``waits`` records every wait taken (seconds).
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    waits: list[float] = field(default_factory=list)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Wait before retry number ``retry`` (1 = the first retry)."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        jittered = backoff / 2 + self.rng.uniform(0, backoff / 2)
        return max(jittered, retry_after) if retry_after is not None else jittered

    def call(self, fn: Callable[[], T], what: str = "request") -> T:
        """Run ``fn``; retry it on :class:`Transient` within the attempt and wait budgets."""
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except Transient as exc:
                if attempt == self.max_attempts:
                    raise RetriesExhausted(
                        f"{what} failed {attempt} times (last: {exc.reason}); {exc.advice}"
                    ) from None
                wait = self.delay(attempt, exc.retry_after)
                if waited + wait > self.max_total_wait:
                    raise RetriesExhausted(
                        f"{what} still failing ({exc.reason}) after {attempt} attempts and {waited:.0f}s "
                        f"of waiting; the next wait ({wait:.0f}s) would pass the {self.max_total_wait:.0f}s "
                        f"limit: {exc.advice}"
                    ) from None
                log.warning(
                    "%s: %s; retry %d/%d in %.1fs", what, exc.reason, attempt, self.max_attempts - 1, wait
                )
                self.waits.append(wait)
                self.sleep(wait)
                waited += wait
        raise AssertionError("unreachable")  # pragma: no cover
