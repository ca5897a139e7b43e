"""Text cleaners: the notebook's ``seed`` rules, the header/quote/signature ``strip``, and ``none``."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

import monitor
from monitor.errors import InputError
from monitor.preprocess import CLEANERS, MAX_CHARS, clean_none, clean_seed, clean_strip, get_cleaner

SAMPLE = Path(monitor.__file__).parent / "data" / "20news-sample.tar.gz"
REAL_POST = "20news-bydate-train/sci.space/61018"  # header, quotes with attribution, "--" signature


@pytest.fixture(scope="module")
def real_post() -> str:
    with tarfile.open(SAMPLE) as tf:
        member = tf.extractfile(REAL_POST)
        assert member is not None
        return member.read().decode("latin-1")


CRAFTED = (
    "From: alice@example.org (Alice Liddell)\n"
    "Subject: Re: rabbits\n"
    "Organization: Wonderland\n"
    "\tcontinued header\n"
    "Lines: 9\n"
    "\n"
    "In article <1@x.org> bob@x.org (Bob) writes:\n"
    "> rabbits are late\n"
    ">> always\n"
    "| quoted the other way\n"
    "I think rabbits are punctual.\n"
    "\n"
    "\n"
    "\n"
    "Carol wrote:\n"
    "Second paragraph.\n"
    "-- \n"
    "Alice, Wonderland\n"
)


def test_seed_applies_notebook_rules_in_order() -> None:
    text = "From: a.b@c.org (Name Here)\nSubject: Hi (there)\nBody x-y@z.com ok (x (y) z)\n"
    # e-mails, then innermost parentheses, then "From: ", then "\nSubject: ".
    assert clean_seed(text) == " Hi \nBody  ok (x  z)\n"


def test_seed_on_real_post(real_post: str) -> None:
    cleaned = clean_seed(real_post)
    assert "@" in real_post and "From: " in real_post and "\nSubject: " in real_post
    assert not re.search(r"[\w\.-]+@[\w\.-]+", cleaned)
    assert "From: " not in cleaned
    assert "\nSubject: " not in cleaned
    assert "(Enzo Liguori)" not in cleaned and "(was Re: Vandalizing the sky.)" not in cleaned
    assert "Inflatable Mile-Long Space Billboards" in cleaned
    assert len(cleaned) <= MAX_CHARS


def test_seed_cuts_at_5000() -> None:
    assert clean_seed("x" * 6000) == "x" * MAX_CHARS
    assert clean_strip("y" * 6000) == "y" * MAX_CHARS


def test_strip_crafted_post() -> None:
    assert clean_strip(CRAFTED) == "I think rabbits are punctual.\n\nSecond paragraph."


def test_strip_real_post(real_post: str) -> None:
    cleaned = clean_strip(real_post)
    lines = cleaned.split("\n")
    assert cleaned.startswith("Well, if you're going to get upset with this")
    assert cleaned.endswith("I suppose The Return\nof Jeremy Rifkin is inevitable...")
    assert not any(line.startswith((">", "From:", "Subject:", "In article")) for line in lines)
    assert "Brian Yamauchi" not in cleaned  # signature gone
    assert "\n\n\n" not in cleaned


def test_strip_header_starting_with_continuation_line() -> None:
    text = " host!path!user\nSubject: hi\nFrom: x\n\nThe body."
    assert clean_strip(text) == "The body."


def test_strip_keeps_text_that_is_not_a_header() -> None:
    text = "Note: this is prose\nand more prose\n\nSecond paragraph."
    assert clean_strip(text) == text


def test_strip_short_block_after_rule_is_a_signature() -> None:
    body = "Main text here.\n"
    assert clean_strip(body + "_____\nJoe Bloggs\nAcme Inc.\n") == "Main text here."
    long_tail = "".join(f"point {i}\n" for i in range(20))
    assert clean_strip(body + "-----\n" + long_tail) == (body + "-----\n" + long_tail).strip()


def test_strip_signature_marker_without_text_before_keeps_text() -> None:
    assert clean_strip("--\nonly line") == "--\nonly line"


@pytest.mark.parametrize("name", sorted(CLEANERS))
def test_every_cleaner_normalises_line_endings(name: str) -> None:
    out = CLEANERS[name]("alpha\r\nbeta\rgamma\n")
    assert "\r" not in out
    assert "alpha\nbeta\ngamma" in out


def test_none_is_identity_apart_from_line_endings() -> None:
    text = "From: a@b.c (A)\nSubject: x\n\n> q\nbody\n-- \nsig\n"
    assert clean_none(text) == text
    assert len(clean_none("z" * 7000)) == 7000


def test_get_cleaner() -> None:
    assert set(CLEANERS) == {"seed", "strip", "none"}
    assert get_cleaner("seed") is clean_seed
    assert get_cleaner("strip") is clean_strip
    with pytest.raises(InputError) as err:
        get_cleaner("x")
    assert str(err.value) == "unknown cleaning 'x' (choose seed, strip or none)"
