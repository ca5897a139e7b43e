"""Group a stream into chunks without waiting for a full chunk when the input is slow.

A reader thread pulls from the source; each chunk takes whatever has arrived (at least one
item, at most ``size``). From a file the chunks are full; from a live stdin stream a post is
processed as soon as its line arrives. Errors raised by the source surface in the caller.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def live_chunks(items: Iterable[T], size: int, linger: float = 0.0) -> Iterator[list[T]]:
    """Yield lists of 1..``size`` items in order, as soon as items are available.

    ``linger``: after a chunk's first item, wait up to this many seconds for it to fill (a remote
    embedding API then gets full requests even when the reader is momentarily behind).
    """
    size = max(1, size)
    q: queue.Queue[object] = queue.Queue(maxsize=size * 4)
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as exc:  # re-raised in the consumer
            q.put(_Failure(exc))
        finally:
            q.put(_DONE)

    threading.Thread(target=pump, name="monitor-reader", daemon=True).start()
    try:
        done = False
        failure: BaseException | None = None
        while not done:
            chunk: list[T] = []
            item = q.get()
            deadline = time.monotonic() + linger
            while True:
                if item is _DONE:
                    done = True
                    break
                if isinstance(item, _Failure):
                    failure, done = item.error, True
                    break
                chunk.append(item)  # type: ignore[arg-type]
                if len(chunk) >= size:
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = q.get(timeout=remaining) if remaining > 0 else q.get_nowait()
                except queue.Empty:
                    break
            if chunk:
                yield chunk
        if failure is not None:
            raise failure  # after the items read before it were processed
    finally:
        stop.set()
        while True:  # unblock the reader if it waits on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                break
