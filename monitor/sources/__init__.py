"""Where posts come from: a 20news-bydate archive or folder, a JSONL file or stream, or a CSV file.

:func:`open_source` picks the reader from ``format`` or, when not given, from the path's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from monitor.errors import InputError
from monitor.posts import Post, Skipped
from monitor.sources.newsgroups import NewsgroupArchive
from monitor.sources.records import STDIN, CsvSource, JsonlSource

FORMATS = ("20news", "jsonl", "csv")

_SUFFIXES = {
    ".tar.gz": "20news",
    ".tgz": "20news",
    ".tar": "20news",
    ".tar.bz2": "20news",
    ".tar.xz": "20news",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}


@runtime_checkable
class Source(Protocol):
    """Anything that yields posts (and skipped records) and can say what it reads."""

    @property
    def description(self) -> str: ...

    def __iter__(self) -> Iterator[Post | Skipped]: ...


def open_source(
    path: str,
    *,
    format: str | None = None,
    split: str = "train",
    categories: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    per_category: int | None = None,
    seed: int = 0,
    id_field: str | None = None,
    text_field: str = "text",
    category_field: str | None = None,
) -> Source:
    """The source for ``path`` (``-`` is stdin).

    ``split``, ``categories``, ``exclude``, ``per_category`` and ``seed`` apply to 20news only;
    ``id_field``, ``text_field`` and ``category_field`` to JSONL and CSV only. ``id_field`` and
    ``category_field`` default to ``id`` and ``category``, optional in the data; named, they are
    required (a record without them is skipped, a CSV header without them refused).
    """
    fmt = resolve_format(path, format)
    if fmt == "20news":
        return NewsgroupArchive(
            path,
            split=split,
            categories=categories,
            exclude=exclude,
            per_category=per_category,
            seed=seed,
        )
    reader = JsonlSource if fmt == "jsonl" else CsvSource
    return reader(path, id_field=id_field, text_field=text_field, category_field=category_field)


def resolve_format(path: str, format: str | None = None) -> str:
    """The format to read ``path`` with: ``format`` if given (checked), else detected from the name.

    Fails with one line for a path that does not exist (stdin ``-`` always does).
    """
    if format is not None and format not in FORMATS:
        raise InputError(f"unknown format {format!r} (choose {', '.join(FORMATS)})")
    if path != STDIN and not Path(path).exists():
        raise InputError(f"no such file or directory: {path}")
    return format or detect_format(path)


def detect_format(path: str) -> str:
    """The format implied by ``path``: stdin is JSONL, a folder is 20news, else the file extension."""
    if path == STDIN:
        return "jsonl"
    if Path(path).is_dir():
        return "20news"
    name = Path(path).name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(f"cannot tell the format of {path} from its name; use --format 20news|jsonl|csv")


__all__ = [
    "FORMATS",
    "CsvSource",
    "JsonlSource",
    "NewsgroupArchive",
    "Source",
    "detect_format",
    "open_source",
    "resolve_format",
]
