"""The ``monitor`` command: end to end on the real sample with the real model, bad input,
stdin, and clean stdout for pipes.

In-process through click's CliRunner (success paths) and ``monitor.cli.main`` (error paths,
which only ``main`` turns into one line), plus a few subprocesses for stdin and true pipes.
Real embedded Chroma in tmp folders throughout.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import run_main, topic_text

import monitor
from monitor.baseline import load_baseline
from monitor.cli import OUTLIER_COLUMNS, cli
from monitor.posts import content_id
from monitor.query import OUTLIER_FIELDS
from monitor.store import ChromaStore

SAMPLE = Path(monitor.__file__).parent / "data" / "20news-sample.tar.gz"
SCI = ("sci.crypt", "sci.electronics", "sci.med", "sci.space")
HASH = ("--embedder", "hashing")
PNG = b"\x89PNG\r\n\x1a\n"
TOPIC = {"alpha": "space", "beta": "med"}  # synthetic categories drawn from conftest word lists


# -- helpers ----------------------------------------------------------------------------------------------


def cli_argv(*args: Any) -> list[str]:
    """The command line that runs the CLI in a child process."""
    return [sys.executable, "-m", "monitor.cli", *map(str, args)]


def run_module(*args: Any, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(*args),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def text_for(category: str, i: int, words: int = 20) -> str:
    return topic_text(TOPIC[category], i, words)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_records(n: int = 30, prefix: str = "g") -> list[dict[str, str]]:
    cats = ["alpha", "beta"]
    return [
        {"id": f"{prefix}{i}", "text": text_for(cats[i % 2], i), "category": cats[i % 2]} for i in range(n)
    ]


def store_state(db: Path, pid: str = "g0") -> tuple[int, dict[str, Any], dict[str, Any]]:
    store = ChromaStore.open(db)
    return store.count(), store.metadata_for([pid]).get(pid, {}), store.stamp()


def all_meta(db: Path) -> dict[str, dict[str, Any]]:
    store = ChromaStore.open(db)
    return {i: m for page in store.pages() for i, m in zip(page.ids, page.metadatas, strict=True)}


def one_error_line(err: str) -> str:
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    return errors[0]


@pytest.fixture
def seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A store holding 30 good posts (hashing embedder, no baseline yet), and their JSONL file."""
    db = tmp_path / "db"
    good = write_jsonl(tmp_path / "good.jsonl", good_records())
    code, _, err = run_main(["--db", db, "ingest", good, *HASH], capsys)
    assert code == 0, err
    assert store_state(db)[0] == 30
    return db, good


# -- end to end on the real sample with the real model ----------------------------------------------------


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole workflow once (default embedder: the real model); each step's output is kept."""
    root = tmp_path_factory.mktemp("e2e")
    db = root / "db"
    runner = CliRunner()

    def invoke(*args: Any) -> Result:
        result = runner.invoke(cli, ["--db", str(db), *map(str, args)])
        assert result.exit_code == 0, (args, result.stderr, result.exception)
        return result

    r: dict[str, Any] = {"db": db, "root": root}
    train = ("ingest", SAMPLE, "--category", "sci.*", "--per-category", 40)
    r["train"] = json.loads(invoke(*train, "--json").stdout)
    r["baseline"] = invoke("baseline", "--format", "json")
    r["in_topic"] = json.loads(
        invoke(
            "ingest", SAMPLE, "--split", "test", "--category", "sci.*", "--per-category", 15, "--json"
        ).stdout
    )
    r["off_topic"] = json.loads(
        invoke(
            "ingest",
            SAMPLE,
            "--split",
            "test",
            "--exclude-category",
            "sci.*",
            "--as-category",
            "sci.*",
            "--json",
        ).stdout
    )
    r["meta"] = all_meta(db)
    r["outliers_json"] = json.loads(invoke("outliers", "--format", "json").stdout)
    r["outliers_csv"] = invoke("outliers", "--format", "csv").stdout
    r["alpha_loose"] = json.loads(invoke("outliers", "--alpha", "0.2", "--format", "json").stdout)
    r["alpha_strict"] = json.loads(invoke("outliers", "--alpha", "0.01", "--format", "json").stdout)
    r["space_json"] = json.loads(
        invoke("outliers", "--category", "sci.space", "--limit", 3, "--format", "json").stdout
    )
    r["space_table"] = invoke("outliers", "--category", "sci.space", "--limit", 3).stdout
    r["stats"] = json.loads(invoke("stats", "--format", "json").stdout)
    r["first_snap"] = root / "snaps" / "first"
    r["first_snap_run"] = invoke("snapshot", "--out", r["first_snap"])
    r["rerun"] = json.loads(invoke(*train, "--json").stdout)
    r["count_after_rerun"] = ChromaStore.open(db).count()
    invoke("baseline", "--policy", "alpha:0.2")  # a looser alpha: more flags for the next snapshot
    r["second_snap"] = root / "snaps" / "second"
    r["second_snap_run"] = invoke("snapshot", "--out", r["second_snap"])
    return r


def test_e2e_ingest_and_baseline(e2e: dict[str, Any]) -> None:
    train, meta = e2e["train"], e2e["meta"]
    assert (train["read"], train["added"], train["skipped"]) == (160, 160, 0)
    assert train["verdicts"] == {"unscored": 160}
    assert (e2e["in_topic"]["added"], e2e["off_topic"]["added"]) == (60, 48)
    assert len(meta) == 268
    train_ids = [i for i in meta if i.startswith("20news/train/")]
    assert len(train_ids) == 160
    assert sum(meta[i]["truncated"] for i in train_ids) == train["truncated"] > 0  # the 256-token window
    assert ChromaStore.open(e2e["db"]).stamp()["embedder"] == "minilm-l6-v2-int8"
    rows = json.loads(e2e["baseline"].stdout)
    assert [r["category"] for r in rows] == list(SCI)
    assert all(r["posts"] == 40 and r["status"] == "ok" and 0 < r["radius"] < 2 for r in rows)
    assert "baseline v1" in e2e["baseline"].stderr


def test_e2e_off_topic_flagged_more_than_held_out(e2e: dict[str, Any]) -> None:
    meta = e2e["meta"]
    off = [m for m in meta.values() if "original_category" in m]
    held_out = [
        m for i, m in meta.items() if i.startswith("20news/test/sci.") and "original_category" not in m
    ]
    assert len(off) == 48 and len(held_out) == 60
    assert all(m["category"] in SCI and not m["original_category"].startswith("sci.") for m in off)
    assert {m["category"] for m in off} == set(SCI)  # --as-category 'sci.*' spreads them
    off_rate = sum(m["is_outlier"] for m in off) / len(off)
    held_rate = sum(m["is_outlier"] for m in held_out) / len(held_out)
    assert off_rate >= 0.5 and held_rate <= 0.3 and off_rate > 2 * held_rate, (off_rate, held_rate)
    assert e2e["off_topic"]["flagged"] == sum(m["is_outlier"] for m in off)
    assert all(m["baseline_version"] == 1 for m in meta.values())


def test_e2e_outliers_json(e2e: dict[str, Any]) -> None:
    rows, meta = e2e["outliers_json"], e2e["meta"]
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(OUTLIER_COLUMNS) <= row.keys()
        stored = meta[row["id"]]
        assert stored["is_outlier"] is True
        assert row["category"] == stored["category"]
        assert row["distance"] == pytest.approx(stored["distance"], abs=1e-4)
        assert row["score"] == pytest.approx(stored["score"], abs=1e-4)
        assert (
            stored["score"] >= stored["threshold"]
        )  # a baseline post can sit on it (compared with the others)
        assert 0 < stored["p_value"] <= 0.05  # the default policy is alpha:0.05
        assert row["nearest_category"] in SCI and row["ingested_at"] and row["excerpt"]
        assert row.get("original_category") == stored.get("original_category")
    order = [(r["p_value"], -r["score"]) for r in rows]
    assert order == sorted(order)  # most unusual first
    assert {r["id"] for r in rows} == {i for i, m in meta.items() if m["is_outlier"]}


def test_e2e_outliers_at_another_alpha_after_the_fact(e2e: dict[str, Any]) -> None:
    meta, flagged = e2e["meta"], {r["id"] for r in e2e["outliers_json"]}
    loose, strict = e2e["alpha_loose"], e2e["alpha_strict"]
    assert {r["id"] for r in loose} == {i for i, m in meta.items() if m.get("p_value", 1) <= 0.2}
    assert {r["id"] for r in strict} == {i for i, m in meta.items() if m.get("p_value", 1) <= 0.01}
    assert {r["id"] for r in strict} < flagged < {r["id"] for r in loose}


def test_e2e_outliers_csv_matches_json(e2e: dict[str, Any]) -> None:
    reader = csv.DictReader(io.StringIO(e2e["outliers_csv"]))
    rows = list(reader)
    assert reader.fieldnames is not None
    assert tuple(reader.fieldnames) == OUTLIER_FIELDS  # fixed columns, rows or not
    assert [r["id"] for r in rows] == [r["id"] for r in e2e["outliers_json"]]
    assert [float(r["distance"]) for r in rows] == [r["distance"] for r in e2e["outliers_json"]]


def test_e2e_outliers_for_one_category(e2e: dict[str, Any]) -> None:
    space = [r for r in e2e["outliers_json"] if r["category"] == "sci.space"]
    assert len(space) >= 3
    assert e2e["space_json"] == space[:3]
    lines = e2e["space_table"].strip().splitlines()
    assert lines[0].split()[:2] == ["id", "category"]
    assert len(lines) == 2 + 3
    assert all(r["id"] in line and "sci.space" in line for r, line in zip(space[:3], lines[2:], strict=True))


def test_e2e_stats_add_up(e2e: dict[str, Any]) -> None:
    info, rows = e2e["stats"], e2e["outliers_json"]
    assert info["posts"] == len(e2e["meta"]) == 268
    assert sum(c["posts"] for c in info["categories"]) == info["posts"]
    assert sum(c["outliers"] for c in info["categories"]) == len(rows)
    assert [c["category"] for c in info["categories"]] == list(SCI)
    for c in info["categories"]:
        assert c["scored"] + c["no_verdict"] == c["posts"]
        assert c["outlier_rate"] == pytest.approx(c["outliers"] / c["scored"], abs=1e-4)
        assert c["baseline_posts"] == 40 and c["radius"] > 0
    assert info["baseline"]["version"] == 1 and info["baseline"]["posts_with_older_verdicts"] == 0


def test_e2e_snapshot(e2e: dict[str, Any]) -> None:
    out: Path = e2e["first_snap"]
    assert e2e["first_snap_run"].stdout.strip() == str(out / "report.html")
    for name in ("embedding_map.png", "radius_sweep.png", "distances.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["outliers"] == len(e2e["outliers_json"])
    assert sorted(summary["flagged_ids"]) == sorted(r["id"] for r in e2e["outliers_json"])
    assert summary["posts"] == 268 and summary["changes"] is None

    html = (out / "report.html").read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(img).startswith(PNG) for img in images)
    assert all(ref.startswith(("data:", "#")) for ref in refs), refs
    assert "<script" not in html.lower() and "<link" not in html.lower()


def test_e2e_rerun_and_second_snapshot(e2e: dict[str, Any]) -> None:
    rerun = e2e["rerun"]
    assert (rerun["read"], rerun["unchanged"], rerun["added"], rerun["updated"]) == (160, 160, 0, 0)
    assert e2e["count_after_rerun"] == 268

    first = json.loads((e2e["first_snap"] / "summary.json").read_text(encoding="utf-8"))
    second = json.loads((e2e["second_snap"] / "summary.json").read_text(encoding="utf-8"))
    changes = second["changes"]
    assert changes is not None
    assert Path(changes["previous_snapshot"]) == e2e["first_snap"]
    assert changes["previous_baseline_version"] == 1 and changes["baseline_version"] == 2
    new = set(second["flagged_ids"]) - set(first["flagged_ids"])
    assert changes["new_flags"] == len(new) > 0
    assert changes["cleared_flags"] == len(set(first["flagged_ids"]) - set(second["flagged_ids"]))
    assert f"{changes['new_flags']} new flags" in e2e["second_snap_run"].stderr


# -- bad input ---------------------------------------------------------------------------------------------


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _not_20news(tmp: Path) -> Path:
    (tmp / "notnews" / "misc").mkdir(parents=True)
    (tmp / "notnews" / "misc" / "1").write_text("From: a\n\nhello\n", encoding="utf-8")
    return tmp / "notnews"


BAD_INPUT: dict[str, Callable[[Path, Path], list[Any]]] = {
    "missing-path": lambda t, g: ["ingest", t / "nope.jsonl", *HASH],
    "empty-jsonl": lambda t, g: ["ingest", _write(t / "empty.jsonl", ""), *HASH],
    "blank-jsonl": lambda t, g: ["ingest", _write(t / "blank.jsonl", "\n  \n"), *HASH],
    "empty-csv": lambda t, g: ["ingest", _write(t / "empty.csv", ""), *HASH],
    "binary-jsonl": lambda t, g: ["ingest", _write(t / "bin.jsonl", bytes(range(256)) * 8), *HASH],
    "not-20news-dir": lambda t, g: ["ingest", _not_20news(t), *HASH],
    "txt-extension": lambda t, g: ["ingest", _write(t / "posts.txt", '{"text": "hi"}\n'), *HASH],
    "unknown-format": lambda t, g: ["ingest", g, "--format", "xml", *HASH],
    "all-lines-bad": lambda t, g: [
        "ingest",
        write_jsonl(t / "bad.jsonl", ["not json", {"body": "no text field"}, {"text": "  "}]),
        *HASH,
    ],
    "corrupt-tar": lambda t, g: ["ingest", _write(t / "cut.tar.gz", SAMPLE.read_bytes()[:3000]), *HASH],
    "no-such-category": lambda t, g: ["ingest", SAMPLE, "--category", "nosuch.*", *HASH],
    "per-category-for-jsonl": lambda t, g: ["ingest", g, "--per-category", 3, *HASH],
    "split-for-jsonl": lambda t, g: ["ingest", g, "--split", "test", *HASH],
    "fixed-negative": lambda t, g: ["baseline", "--policy", "fixed:-1"],
    "quantile-2": lambda t, g: ["baseline", "--policy", "quantile:2"],
    "bad-since": lambda t, g: ["outliers", "--since", "yesterdayish"],
    "snapshot-no-baseline": lambda t, g: ["snapshot", "--out", t / "snap"],
    "fixed-inf": lambda t, g: ["baseline", "--policy", "fixed:inf"],
    "since-overflow": lambda t, g: ["outliers", "--since", "99999999999d"],
    "min-distance-nan": lambda t, g: ["outliers", "--min-distance", "nan"],
    "sweep-radii-inf": lambda t, g: ["sweep", "--radii", "0.5,inf"],
    "bad-embedder": lambda t, g: ["ingest", g, "--embedder", "word2vec"],
    "alpha-out-of-range": lambda t, g: ["outliers", "--alpha", "1.5"],
    "alpha-policy-zero": lambda t, g: ["baseline", "--policy", "alpha:0"],
    "bad-score": lambda t, g: ["baseline", "--score", "knn:0"],
    "evaluate-no-truth-field": lambda t, g: ["evaluate", g, *HASH],
    "evaluate-bad-truth": lambda t, g: [
        "evaluate",
        write_jsonl(t / "lab.jsonl", [{"text": "orbit launch", "category": "alpha", "anomaly": "maybe"}]),
        *HASH,
    ],
    "evaluate-bad-scores": lambda t, g: ["evaluate", g, "--scores", "knn:x", *HASH],
    "evaluate-other-embedder": lambda t, g: [
        "evaluate",
        write_jsonl(t / "lab.jsonl", [{"text": "orbit launch", "category": "alpha", "anomaly": True}]),
        "--embedder",
        "hashing:32",
    ],
    "alpha-without-p-values": lambda t, g: ["outliers", "--alpha", "0.1"],
    "recipe-on-jsonl": lambda t, g: ["evaluate", g, "--recipe", *HASH],
    "recipe-into-a-used-store": lambda t, g: ["evaluate", SAMPLE, "--recipe", *HASH],
    "url-with-path": lambda t, g: ["--chroma-url", "http://127.0.0.1:8000/prefix", "stats"],
    "url-bad-port": lambda t, g: ["--chroma-url", "http://127.0.0.1:99999", "stats"],
    "url-empty": lambda t, g: ["--chroma-url", "", "ingest", g, *HASH],
    "nightly-empty-out": lambda t, g: ["nightly", "--out", ""],
    "score-knn-empty-k": lambda t, g: ["baseline", "--score", "knn:"],
    "hashing-zero": lambda t, g: ["ingest", g, "--embedder", "hashing:0"],
    "evaluate-seeds-without-recipe": lambda t, g: ["evaluate", g, "--seeds", 5, *HASH],
    "evaluate-default-seeds-typed-without-recipe": lambda t, g: ["evaluate", g, "--seeds", 3, *HASH],
    "recipe-with-truth-field": lambda t, g: ["evaluate", SAMPLE, "--recipe", "--truth-field", "x", *HASH],
    "unknown-command": lambda t, g: ["nosuch"],
    "unknown-option": lambda t, g: ["outliers", "--bogus"],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_changes_nothing(
    case: str, seeded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, good = seeded
    before = store_state(db)
    args = BAD_INPUT[case](tmp_path, good)
    code, out, err = run_main(["--db", db, *args], capsys)
    assert code != 0
    assert "Traceback" not in out + err
    assert out == ""
    line = one_error_line(err)
    if case == "all-lines-bad":  # the reasons come first, then the one error line
        for reason in ("not valid JSON", "no 'text' field", "empty post"):
            assert f"skipped 1: {reason}" in err
    else:
        assert err == line + "\n"
    assert store_state(db) == before
    assert load_baseline(ChromaStore.open(db)) is None
    if case == "snapshot-no-baseline":
        assert not (tmp_path / "snap").exists()


def test_baseline_on_empty_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"
    code, out, err = run_main(["--db", db, "baseline"], capsys)
    assert code == 1 and out == ""
    assert one_error_line(err) == err.strip() and "ingest" in err
    assert ChromaStore.open(db).count() == 0


def test_some_bad_lines_are_skipped_with_reasons(
    seeded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"id": "m1", "text": text_for("alpha", 101), "category": "alpha"},
            "{not json",
            {"id": "m2", "body": "no text"},
            {"id": "m3", "text": ""},
            {"id": "m4", "text": text_for("beta", 102), "category": "beta"},
            {"text": text_for("beta", 103)},
        ],
    )
    code, out, err = run_main(["--db", db, "ingest", mixed, *HASH, "--json"], capsys)
    assert code == 0, err
    assert "Error:" not in err and "Traceback" not in err
    report = json.loads(out)
    assert (report["read"], report["added"], report["skipped"]) == (6, 3, 3)
    assert report["skip_reasons"] == {"not valid JSON": 1, "no 'text' field": 1, "empty post": 1}
    assert "read 6: 3 new" in err
    for reason in ("not valid JSON", "no 'text' field", "empty post"):
        assert f"skipped 1: {reason}" in err
    store = ChromaStore.open(db)
    assert store.count() == 33
    stored = store.metadata_for(["m1", "m2", "m3", "m4", content_id(text_for("beta", 103))])
    assert set(stored) == {"m1", "m4", content_id(text_for("beta", 103))}


def test_post_longer_than_the_window_is_stored_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    long_text = " ".join(f"word{i}" for i in range(400))  # hashing window: 256 words
    src = write_jsonl(
        tmp_path / "long.jsonl", [{"id": "long", "text": long_text}, {"id": "short", "text": "a b c"}]
    )
    code, out, err = run_main(["--db", db, "ingest", src, *HASH, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["truncated"] == 1
    assert "1 cut to the model window" in err
    meta = ChromaStore.open(db).metadata_for(["long", "short"])
    assert meta["long"]["truncated"] is True and meta["short"]["truncated"] is False
    assert meta["long"]["chars"] == len(long_text)


def test_console_script_error_end_to_end(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("monitor")
    assert script.is_file()
    done = subprocess.run(
        [str(script), "--db", str(tmp_path / "db"), "ingest", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"Error: no such file or directory: {tmp_path / 'missing.jsonl'}\n"


# -- stdin and pipes --------------------------------------------------------------------------------------


def test_stdin_verdicts_one_json_line_per_post(tmp_path: Path) -> None:
    db = tmp_path / "db"
    lines = [
        json.dumps({"text": "the shuttle launch slipped a week", "category": "x"}),
        json.dumps({"id": 7, "text": "new vitamin trial results", "category": "y"}),
    ]
    done = run_module("--db", db, "ingest", "-", *HASH, "--verdicts", input="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in rows] == [content_id("the shuttle launch slipped a week"), "7"]
    assert [r["category"] for r in rows] == ["x", "y"]
    assert all(r["action"] == "added" and r["verdict"] == "unscored" for r in rows)
    assert "read 2: 2 new" in done.stderr
    assert ChromaStore.open(db).count() == 2


def live_ingest(db: Path) -> subprocess.Popen[str]:
    """``monitor ingest - --verdicts`` as a process, its stdin, stdout and stderr pipes open."""
    return subprocess.Popen(
        cli_argv("--db", db, "ingest", "-", *HASH, "--verdicts"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_stdin_is_scored_as_lines_arrive(tmp_path: Path) -> None:
    proc = live_ingest(tmp_path / "db")
    assert proc.stdin is not None and proc.stdout is not None
    got: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: got.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        proc.stdin.write(json.dumps({"id": "live1", "text": "first line", "category": "x"}) + "\n")
        proc.stdin.flush()
        first = json.loads(got.get(timeout=60))  # while stdin is still open
        assert first["id"] == "live1" and first["action"] == "added"
        out, err = proc.communicate(json.dumps({"id": "live2", "text": "second line"}) + "\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["live2"]


def test_piped_stdout_is_only_the_data(seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, good = seeded
    code, _, err = run_main(["--db", db, "baseline", "--policy", "quantile:0.5", "--min-posts", 5], capsys)
    assert code == 0, err
    flagged = sum(m["is_outlier"] for m in all_meta(db).values())
    assert flagged > 0

    code, out, _ = run_main(["--db", db, "outliers", "--since", "2999-01-01", "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == []
    code, out, _ = run_main(["--db", db, "outliers", "--since", "1h", "--format", "json"], capsys)
    assert code == 0 and len(json.loads(out)) == flagged

    done = run_module("--db", db, "-v", "outliers", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # nothing but the JSON array
    assert len(rows) == flagged
    assert "Traceback" not in done.stderr

    done = run_module("--db", db, "-v", "ingest", good, *HASH, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["unchanged"] == 30
    assert "read 30: 0 new" in done.stderr


# -- read-only commands, re-runnable baselines, snapshot comparisons ------------------------------------


@pytest.mark.parametrize(
    "command", [["stats"], ["outliers"], ["sweep"], ["baseline"], ["snapshot", "--out", "s"]]
)
def test_read_only_commands_refuse_a_missing_database(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "typo-db"
    code, out, err = run_main(["--db", db, *command], capsys)
    assert code == 1 and out == ""
    assert "no monitor database at" in one_error_line(err)
    assert not db.exists()


def test_unknown_collection_is_named(seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = seeded
    code, _, err = run_main(["--db", db, "--collection", "other", "stats"], capsys)
    assert code == 1 and "no collection 'other'" in one_error_line(err) and "posts" in err


def test_bad_embedder_creates_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", good_records(5))
    code, _, err = run_main(["--db", tmp_path / "db", "ingest", good, "--embedder", "nope"], capsys)
    assert code == 1 and "unknown embedder" in one_error_line(err)
    assert not (tmp_path / "db").exists()


def test_baseline_if_missing_keeps_the_current_one(
    seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    assert run_main(["--db", db, "baseline", "--min-posts", 5, "--if-missing"], capsys)[0] == 0
    first = load_baseline(ChromaStore.open(db))
    code, out, err = run_main(["--db", db, "baseline", "--if-missing", "--format", "json"], capsys)
    assert code == 0 and "kept baseline v1" in err
    assert [r["category"] for r in json.loads(out)] == ["alpha", "beta"]
    again = load_baseline(ChromaStore.open(db))
    assert first is not None and again is not None and again.version == first.version == 1
    assert run_main(["--db", db, "baseline", "--min-posts", 5], capsys)[0] == 0
    rebuilt = load_baseline(ChromaStore.open(db))
    assert rebuilt is not None and rebuilt.version == 2


def test_snapshot_never_compares_with_another_store(
    seeded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, good = seeded
    other = tmp_path / "other-db"
    for d in (db, other):
        assert run_main(["--db", d, "ingest", good, *HASH], capsys)[0] == 0
        assert run_main(["--db", d, "baseline", "--min-posts", 5], capsys)[0] == 0
    snaps = tmp_path / "snaps"
    assert run_main(["--db", other, "snapshot", "--out", snaps / "other", "--max-points", 20], capsys)[0] == 0
    code, _, err = run_main(["--db", db, "snapshot", "--out", snaps / "mine", "--max-points", 20], capsys)
    assert code == 0 and "since last" not in err
    summary = json.loads((snaps / "mine" / "summary.json").read_text())
    assert summary["changes"] is None and summary["store"] == str(db.resolve())
    code, _, err = run_main(
        ["--db", db, "snapshot", "--out", snaps / "x", "--compare-to", snaps / "other"], capsys
    )
    assert code == 1 and "not of this store" in one_error_line(err)
    code, _, err = run_main(["--db", db, "snapshot", "--out", snaps / "mine2", "--max-points", 20], capsys)
    assert code == 0 and "since last: 0 new flags, 0 cleared" in err
    (snaps / "broken").mkdir()
    (snaps / "broken" / "summary.json").write_text("[1, 2]")
    code, _, err = run_main(
        ["--db", db, "snapshot", "--out", snaps / "mine3", "--compare-to", snaps / "broken"], capsys
    )
    assert code == 1 and "no readable snapshot" in one_error_line(err)


# -- second fresh-user round ------------------------------------------------------------------------------


def test_a_lone_surrogate_skips_one_record_not_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps(r) for r in good_records(5)]
    lines.insert(2, '{"id": "bad", "text": "\\ud800 lone", "category": "alpha"}')
    lines.insert(3, '{"id": "\\udc80x", "text": "fine text", "category": "alpha"}')
    src = tmp_path / "surrogates.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run_main(["--db", tmp_path / "db", "ingest", src, *HASH], capsys)
    assert code == 0, err
    assert "skipped 1: text is not valid Unicode" in err and "surrogates.jsonl:3" in err
    assert "skipped 1: id is not valid Unicode" in err
    assert ChromaStore.open(tmp_path / "db").count() == 5


@pytest.mark.parametrize("value", [["sci.space", "sci.med"], {"a": 1}, True])
def test_a_category_that_is_not_a_string_or_number_is_skipped(
    value: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_jsonl(
        tmp_path / "c.jsonl", [*good_records(3), {"id": "odd", "text": "orbit", "category": value}]
    )
    code, _, err = run_main(["--db", tmp_path / "db", "ingest", src, *HASH], capsys)
    assert code == 0 and "'category' is not a string or number" in err
    assert "odd" not in ChromaStore.open(tmp_path / "db").metadata_for(["odd"])


def test_closed_stdin_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        cli_argv("--db", tmp_path / "db", "ingest", "-", *HASH),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),  # the child starts with stdin closed
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: stdin is closed: pipe posts in, or give a file"
    assert "Traceback" not in result.stderr


def test_failed_first_ingest_leaves_no_database(tmp_path: Path) -> None:
    result = run_module("--db", tmp_path / "db", "ingest", "-", "--embedder", "hashing", input="")
    assert result.returncode == 1 and "stdin is empty" in result.stderr
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("name", ["posts.baseline", "a b", "x" * 510, "ab"])
def test_bad_or_reserved_collection_names(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_jsonl(tmp_path / "g.jsonl", good_records(3))
    code, _, err = run_main(["--db", tmp_path / "db", "--collection", name, "ingest", good, *HASH], capsys)
    assert code == 1 and "collection name" in one_error_line(err)
    assert not (tmp_path / "db").exists()


def test_snapshot_to_an_unwritable_folder_fails_first(
    seeded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    assert run_main(["--db", db, "baseline", "--min-posts", 5], capsys)[0] == 0
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should go")
    code, out, err = run_main(["--db", db, "snapshot", "--out", blocker / "snap"], capsys)
    assert code == 1 and out == ""
    assert one_error_line(err).startswith("Error: cannot write the snapshot to")


def test_outliers_csv_has_fixed_columns_even_when_empty(
    seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    code, out, _ = run_main(["--db", db, "outliers", "--format", "csv"], capsys)
    assert code == 0 and out.strip() == ",".join(OUTLIER_FIELDS)
    code, _, err = run_main(["--db", db, "outliers", "--category", " "], capsys)
    assert code == 1 and "--category is empty" in one_error_line(err)


# -- third fresh-user round ------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--id-field", "--category-field"])
def test_a_mistyped_field_name_fails_and_changes_nothing(
    flag: str, seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A named field that no record has: every record skipped, exit 1; no duplicates, no lost categories."""
    db, good = seeded
    before = all_meta(db)
    code, _, err = run_main(["--db", db, "ingest", good, *HASH, flag, "nosuch"], capsys)
    assert code == 1
    assert f"skipped 30: no 'nosuch' field ({flag})" in err
    assert err.rstrip().splitlines()[-1].startswith("Error: none of the 30 records")
    assert all_meta(db) == before


@pytest.mark.parametrize("flag", ["--id-field", "--category-field"])
def test_a_csv_without_the_named_column_is_refused(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "a.csv"
    src.write_text('id,text,category\nx1,"a post about orbits",alpha\n', encoding="utf-8")
    code, _, err = run_main(["--db", tmp_path / "db", "ingest", src, *HASH, flag, "ID"], capsys)
    assert code == 1
    assert err == f"Error: {src} has no 'ID' column for {flag} (columns: 'id', 'text', 'category')\n"
    assert not (tmp_path / "db").exists()


def test_a_record_without_a_category_never_unfiles_a_stored_post(
    seeded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    bare = write_jsonl(tmp_path / "bare.jsonl", [{"id": r["id"], "text": r["text"]} for r in good_records(4)])
    code, _, err = run_main(["--db", db, "ingest", bare, *HASH], capsys)
    assert code == 0, err
    assert "0 refiled, 4 unchanged" in err
    assert [all_meta(db)[f"g{i}"]["category"] for i in range(4)] == ["alpha", "beta", "alpha", "beta"]


def test_verdicts_into_a_reader_that_stops_early_exit_cleanly(tmp_path: Path) -> None:
    """`monitor ingest - --verdicts | head -1` while stdin is still open: a quiet exit, posts kept."""
    proc = live_ingest(tmp_path / "db")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(json.dumps({"id": "p1", "text": "first line", "category": "x"}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == "p1"
        proc.stdout.close()  # the reader (head -1) is gone
        proc.stdin.write(json.dumps({"id": "p2", "text": "second line", "category": "x"}) + "\n")
        proc.stdin.flush()
        code = proc.wait(timeout=60)  # stdin still open: the exit must not wait for it
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0 and "Fatal Python error" not in err and "Traceback" not in err, err
    assert ChromaStore.open(tmp_path / "db").count() >= 1


@pytest.mark.parametrize(("in_topic", "matches"), [("sci.space", 1), ("*", 20), ("nosuch.*", 0)])
def test_a_recipe_that_cannot_split_is_refused_before_any_work(
    in_topic: str, matches: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    code, out, err = run_main(["--db", db, "evaluate", SAMPLE, "--recipe", "--in-topic", in_topic, *HASH], capsys)
    assert code == 1 and out == ""
    assert err == (
        f"Error: --in-topic {in_topic!r} matches {matches} of the archive's 20 groups: "
        "the recipe needs at least two in-topic groups and some others\n"
    )
    assert not (db / "chroma.sqlite3").exists() or ChromaStore.open(db).count() == 0


def test_outliers_for_a_category_nobody_has_says_so(
    seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = seeded
    assert run_main(["--db", db, "baseline", "--min-posts", 5], capsys)[0] == 0
    code, out, err = run_main(["--db", db, "outliers", "--category", "alpah", "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == []
    assert err == "note: no baseline category matches 'alpah' (have: alpha, beta)\n"
    code, out, err = run_main(["--db", db, "outliers", "--category", "alpha", "--alpha", "0.0001"], capsys)
    assert code == 0 and err == ""  # a real category with nothing flagged: no note


@pytest.mark.parametrize("command", [["stats"], ["stats", "--format", "json"], ["sweep"]])
def test_a_reader_gone_before_the_output_is_a_quiet_exit_0(
    command: list[str], seeded: tuple[Path, Path]
) -> None:
    """`monitor stats | (sleep 1; true)`: the pipe is closed when monitor writes; exit 0, no noise."""
    db, _ = seeded
    proc = subprocess.Popen(
        cli_argv("--db", db, *command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == "", err


@pytest.mark.parametrize(("flag", "value"), [("--id-field", "text"), ("--id-field", "category")])
def test_an_id_field_that_is_the_text_or_category_is_refused(
    flag: str, value: str, seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, good = seeded
    before = store_state(db)
    code, _, err = run_main(["--db", db, "ingest", good, *HASH, flag, value], capsys)
    assert code == 1 and err.startswith("Error: the id, text and category fields must differ")
    assert store_state(db) == before


def test_sweep_with_empty_radii_is_refused(seeded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["--db", seeded[0], "sweep", "--radii", ""], capsys)
    assert code == 1 and err.startswith("Error: bad --radii ''")
