"""Process locks: one writer per embedded Chroma folder, one nightly run per snapshot folder.

A lock is ``fcntl.flock`` on a file, so the kernel releases it when the holding process dies
(even by SIGKILL): a stale lock never blocks. The file also records who holds it (pid, host,
command, start time) for the message the next process gets. Within one process a lock is
shared: opening the same database twice does not lock the process out of its own folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.errors import LockedError, StoreError

WRITER_LOCK = "monitor.lock"

_held: dict[str, tuple[int, int]] = {}  # resolved path -> (fd, holders in this process)
_guard = threading.Lock()


def current_command() -> str:
    """This process's command line, shortened for a message."""
    argv = list(sys.argv)
    if argv:
        argv[0] = Path(argv[0]).name
    text = shlex.join(argv) or "python"
    return text if len(text) <= 200 else text[:199] + "…"


def holder(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder (empty if unreadable)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}) since {info.get('started_at')}"
    )


def held_elsewhere(path: Path) -> dict[str, Any] | None:
    """The holder of the lock at ``path`` if another process holds it, else None."""
    if str(Path(path).resolve()) in _held or not Path(path).is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder(Path(path)) or {"pid": "?"}
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return None


class ProcessLock:
    """An exclusive, non-blocking lock on ``path``; re-entrant within one process.

    ``busy`` is the message tail when another process holds it.
    """

    def __init__(self, path: Path, *, what: str, busy: str, command: str | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.busy = busy
        self.command = command
        self.held = False

    def acquire(self) -> None:
        if self.held:
            return
        key = str(self.path.resolve())
        with _guard:
            if key in _held:
                fd, n = _held[key]
                _held[key] = (fd, n + 1)
                self.held = True
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot take the lock {self.path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(
                    f"{self.what} is in use by {describe(holder(self.path))}; {self.busy}"
                ) from None
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command or current_command(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            _held[key] = (fd, 1)
            self.held = True

    def release(self) -> None:
        if not self.held:
            return
        key = str(self.path.resolve())
        with _guard:
            fd, n = _held.get(key, (-1, 0))
            if n > 1:
                _held[key] = (fd, n - 1)
            elif fd >= 0:
                del _held[key]
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # no holder any more (the next one writes its own)
                os.close(fd)  # closing the descriptor releases the flock
        self.held = False

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def writer_lock(db: Path, command: str | None = None, shown: str | None = None) -> ProcessLock:
    """The single-writer lock of an embedded database folder (``shown``: its name in messages)."""
    return ProcessLock(
        Path(db) / WRITER_LOCK,
        what=f"the embedded database {shown or db}",
        busy=(
            "an embedded database takes one writer at a time: wait for it to finish, "
            "or use a Chroma server (--chroma-url) to run several writers"
        ),
        command=command,
    )
