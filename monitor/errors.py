"""One exception family for everything the monitor reports to a user.

The CLI turns any :class:`MonitorError` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code: int = 1


class InputError(MonitorError):
    """A source that cannot be read at all (missing, empty, binary, unknown format)."""


class EmbedderError(MonitorError):
    """The embedding model could not be loaded or failed."""


class StoreError(MonitorError):
    """The Chroma store refused or failed an operation."""


class EmbedderMismatchError(StoreError):
    """A collection built with one embedder was opened with another."""


class BaselineError(MonitorError):
    """No usable baseline (none built yet, or no category has enough posts)."""


class LockedError(StoreError):
    """Another process holds the lock (an embedded database's writer, or a nightly run).

    Exit code 75 (EX_TEMPFAIL): try again later; a cron job can tell it from a real failure.
    """

    exit_code = 75
