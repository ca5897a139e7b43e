"""Progress bars on a terminal only; silence (or log lines) when stderr is piped."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

log = logging.getLogger("monitor")


def interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback: a bar on a terminal, a start/end log line otherwise."""
    if not interactive():
        log.info("%s…", label)
        count = 0

        def tally(n: int) -> None:
            nonlocal count
            count += n

        yield tally
        log.info("%s: %d done", label, count)
        return
    if total is None:  # unknown length (stdin): a running count
        count = 0

        def count_up(n: int) -> None:
            nonlocal count
            count += n
            click.echo(f"\r{label}: {count}", nl=False, err=True)

        yield count_up
        click.echo("", err=True)
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True) as bar:
        yield bar.update
