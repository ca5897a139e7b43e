"""Reader for the 20 Newsgroups "bydate" corpus, as a tarball or as an extracted folder.

Accepted layouts (``<split dir>`` is ``20news-bydate-train`` or ``20news-bydate-test``):

- a ``.tar.gz`` / ``.tgz`` / ``.tar`` (also bzip2/xz) with members ``[prefix/]<split dir>/<category>/<id>``;
- a folder holding ``<split dir>/`` folders;
- a single ``<split dir>`` folder whose children are category folders.

Only files named by a number (the article id) are posts; anything else is ignored.

Reading happens in two passes: construction lists the members and makes the selection (so errors show up
at once and ``len()`` is known), iteration reads only the selected posts. A tarball is streamed both times,
never loaded whole. Posts come out ordered by (split, category, numeric article id); an archive stored in
that order (like the re-pack and the shipped sample) is streamed straight through, otherwise out-of-order
posts are held until their turn.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import random
import tarfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO

from monitor.errors import InputError
from monitor.posts import MetaValue, Post, Skipped

SPLITS = ("test", "train")
"""Split names, in the order posts are yielded for ``split="all"``."""

SPLIT_CHOICES = ("train", "test", "all")

_SPLIT_DIRS = {"20news-bydate-train": "train", "20news-bydate-test": "test"}
_SUBJECT_MAX = 200
_HEADER_SCAN = 20_000  # characters searched for the Subject header
_CHUNK = 1 << 20

_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


@dataclass(frozen=True, order=True)
class _Entry:
    """One post in the listing: its sort key, then where to find it."""

    split: str
    category: str
    article: int
    location: str = field(compare=False)  # member name in the tarball, or file path in a folder
    index: int = field(default=-1, compare=False)  # position in the tar stream


class NewsgroupArchive:
    """The posts of a 20news-bydate archive or folder, filtered and optionally sampled per category.

    ``categories`` and ``exclude`` are :mod:`fnmatch` globs on category names (``sci.*``).
    ``per_category`` keeps a seeded random sample of that many posts per (split, category); the sample
    depends only on ``seed``, the split, the category and its article ids.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        split: str = "train",
        categories: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        per_category: int | None = None,
        seed: int = 0,
    ) -> None:
        if split not in SPLIT_CHOICES:
            raise InputError(f"unknown split {split!r} (choose train, test or all)")
        if per_category is not None and per_category < 1:
            raise InputError(f"per-category sample size must be at least 1, not {per_category}")
        self._path = Path(path)
        self._split = split
        self._categories = _as_globs(categories)
        self._exclude = _as_globs(exclude)
        self._per_category = per_category
        self._seed = seed
        if not self._path.exists():
            raise InputError(f"no such file or directory: {self._path}")
        self._is_dir = self._path.is_dir()
        entries = _list_folder(self._path) if self._is_dir else _list_tar(self._path)
        if not entries:
            raise InputError(
                f"{self._path} has no 20news-bydate layout "
                "(expected 20news-bydate-train/<category>/<id> or 20news-bydate-test/...)"
            )
        self._categories_found = sorted({e.category for e in entries})
        self._selected = self._select(entries)

    @property
    def categories_found(self) -> list[str]:
        """Every category in the archive (any split), sorted."""
        return list(self._categories_found)

    @property
    def description(self) -> str:
        kind = "folder" if self._is_dir else "archive"
        parts = [f"split {self._split}", "categories " + ",".join(self._categories)]
        if self._exclude:
            parts.append("excluding " + ",".join(self._exclude))
        if self._per_category is not None:
            parts.append(f"{self._per_category} per category (seed {self._seed})")
        return f"20news-bydate {kind} {self._path} ({'; '.join(parts)}): {len(self)} posts"

    def __len__(self) -> int:
        return len(self._selected)

    def __iter__(self) -> Iterator[Post | Skipped]:
        if self._is_dir:
            yield from self._iter_folder()
        else:
            yield from self._iter_tar()

    # -- selection -------------------------------------------------------------------------------------

    def _select(self, entries: list[_Entry]) -> list[_Entry]:
        splits = SPLITS if self._split == "all" else (self._split,)
        in_split = [e for e in entries if e.split in splits]
        if not in_split:
            found = ", ".join(sorted({e.split for e in entries}))
            raise InputError(f"{self._path} has no posts in split {self._split!r} (it has: {found})")
        groups: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
        for e in in_split:
            if _matches(e.category, self._categories) and not _matches(e.category, self._exclude):
                groups[(e.split, e.category)].append(e)
        if not groups:
            available = ", ".join(sorted({e.category for e in in_split}))
            excluding = f" excluding {list(self._exclude)!r}" if self._exclude else ""
            raise InputError(
                f"no posts match categories {list(self._categories)!r}{excluding} in split {self._split!r} "
                f"(available: {available})"
            )
        selected: list[_Entry] = []
        for (split, category), group in groups.items():
            group.sort()
            if self._per_category is not None and self._per_category < len(group):
                rng = random.Random(f"{self._seed}:{split}:{category}")
                group = rng.sample(group, self._per_category)
            selected.extend(group)
        selected.sort()
        return selected

    # -- reading ---------------------------------------------------------------------------------------

    def _iter_folder(self) -> Iterator[Post | Skipped]:
        for entry in self._selected:
            try:
                data = Path(entry.location).read_bytes()
            except OSError as e:
                yield Skipped(where=entry.location, reason=f"cannot read: {e.strerror or e}")
                continue
            yield _to_item(entry, data, entry.location)

    def _iter_tar(self) -> Iterator[Post | Skipped]:
        position = {e.index: i for i, e in enumerate(self._selected)}
        pending: dict[int, bytes] = {}
        next_pos = 0
        for index, _member, data in _scan_tar(self._path, lambda index, _m: index in position):
            if data is None:
                continue
            pending[position[index]] = data
            while next_pos in pending:
                entry = self._selected[next_pos]
                yield _to_item(entry, pending.pop(next_pos), f"{self._path}:{entry.location}")
                next_pos += 1
        if next_pos < len(self._selected):
            raise InputError(f"{self._path} changed while it was being read")


# -- listing -----------------------------------------------------------------------------------------------


def _list_tar(path: Path) -> list[_Entry]:
    found: dict[tuple[str, str, int], _Entry] = {}
    for index, member, _ in _scan_tar(path, lambda _i, _m: False):
        if not member.isfile():
            continue
        key = _parse_member(member.name)
        if key is not None:  # a later member of the same name replaces an earlier one, as in tar
            found[key] = _Entry(*key, location=member.name, index=index)
    return list(found.values())


def _parse_member(name: str) -> tuple[str, str, int] | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    for k, part in enumerate(parts):
        if part in _SPLIT_DIRS:
            if len(parts) == k + 3 and _is_article(parts[k + 2]):
                return _SPLIT_DIRS[part], parts[k + 1], int(parts[k + 2])
            return None
    return None


def _list_folder(root: Path) -> list[_Entry]:
    split_dirs = [(split, root / name) for name, split in _SPLIT_DIRS.items() if (root / name).is_dir()]
    if not split_dirs and root.name in _SPLIT_DIRS:
        split_dirs = [(_SPLIT_DIRS[root.name], root)]
    entries: list[_Entry] = []
    try:
        for split, split_dir in split_dirs:
            for cat in os.scandir(split_dir):
                if not cat.is_dir():
                    continue
                for post in os.scandir(cat.path):
                    if _is_article(post.name) and post.is_file():
                        entries.append(_Entry(split, cat.name, int(post.name), location=post.path))
    except OSError as e:
        raise InputError(f"cannot read {e.filename or root}: {e.strerror or e}") from None
    return entries


def _is_article(name: str) -> bool:
    return name.isascii() and name.isdigit()


# -- tar streaming -----------------------------------------------------------------------------------------


def _scan_tar(
    path: Path, want: Callable[[int, tarfile.TarInfo], bool]
) -> Iterator[tuple[int, tarfile.TarInfo, bytes | None]]:
    """Stream the tarball once: every member with its index, and its bytes when ``want`` says so.

    Any damage (not gzip/tar, truncated, corrupt, bad checksum) becomes one :class:`InputError`.
    """
    try:
        raw = path.open("rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        with raw, _decompressed(raw) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
            for index, member in enumerate(tf):
                data = None
                if member.isfile() and want(index, member):
                    extracted = tf.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                yield index, member, data
            _check_tail(stream)
    except _ARCHIVE_ERRORS as e:
        raise InputError(f"{path} is not a 20news-bydate archive: {_reason(e)}") from None


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def _check_tail(stream: IO[bytes]) -> None:
    """After the end-of-archive marker only zero padding may follow; reading it to the end also makes
    the decompressor verify its checksum, which catches corruption that tarfile alone would miss."""
    while chunk := stream.read(_CHUNK):
        if chunk.strip(b"\0"):
            raise tarfile.ReadError("unexpected data after the end of the archive (corrupt?)")


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, tarfile.ReadError) and text in ("truncated header", "invalid header", "empty file"):
        return f"not a gzip/tar file ({text})"
    if isinstance(e, EOFError):
        return "truncated archive"
    return text


# -- posts -------------------------------------------------------------------------------------------------


def _to_item(entry: _Entry, data: bytes, where: str) -> Post | Skipped:
    if b"\0" in data:
        return Skipped(where=where, reason="binary content")
    text = data.decode("latin-1")
    extra: dict[str, MetaValue] = {"split": entry.split, "group": entry.category, "article": entry.article}
    subject = _subject(text)
    if subject is not None:
        extra["subject"] = subject
    return Post(
        id=f"20news/{entry.split}/{entry.category}/{entry.article}",
        text=text,
        category=entry.category,
        extra=extra,
        where=where,
    )


def _subject(text: str) -> str | None:
    """The value of the first ``Subject:`` line of the header block, if any."""
    head = text[:_HEADER_SCAN].replace("\r\n", "\n").replace("\r", "\n")
    for line in head.split("\n"):
        if not line.strip():
            return None
        if line[:8].lower() == "subject:":
            return line[8:].strip()[:_SUBJECT_MAX]
    return None


def _as_globs(patterns: Sequence[str]) -> tuple[str, ...]:
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def _matches(category: str, globs: Sequence[str]) -> bool:
    return any(fnmatchcase(category, g) for g in globs)
