"""Text cleaning before embedding: pure ``str -> str`` functions, chosen by name.

``seed``  reproduces the preprocessing of the well-known Gemini-embeddings anomaly-detection notebook.
``strip`` removes the Usenet header block, quoted replies and a trailing signature.
``none``  leaves the text as it is (apart from line endings).

Every cleaner first turns CRLF / CR line endings into LF.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from monitor.errors import InputError

MAX_CHARS = 5000
"""Cleaned texts are cut to this many characters (as in the notebook)."""

SIGNATURE_MAX_LINES = 10
"""A block after a line of dashes/underscores counts as a signature only if it has at most this many lines."""

# Starts only where a run of address characters starts, and never backtracks into it: linear in
# the text's length (the plain pattern is quadratic on a long run without "@").
_EMAIL_RE = re.compile(r"(?<![\w.-])[\w.-]++@[\w.-]+")
_PARENS_RE = re.compile(r"\([^()]*\)")
# RFC 822 field name: printable ASCII except space and colon, then a colon.
_HEADER_RE = re.compile(r"[!-9;-~]+:")
_QUOTE_RE = re.compile(r"\s*[>|]")
_ATTRIBUTION_START_RE = re.compile(r"In article\b")
_ATTRIBUTION_END_RE = re.compile(r"(writes|wrote):\s*$")
_RULE_RE = re.compile(r"\s*(-{2,}|_{2,})\s*")
_BLANK_RUN_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_seed(text: str) -> str:
    """The notebook's preprocessing: drop e-mail addresses, parenthesised names, ``From: ``,
    ``\\nSubject: ``, then keep the first 5,000 characters."""
    d = normalise_newlines(text)
    d = _EMAIL_RE.sub("", d)
    d = _PARENS_RE.sub("", d)
    d = d.replace("From: ", "")
    d = d.replace("\nSubject: ", "")
    return d[:MAX_CHARS]


def clean_strip(text: str) -> str:
    """Body only: no header block, no quoted reply lines or attributions, no trailing signature."""
    lines = normalise_newlines(text).split("\n")
    lines = _drop_header(lines)
    lines = _drop_signature(lines)
    lines = [line for line in lines if not _is_quote(line)]
    body = _BLANK_RUN_RE.sub("\n\n", "\n".join(lines))
    return body.strip()[:MAX_CHARS]


def clean_none(text: str) -> str:
    """The text unchanged, apart from line endings."""
    return normalise_newlines(text)


CLEANERS: dict[str, Callable[[str], str]] = {
    "seed": clean_seed,
    "strip": clean_strip,
    "none": clean_none,
}


def get_cleaner(name: str) -> Callable[[str], str]:
    """The cleaner called ``name``; :class:`InputError` for an unknown name."""
    try:
        return CLEANERS[name]
    except KeyError:
        raise InputError(f"unknown cleaning {name!r} (choose seed, strip or none)") from None


def _is_header_line(line: str) -> bool:
    return bool(_HEADER_RE.match(line)) or line[:1] in (" ", "\t")


def _drop_header(lines: list[str]) -> list[str]:
    """Remove everything up to the first blank line, if all of it looks like a header block."""
    for i, line in enumerate(lines):
        if not line.strip():
            return lines[i + 1 :] if i > 0 else lines
        if not _is_header_line(line):
            return lines
    # No blank line: the whole text is a header only if every line looks like one.
    return []


def _drop_signature(lines: list[str]) -> list[str]:
    """Cut from the last ``--`` line, else from a last dash/underscore rule followed by a short block."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].rstrip() == "--":
            return lines[:i] if _has_text(lines[:i]) else lines
    for i in range(len(lines) - 1, -1, -1):
        if _RULE_RE.fullmatch(lines[i]):
            tail = [line for line in lines[i + 1 :] if line.strip()]
            if len(tail) <= SIGNATURE_MAX_LINES and _has_text(lines[:i]):
                return lines[:i]
            break
    return lines


def _is_quote(line: str) -> bool:
    return bool(
        _QUOTE_RE.match(line) or _ATTRIBUTION_START_RE.match(line) or _ATTRIBUTION_END_RE.search(line)
    )


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)
