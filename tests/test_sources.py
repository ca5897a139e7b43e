"""Sources: the 20news-bydate reader (on the shipped real sample), JSONL/CSV records, open_source."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import queue
import re
import sys
import tarfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import monitor
from monitor.errors import InputError
from monitor.posts import Post, Skipped
from monitor.sources import (
    FORMATS,
    CsvSource,
    JsonlSource,
    NewsgroupArchive,
    Source,
    open_source,
)
from monitor.sources import records as records_module

DATA = Path(monitor.__file__).parent / "data"
SAMPLE = DATA / "20news-sample.tar.gz"
SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]


def posts_of(source: Source) -> list[Post]:
    items = list(source)
    assert all(isinstance(item, Post) for item in items)
    return [item for item in items if isinstance(item, Post)]


def ids_of(source: Source) -> list[str | None]:
    return [p.id for p in posts_of(source)]


def input_error(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    with tarfile.open(SAMPLE) as tf:
        tf.extractall(root, filter="data")
    return root


# -- the shipped sample ------------------------------------------------------------------------------------


def test_sample_readme_matches_file() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() in readme
    assert SAMPLE.stat().st_size < 2_000_000


def test_sample_counts() -> None:
    train = NewsgroupArchive(SAMPLE, split="train")
    test = NewsgroupArchive(SAMPLE, split="test")
    both = NewsgroupArchive(SAMPLE, split="all")
    assert (len(train), len(test), len(both)) == (600, 248, 848)
    assert len(posts_of(both)) == 848
    assert Counter(p.category for p in posts_of(train)) == dict.fromkeys(SCI, 150)
    test_counts = Counter(p.category for p in posts_of(test))
    assert all(test_counts[c] == 50 for c in SCI) and len(test_counts) == 20
    assert sum(n for c, n in test_counts.items() if c not in SCI) == 48
    assert len(train.categories_found) == 20 and train.categories_found == sorted(train.categories_found)
    assert "600 posts" in train.description


def test_posts_have_stable_ids_order_and_metadata() -> None:
    source = NewsgroupArchive(SAMPLE, split="all")
    posts = posts_of(source)
    assert [p.id for p in posts] == ids_of(source)  # same on a second pass
    keys = [(p.extra["split"], p.category, p.extra["article"]) for p in posts]
    assert keys == sorted(keys)
    assert {p.extra["split"] for p in posts} == {"train", "test"}
    for p in posts:
        assert p.id == f"20news/{p.extra['split']}/{p.category}/{p.extra['article']}"
        assert p.extra["group"] == p.category
        assert isinstance(p.extra["article"], int)
    post = next(p for p in posts if p.id == "20news/train/sci.space/61018")
    assert post.extra["subject"] == "Inflatable Mile-Long Space Billboards (was Re: Vandalizing the sky.)"
    assert post.text.startswith("From: yamauchi@ces.cwru.edu (Brian Yamauchi)\n")


def test_archive_and_folders_give_the_same_posts(extracted: Path) -> None:
    from_archive = posts_of(NewsgroupArchive(SAMPLE, split="all"))
    assert posts_of(NewsgroupArchive(extracted, split="all")) == from_archive
    single = posts_of(NewsgroupArchive(extracted / "20news-bydate-train"))
    assert single == [p for p in from_archive if p.extra["split"] == "train"]
    assert NewsgroupArchive(extracted).categories_found == NewsgroupArchive(SAMPLE).categories_found


def test_category_globs_and_exclude() -> None:
    sci_test = posts_of(NewsgroupArchive(SAMPLE, split="test", categories=["sci.*"]))
    assert len(sci_test) == 200 and {p.category for p in sci_test} == set(SCI)
    no_med = posts_of(NewsgroupArchive(SAMPLE, split="test", categories=["sci.*"], exclude=["sci.med"]))
    assert len(no_med) == 150 and "sci.med" not in {p.category for p in no_med}
    mixed = NewsgroupArchive(SAMPLE, split="test", categories=["sci.med", "rec.*"])
    assert len(mixed) == 50 + 4 * 3
    assert len(NewsgroupArchive(SAMPLE, split="test", categories="talk.*")) == 4 * 3  # a bare string


def test_per_category_sample_is_seeded_and_order_independent() -> None:
    first = NewsgroupArchive(SAMPLE, categories=["sci.*"], per_category=10, seed=7)
    ids = ids_of(first)
    assert len(first) == len(ids) == 40
    assert Counter(i.split("/")[2] for i in ids if i) == dict.fromkeys(SCI, 10)
    assert ids_of(NewsgroupArchive(SAMPLE, categories=["sci.*"], per_category=10, seed=7)) == ids
    assert ids_of(NewsgroupArchive(SAMPLE, categories=["sci.*"], per_category=10, seed=8)) != ids
    only_med = ids_of(NewsgroupArchive(SAMPLE, categories=["sci.med"], per_category=10, seed=7))
    assert only_med == [i for i in ids if i and "/sci.med/" in i]
    assert len(NewsgroupArchive(SAMPLE, split="test", exclude=["sci.*"], per_category=99)) == 48


def test_latin1_post_from_sample() -> None:
    post = next(
        p
        for p in posts_of(NewsgroupArchive(SAMPLE, categories=["sci.electronics"]))
        if p.id and p.id.endswith("/53721")
    )
    with tarfile.open(SAMPLE) as tf:
        member = tf.extractfile("20news-bydate-train/sci.electronics/53721")
        assert member is not None
        raw = member.read()
    assert post.text == raw.decode("latin-1")
    assert "\u00fd\u00e9" in post.text  # bytes 0xFD 0xE9


def test_crafted_archive_edge_cases(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "x.tgz",
        {
            "./20news-bydate-train/misc/9": b"Subject: caf\xe9\r\n\r\nna\xefve\r\n",
            "./20news-bydate-train/misc/10": b"",
            "./20news-bydate-train/misc/3": b"From: x\n\nbad \x00 byte",
            "./20news-bydate-train/misc/notes.txt": b"not a post",
            "./20news-bydate-train/misc/1/deeper": b"not a post",
        },
    )
    source = NewsgroupArchive(archive)
    assert len(source) == 3
    items = list(source)
    assert items[0] == Skipped(where=f"{archive}:./20news-bydate-train/misc/3", reason="binary content")
    assert isinstance(items[1], Post) and items[1].id == "20news/train/misc/9"
    assert items[1].text == "Subject: café\r\n\r\nnaïve\r\n"
    assert items[1].extra["subject"] == "café"
    assert isinstance(items[2], Post) and items[2].text == "" and "subject" not in items[2].extra


def test_unsorted_archive_is_yielded_in_order(tmp_path: Path) -> None:
    names = [
        "20news-bydate-train/b/2",
        "20news-bydate-test/a/1",
        "20news-bydate-train/a/10",
        "20news-bydate-train/a/9",
    ]
    archive = make_tar(tmp_path / "u.tar", {n: f"Subject: {n}\n\nx".encode() for n in names}, mode="w")
    ids = ids_of(NewsgroupArchive(archive, split="all"))
    assert ids == ["20news/test/a/1", "20news/train/a/9", "20news/train/a/10", "20news/train/b/2"]


def test_archive_input_errors(tmp_path: Path, extracted: Path) -> None:
    def fails(path: Path, **kwargs: object) -> str:
        with pytest.raises(InputError) as err:
            list(NewsgroupArchive(path, **kwargs))  # type: ignore[arg-type]
        return input_error(err)

    assert fails(tmp_path / "nope.tar.gz") == f"no such file or directory: {tmp_path / 'nope.tar.gz'}"
    text = tmp_path / "text.tar.gz"
    text.write_text("hello world\n")
    assert fails(text).startswith(f"{text} is not a 20news-bydate archive: not a gzip/tar file")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(SAMPLE.read_bytes()[:300_000])
    assert f"{truncated} is not a 20news-bydate archive" in fails(truncated)
    corrupt = tmp_path / "corrupt.tar.gz"
    data = bytearray(SAMPLE.read_bytes())
    data[300_000:300_200] = b"\x55" * 200
    corrupt.write_bytes(bytes(data))
    assert f"{corrupt} is not a 20news-bydate archive" in fails(corrupt)
    other = make_tar(tmp_path / "other.tar.gz", {"docs/readme.txt": b"hi"})
    assert "has no 20news-bydate layout" in fails(other)
    assert "has no 20news-bydate layout" in fails(extracted / "20news-bydate-train" / "sci.med")
    message = fails(SAMPLE, categories=["foo.*"])
    assert message.startswith("no posts match categories ['foo.*'] in split 'train' (available: sci.crypt,")
    assert "has no posts in split 'test'" in fails(extracted / "20news-bydate-train", split="test")
    assert "unknown split" in fails(SAMPLE, split="dev")
    assert "at least 1" in fails(SAMPLE, per_category=0)


# -- JSONL ------------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_jsonl_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.jsonl",
        '{"id": "a1", "text": "hello", "category": "greet", "lang": "en", "n": 3, "ok": true,'
        ' "score": 0.5, "nested": {"x": 1}, "list": [1], "none": null}\n'
        "\n"
        '{"id": 7, "text": "seven", "category": 42}\n'
        '{"id": null, "text": ""}\n',
    )
    posts = posts_of(JsonlSource(str(path)))
    assert posts == [
        Post(
            text="hello",
            category="greet",
            id="a1",
            extra={"src_lang": "en", "src_n": 3, "src_ok": True, "src_score": 0.5},
        ),
        Post(text="seven", category="42", id="7"),
        Post(text="", category=None, id=None),
    ]


def test_jsonl_custom_fields_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "b.ndjson", '\ufeff{"key": "k", "body": "b\\r\\nc", "label": "L"}\r\n')
    source = JsonlSource(str(path), id_field="key", text_field="body", category_field="label")
    assert posts_of(source) == [Post(text="b\r\nc", category="L", id="k")]
    assert "b.ndjson" in source.description


def test_jsonl_bad_lines_are_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.jsonl",
        b'{"text": "good"}\n'
        b"{not json\n"
        b"[1, 2]\n"
        b'{"body": "x"}\n'
        b'{"text": 5}\n'
        b'{"text": "caf\xe9"}\n'
        b"\n"
        b'{"text": "x", "id": {"a": 1}}\n'
        b'{"text": "last"}',
    )
    items = list(JsonlSource(str(path)))
    assert [i.text for i in items if isinstance(i, Post)] == ["good", "last"]
    assert [i for i in items if isinstance(i, Skipped)] == [
        Skipped(f"{path}:2", "not valid JSON"),
        Skipped(f"{path}:3", "not a JSON object"),
        Skipped(f"{path}:4", "no 'text' field"),
        Skipped(f"{path}:5", "'text' is not a string"),
        Skipped(f"{path}:6", "not UTF-8"),
        Skipped(f"{path}:8", "'id' is not a string or number"),
    ]


# -- whole-input errors (JSONL and CSV) --------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("empty", b"", "{p} is empty"),
    ("blank", b"  \n\n\t\n", "{p} is empty"),
    ("bom-only", b"\xef\xbb\xbf\n", "{p} is empty"),
    ("nul", b'{"text": "a"}\n\x00\x01\x02', "{p} looks binary, not {kind} text"),
    ("gzip", gzip.compress(b'{"text": "a"}\n'), "{p} looks binary, not {kind} text"),
    ("zip", b"PK\x03\x04rest-of-a-zip", "{p} looks binary, not {kind} text"),
    ("missing", None, "no such file or directory: {p}"),
]


@pytest.mark.parametrize("cls,kind,ext", [(JsonlSource, "JSONL", "jsonl"), (CsvSource, "CSV", "csv")])
@pytest.mark.parametrize("label,content,expected", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_whole_input_errors(
    tmp_path: Path,
    cls: type[JsonlSource] | type[CsvSource],
    kind: str,
    ext: str,
    label: str,
    content: bytes | None,
    expected: str,
) -> None:
    path = tmp_path / f"{label}.{ext}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        cls(str(path))
    assert input_error(err) == expected.format(p=path, kind=kind)


@pytest.mark.parametrize("cls", [JsonlSource, CsvSource])
def test_directory_and_unreadable_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[JsonlSource] | type[CsvSource]
) -> None:
    with pytest.raises(InputError) as err:
        cls(str(tmp_path))
    assert input_error(err).startswith(f"{tmp_path} is a directory")

    path = write(tmp_path, "locked.txt", '{"text": "a"}\n')

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(records_module, "open", denied, raising=False)
    with pytest.raises(InputError) as err:
        cls(str(path))
    assert input_error(err) == f"cannot read {path}: Permission denied"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_for_real(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.jsonl", '{"text": "a"}\n')
    path.chmod(0)
    with pytest.raises(InputError) as err:
        JsonlSource(str(path))
    assert input_error(err).startswith(f"cannot read {path}")


# -- CSV --------------------------------------------------------------------------------------------------


def test_csv_records(tmp_path: Path) -> None:
    big = "z" * 300_000  # over csv's default 131,072-character field limit
    path = write(
        tmp_path,
        "r.csv",
        "\ufeffid,text,category,lang,empty\r\n"
        '1,"hello, ""world""\nsecond line",greet,en,\r\n'
        f",{big},,,\r\n"
        "\r\n"
        "3,short\r\n"
        "4,x,c,d,e,f\r\n",
    )
    items = list(CsvSource(str(path)))
    assert items[0] == Post(
        text='hello, "world"\nsecond line', category="greet", id="1", extra={"src_lang": "en"}
    )
    assert items[1] == Post(text=big)
    assert items[2] == Skipped(f"{path}:6", "2 fields, header has 5")
    assert items[3] == Skipped(f"{path}:7", "6 fields, header has 5")
    assert len(items) == 4


def test_csv_custom_fields_and_bad_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", b"key,body,label\nk1,ok,L\nk2,caf\xe9,L\n")
    items = list(CsvSource(str(path), id_field="key", text_field="body", category_field="label"))
    assert items == [Post(text="ok", category="L", id="k1"), Skipped(f"{path}:3", "not UTF-8")]


def test_csv_without_text_column(tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", "id,body\n1,x\n")
    with pytest.raises(InputError) as err:
        list(CsvSource(str(path)))
    assert input_error(err) == f"{path} has no 'text' column for --text-field (columns: 'id', 'body')"


# -- stdin ------------------------------------------------------------------------------------------------


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Replace sys.stdin by the read end of a pipe; yields the write end's descriptor."""
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    yield write_fd
    stdin.close()
    with contextlib.suppress(OSError):  # the test may have closed it already
        os.close(write_fd)


@pytest.mark.parametrize(
    "cls,head,second",
    [
        (JsonlSource, b'{"id": 1, "text": "first"}\n', b'{"text": "second"}\n'),
        (CsvSource, b"id,text\n1,first\n", b",second\n"),
    ],
)
def test_stdin_is_read_lazily(
    stdin_pipe: int, cls: type[JsonlSource] | type[CsvSource], head: bytes, second: bytes
) -> None:
    items = iter(cls("-"))
    got: queue.Queue[Post | Skipped] = queue.Queue()
    os.write(stdin_pipe, head)  # the writer keeps the pipe open
    threading.Thread(target=lambda: got.put(next(items)), daemon=True).start()
    try:
        first = got.get(timeout=5)  # queue.Empty here means the source waited for end of input
    finally:
        os.write(stdin_pipe, second)
        os.close(stdin_pipe)
    assert first == Post(text="first", id="1")
    assert list(items) == [Post(text="second")]


def test_stdin_errors(stdin_pipe: int) -> None:
    os.close(stdin_pipe)
    with pytest.raises(InputError) as err:
        list(JsonlSource("-"))
    assert input_error(err) == "stdin is empty"


def test_stdin_binary(stdin_pipe: int) -> None:
    os.write(stdin_pipe, b"\x1f\x8b\x08\x00rest\n")
    os.close(stdin_pipe)
    with pytest.raises(InputError) as err:
        list(JsonlSource("-"))
    assert input_error(err) == "stdin looks binary, not JSONL text"


def test_text_only_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "a", "id": "x"}\n\n{"text": "b"}\n'))
    source = JsonlSource("-")
    assert posts_of(source) == [Post(text="a", id="x"), Post(text="b")]
    assert "stdin" in source.description


# -- open_source ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,content,cls",
    [
        ("a.jsonl", '{"text": "a"}\n', JsonlSource),
        ("a.NDJSON", '{"text": "a"}\n', JsonlSource),
        ("a.json", '{"text": "a"}\n', JsonlSource),
        ("a.csv", "text\na\n", CsvSource),
    ],
)
def test_open_source_detects_records(tmp_path: Path, name: str, content: str, cls: type) -> None:
    source = open_source(str(write(tmp_path, name, content)))
    assert type(source) is cls
    assert isinstance(source, Source)
    assert [p.text for p in posts_of(source)] == ["a"]


def test_open_source_detects_newsgroups(
    tmp_path: Path, extracted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = open_source(
        str(SAMPLE), split="test", categories=["sci.*"], exclude=["sci.med"], per_category=5
    )
    assert isinstance(archive, NewsgroupArchive) and len(archive) == 15
    assert isinstance(open_source(str(extracted)), NewsgroupArchive)
    tgz = tmp_path / "copy.tgz"
    tgz.write_bytes(SAMPLE.read_bytes())
    assert len(open_source(str(tgz))) == 600  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "stdin", io.StringIO("id,text\n1,x\n"))
    assert type(open_source("-")) is JsonlSource
    assert posts_of(open_source("-", format="csv")) == [Post(text="x", id="1")]


def test_open_source_format_override_and_errors(tmp_path: Path) -> None:
    odd = write(tmp_path, "posts.txt", '{"text": "a"}\n')
    assert FORMATS == ("20news", "jsonl", "csv")
    assert posts_of(open_source(str(odd), format="jsonl")) == [Post(text="a")]
    with pytest.raises(InputError) as err:
        open_source(str(odd))
    assert input_error(err) == f"cannot tell the format of {odd} from its name; use --format 20news|jsonl|csv"
    with pytest.raises(InputError) as err:
        open_source(str(odd), format="xml")
    assert input_error(err) == "unknown format 'xml' (choose 20news, jsonl, csv)"
    missing = tmp_path / "gone.jsonl"
    with pytest.raises(InputError) as err:
        open_source(str(missing))
    assert input_error(err) == f"no such file or directory: {missing}"
    with pytest.raises(InputError) as err:
        open_source(str(tmp_path), format="csv")
    assert re.fullmatch(rf"{re.escape(str(tmp_path))} is a directory, not a CSV file", input_error(err))
