"""A client-side request-rate limit: requests are spaced at least ``60 / per_minute`` seconds apart.

Spacing (rather than bursts per window) keeps a free-tier quota from ever being hit by a burst.
``clock`` and ``sleep`` are injectable for tests; ``waits`` records every wait taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``per_minute`` request starts per minute (``None`` or 0: no limit)."""

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute is not None and per_minute < 0:
            raise ValueError("requests per minute must be positive")
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.clock = clock
        self.sleep = sleep
        self.waits: list[float] = []
        self._next: float | None = None
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until the next request may start; return how long that took."""
        with self._lock:
            now = self.clock()
            wait = 0.0 if self._next is None else max(0.0, self._next - now)
            if wait > 0:
                self.waits.append(wait)
                self.sleep(wait)
            start = now if self._next is None else max(now, self._next)
            self._next = start + self.interval
            return wait
