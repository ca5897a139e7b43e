"""The unit of data: a post as read from a source, before embedding.

Sources yield :class:`Post` for good records and :class:`Skipped` for single bad records
inside an otherwise good input, so the ingest can count skips with their reasons.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

MetaValue = str | int | float | bool
MAX_POST_CHARS = 1_000_000  # a longer "post" is a mistake (a whole file in one field), not a post


@dataclass(frozen=True)
class Post:
    """One post: raw text plus where it came from.

    ``id`` is stable across re-runs (for newsgroup posts ``20news/<split>/<group>/<article>``);
    when a source has no id, :func:`content_id` of the raw text is used.
    ``extra`` holds plain-typed metadata from the source (split, subject, original group, ...);
    ``where`` says where it was read (``file.jsonl:12``), for messages about it.
    """

    text: str
    category: str | None = None
    id: str | None = None
    extra: dict[str, MetaValue] = field(default_factory=dict)
    where: str = field(default="", compare=False)

    def stable_id(self) -> str:
        return self.id if self.id else content_id(self.text)


@dataclass(frozen=True)
class Skipped:
    """A single record that was not ingested, with where it was and why."""

    where: str
    reason: str


def content_id(text: str) -> str:
    """Content-derived id for posts whose source gives none."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def text_digest(text: str) -> str:
    """Short digest of a post's text, stored to tell a changed post from an unchanged one."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_valid_unicode(text: str) -> bool:
    """False for text holding lone surrogates (JSON can carry them; UTF-8 and Chroma cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cleaned_text(
    text: str, cleaner: Callable[[str], str], max_chars: int = MAX_POST_CHARS
) -> tuple[str, str | None]:
    """``(cleaned text, None)`` for a post that can be embedded, else ``("", why not)``."""
    if not is_valid_unicode(text):
        return "", "text is not valid Unicode (a lone surrogate)"
    if len(text) > max_chars:
        return "", f"post longer than {max_chars:,} characters"
    cleaned = cleaner(text)
    if not cleaned.strip():
        return "", "empty post"
    return cleaned, None
