"""JSONL and CSV sources: one post per line (JSONL) or per row (CSV), from a file or from stdin (``-``).

A whole input that cannot be used (missing, a directory, unreadable, empty, binary) raises
:class:`InputError` when the source is created; a single bad record is yielded as :class:`Skipped`.
Stdin is read lazily, record by record, so a live stream (``tail -f x.jsonl | monitor ingest -``) works;
its emptiness or binary content can only be noticed while reading.

Text is UTF-8 (a leading byte-order mark is ignored). Field values: ``id`` is optional (numbers become
strings); ``category`` is optional (non-strings become strings); every other top-level scalar field goes
into ``Post.extra`` as ``src_<name>``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from monitor.errors import InputError
from monitor.posts import MetaValue, Post, Skipped, is_valid_unicode

STDIN = "-"
_SNIFF_BYTES = 8192
_BINARY_MAGIC = (b"\x1f\x8b", b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
DEFAULT_ID_FIELD = "id"
DEFAULT_CATEGORY_FIELD = "category"


class _RecordSource:
    """What JSONL and CSV share: the path, the field names, the whole-input checks."""

    kind = "record"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        id_field: str | None = None,
        text_field: str = "text",
        category_field: str | None = None,
    ) -> None:
        self._path = str(path)
        # a field named by the caller must be there (a typo must not turn every id into a content
        # hash, or leave every post without its category); the defaults are optional
        self._id_required, self._category_required = id_field is not None, category_field is not None
        self._id_field = id_field or DEFAULT_ID_FIELD
        self._text_field = text_field
        self._category_field = category_field or DEFAULT_CATEGORY_FIELD
        if self._id_field in (text_field, self._category_field) or text_field == self._category_field:
            raise InputError(
                f"the id, text and category fields must differ (got {self._id_field!r}, "
                f"{text_field!r}, {self._category_field!r})"
            )
        self._is_stdin = self._path == STDIN
        self.name = "stdin" if self._is_stdin else self._path
        if not self._is_stdin:
            _check_file(Path(self._path), self.kind)

    @property
    def description(self) -> str:
        where = "stdin" if self._is_stdin else self._path
        return f"{self.kind} records from {where} (text field {self._text_field!r})"

    def _lines(self) -> Iterator[bytes]:
        """Raw lines (line ending kept, BOM removed), each as soon as it arrives."""
        if self._is_stdin:
            yield from self._checked(_stdin_lines())
            return
        try:
            f = open(self._path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise InputError(f"cannot read {self._path}: {e.strerror or e}") from None
        with f:
            yield from self._checked(f)

    def _checked(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """Drop a BOM from the first line; for stdin (never sniffed up front) reject binary there."""
        it = iter(lines)
        first = next(it, None)
        if first is None:
            return
        if self._is_stdin and _looks_binary(first):
            raise InputError(f"stdin looks binary, not {self.kind} text")
        yield first.removeprefix(codecs.BOM_UTF8)
        yield from it

    def _post(self, record: dict[str, Any], where: str) -> Post | Skipped:
        """A post from one record's fields (JSON values, or strings for CSV)."""
        if self._text_field not in record:
            return Skipped(where=where, reason=f"no {self._text_field!r} field")
        text = record[self._text_field]
        if not isinstance(text, str):
            return Skipped(where=where, reason=f"{self._text_field!r} is not a string")
        raw_id = record.get(self._id_field)
        if self._id_required and (raw_id is None or raw_id == ""):
            return Skipped(where=where, reason=f"no {self._id_field!r} field (--id-field)")
        if self._category_required and self._category_field not in record:
            return Skipped(where=where, reason=f"no {self._category_field!r} field (--category-field)")
        if raw_id is not None and not isinstance(raw_id, str | int | float):
            return Skipped(where=where, reason=f"{self._id_field!r} is not a string or number")
        post_id = str(raw_id) if raw_id is not None and raw_id != "" else None
        raw_cat = record.get(self._category_field)
        if raw_cat is not None and (isinstance(raw_cat, bool) or not isinstance(raw_cat, str | int | float)):
            return Skipped(where=where, reason=f"{self._category_field!r} is not a string or number")
        category = _category(raw_cat)
        own = {self._id_field, self._text_field, self._category_field}
        extra: dict[str, MetaValue] = {
            "src_" + key: value
            for key, value in record.items()
            if key not in own and isinstance(value, str | int | float | bool)
        }
        return Post(text=text, category=category, id=post_id, extra=extra, where=where)


class JsonlSource(_RecordSource):
    """One JSON object per line; blank lines are ignored."""

    kind = "JSONL"

    def __iter__(self) -> Iterator[Post | Skipped]:
        seen_any = False
        for lineno, raw in enumerate(self._lines(), start=1):
            if not raw.strip():
                continue
            seen_any = True
            yield self._parse(raw, f"{self.name}:{lineno}")
        if not seen_any:
            raise InputError(f"{self.name} is empty")

    def _parse(self, raw: bytes, where: str) -> Post | Skipped:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Skipped(where=where, reason="not UTF-8")
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return Skipped(where=where, reason="not valid JSON")
        if not isinstance(record, dict):
            return Skipped(where=where, reason="not a JSON object")
        return self._post(record, where)


class CsvSource(_RecordSource):
    """CSV with a header row that names ``text_field``; an empty cell counts as an absent value."""

    kind = "CSV"

    def __iter__(self) -> Iterator[Post | Skipped]:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
        text_lines = (line.decode("utf-8", "surrogateescape") for line in self._lines())
        yield from self._rows(csv.reader(text_lines))

    def _rows(self, reader: Any) -> Iterator[Post | Skipped]:
        header = self._header(reader)
        width = len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Skipped(where=f"{self.name}:{reader.line_num}", reason=f"bad CSV: {e}")
                continue
            where = f"{self.name}:{reader.line_num}"
            if not row:
                continue
            if len(row) != width:
                yield Skipped(where=where, reason=f"{len(row)} fields, header has {width}")
                continue
            if any(not is_valid_unicode(cell) for cell in row):
                yield Skipped(where=where, reason="not UTF-8")
                continue
            record = {key: value for key, value in zip(header, row, strict=True) if value != ""}
            if self._text_field not in record:
                record[self._text_field] = ""
            yield self._post(record, where)

    def _header(self, reader: Any) -> list[str]:
        try:
            for header in reader:
                if header:
                    break
            else:
                raise InputError(f"{self.name} is empty")
        except csv.Error as e:
            raise InputError(f"{self.name}: cannot read the CSV header: {e}") from None
        if any(not is_valid_unicode(cell) for cell in header):
            raise InputError(f"{self.name}: the CSV header is not UTF-8")
        header = [cell.strip() for cell in header]
        for field, flag, needed in (
            (self._text_field, "--text-field", True),
            (self._id_field, "--id-field", self._id_required),
            (self._category_field, "--category-field", self._category_required),
        ):
            if needed and field not in header:
                columns = ", ".join(repr(c) for c in header)
                raise InputError(f"{self.name} has no {field!r} column for {flag} (columns: {columns})")
        return header


# -- whole-input checks ------------------------------------------------------------------------------------


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise InputError(f"no such file or directory: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a {kind} file")
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            if _looks_binary(head):
                raise InputError(f"{path} looks binary, not {kind} text")
            chunk = head
            while chunk and not chunk.strip():
                chunk = f.read(1 << 20)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if not chunk.removeprefix(codecs.BOM_UTF8).strip():
        raise InputError(f"{path} is empty")


def _looks_binary(head: bytes) -> bool:
    return b"\0" in head[:_SNIFF_BYTES] or head.startswith(_BINARY_MAGIC)


# -- reading -----------------------------------------------------------------------------------------------


def _stdin_lines() -> Iterator[bytes]:
    """Stdin line by line, never reading ahead of the line asked for (so live pipes work)."""
    if sys.stdin is None or sys.stdin.closed:
        raise InputError("stdin is closed: pipe posts in, or give a file")
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in (tests, notebooks): no descriptor
        fd = None
    if fd is not None:
        # Straight from the descriptor, not through sys.stdin's buffer: the reader thread may be
        # blocked here when the process exits (say `| head -1` closed stdout), and a thread inside
        # the buffer holds its lock, which aborts the interpreter at shutdown.
        yield from _fd_lines(fd)
        return
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text-only stand-in for stdin
        for text in sys.stdin:
            yield text.encode("utf-8", "surrogateescape")
        return
    while line := buffer.readline():
        yield line


def _fd_lines(fd: int, size: int = 1 << 16) -> Iterator[bytes]:
    """Lines (ending kept) from a file descriptor, each yielded as soon as it is complete."""
    pending = bytearray()
    while chunk := os.read(fd, size):
        start = len(pending)
        pending += chunk
        cut = pending.rfind(b"\n", start)
        if cut < 0:
            continue
        complete = bytes(pending[: cut + 1])
        del pending[: cut + 1]
        for line in complete.split(b"\n")[:-1]:
            yield line + b"\n"
    if pending:
        yield bytes(pending)


def _category(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
