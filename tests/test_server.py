"""Server mode and safe concurrency against real Chroma: a ``chroma run`` server the tests start
themselves, embedded folders with their single-writer lock, and processes killed for real.

The deterministic HashingEmbedder throughout (the model is irrelevant to these properties).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chroma_server import ChromaServer, free_port
from conftest import SAMPLE, Target, run_main, topic_text

from monitor.api import Monitor
from monitor.embedders.hashing import HashingEmbedder
from monitor.errors import StoreError
from monitor.locks import WRITER_LOCK, held_elsewhere, holder
from monitor.posts import Post
from monitor.store import MAX_PAYLOAD_BYTES, ChromaStore, row_bytes, write_batches

HASH = ("--embedder", "hashing")
TOPICS = ("space", "med", "crypt")


# -- helpers ----------------------------------------------------------------------------------------------


def cli(*args: Any, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The ``monitor`` command in a child process (its own Chroma client, its own locks)."""
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(err: str) -> str:
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err, err
    return errors[0]


def records(start: int, stop: int, *, prefix: str = "a", id_every: int = 2) -> list[dict[str, Any]]:
    """Synthetic arrivals; every ``id_every``-th one has no id, so it gets a content id."""
    out = []
    for i in range(start, stop):
        topic = TOPICS[i % 3]
        rec: dict[str, Any] = {"text": topic_text(topic, f"{prefix}{i}", 25), "category": topic}
        if i % id_every:
            rec["id"] = f"{prefix}/{i}"
        out.append(rec)
    return out


def write_jsonl(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def train_posts(n_per: int = 30) -> list[Post]:
    return [Post(topic_text(t, f"train{i}", 25), t, f"train/{t}/{i}") for t in TOPICS for i in range(n_per)]


def everything(store: ChromaStore) -> dict[str, tuple[dict[str, Any], str]]:
    """id -> (metadata, document) for every stored post."""
    return {
        pid: (meta, doc)
        for page in store.pages(documents=True)
        for pid, meta, doc in zip(page.ids, page.metadatas, page.documents or [], strict=True)
    }


def assert_exactly(store: ChromaStore, expected: list[dict[str, Any]], n_train: int) -> None:
    """Every expected arrival stored once with its own text and a verdict; nothing else."""
    rows = everything(store)
    assert store.count() == len(rows) == n_train + len(expected)
    arrivals = {pid: row for pid, row in rows.items() if not pid.startswith("train/")}
    assert len(arrivals) == len(expected)
    by_text = {doc: (pid, meta) for pid, (meta, doc) in arrivals.items()}
    assert len(by_text) == len(expected)  # no text stored twice under two ids
    for rec in expected:
        pid, meta = by_text[rec["text"]]
        assert pid == rec.get("id", pid) and (pid.startswith("sha256:") or "id" in rec)
        assert meta["category"] == rec["category"]
        assert meta["verdict"] in {"inlier", "outlier"} and meta["baseline_version"] == 1


@pytest.fixture
def server_target(chroma_server: ChromaServer, tmp_path: Path) -> Target:
    return Target("server", tmp_path / "unused-db", chroma_server.url, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_server(tmp_path: Path) -> Any:
    """A server of this test's own, to kill and restart on the same path and port."""
    server = ChromaServer(tmp_path / "server-data", tmp_path / "server.log").start()
    yield server
    server.stop()


# -- batching, retries, a server that is down ----------------------------------------------------------


def test_write_batches_respect_rows_and_bytes() -> None:
    sizes = [10, 10, 50, 10, 10, 10, 100, 1]
    slices = list(write_batches(len(sizes), 3, lambda i: sizes[i], max_bytes=40))
    assert [i for a, b in slices for i in range(a, b)] == list(range(len(sizes)))  # each row once, in order
    for a, b in slices:
        assert 1 <= b - a <= 3
        assert sum(sizes[a:b]) <= 40 or b - a == 1  # a single oversized row still goes alone
    assert slices == [(0, 2), (2, 3), (3, 6), (6, 7), (7, 8)]
    # the estimate covers Chroma's base64 float32 vectors: ~2,500 rows of 3072 dims per 40 MB
    per_row = row_bytes(3072, None, None, "id")
    assert 2000 < 40 * 1024 * 1024 // per_row < 2600 and MAX_PAYLOAD_BYTES < 40 * 1024 * 1024


def test_one_write_over_the_servers_payload_cap_is_split(server_target: Target) -> None:
    store = server_target.open()
    n, dim = 420, 8
    docs = [f"{i} " + "x" * 100_000 for i in range(n)]  # ~42 MB of text: over the 40 MB cap in one call
    vecs = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    ids = [f"big{i}" for i in range(n)]
    metas = [{"category": "c"}] * n
    with pytest.raises(Exception, match=r"(?i)payload too large"):  # the cap is real: one raw request fails
        store.posts.upsert(ids=ids, embeddings=vecs, documents=docs, metadatas=metas)
    assert store.count() == 0
    store.upsert(ids, vecs, docs, metas)
    assert store.count() == n
    back = store.get(["big0", f"big{n - 1}"], documents=True)
    assert sorted(back.documents or []) == sorted([docs[0], docs[-1]])


def test_a_server_that_is_down_is_one_line_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run_main(["--chroma-url", url, "stats"], capsys)
    line = error_line(err)
    assert code == 1 and out == ""
    assert url in line and "cannot reach the Chroma server" in line
    code, _, err = run_main(["--chroma-url", "ftp://x", "stats"], capsys)
    assert code == 1 and "bad Chroma URL" in error_line(err)


def test_a_url_that_is_not_a_chroma_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    web = HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}"
        code, out, err = run_main(["--chroma-url", url, "stats"], capsys)
    finally:
        web.shutdown()
    assert code == 1 and out == ""
    assert error_line(err) == f"Error: {url} answers, but not as a Chroma server (it sent a web page): check the port"
    code, _, err = run_main(["--chroma-url", "", "stats"], capsys)  # empty, also for read-only commands
    assert code == 1 and "--chroma-url is empty" in error_line(err)
    code, _, err = run_main(["--db", tmp_path / "db", "--chroma-url", url, "stats"], capsys)
    assert code == 1 and "give --db or --chroma-url, not both" in error_line(err)
    assert not (tmp_path / "db").exists()


def test_a_dropped_connection_is_retried_until_the_server_is_back(own_server: ChromaServer) -> None:
    store = ChromaStore.open(url=own_server.url, collection="retry-test")
    dim = 16
    store.upsert(["a0"], np.ones((1, dim), np.float32), ["first"], [{"category": "c"}])
    store.retries = 8  # waits 0.5, 1, 2, 4 ... s: room for a restart
    own_server.kill()
    restart = threading.Timer(1.0, own_server.start)
    restart.start()
    vecs = np.random.default_rng(1).normal(size=(50, dim)).astype(np.float32)
    store.upsert([f"b{i}" for i in range(50)], vecs, ["later"] * 50, [{"category": "c"}] * 50)
    restart.join()
    assert store.count() == 51  # the write went through once the server was back; the first one survived
    store.retries = 1
    own_server.kill()
    with pytest.raises(StoreError, match=f"cannot reach the Chroma server at {own_server.url}"):
        store.count()


# -- several writers on one server; a server killed mid-ingest -----------------------------------------------


def test_two_ingest_processes_at_once_on_one_server(server_target: Target, tmp_path: Path) -> None:
    mon = server_target.monitor(embedder=HashingEmbedder())
    mon.ingest(train_posts())
    mon.build_baseline(min_posts=10)
    first = records(0, 300)
    second = records(150, 450)  # 150 posts in both, with and without ids
    files = [write_jsonl(tmp_path / f"{k}.jsonl", recs) for k, recs in (("one", first), ("two", second))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", *server_target.cli_args, "ingest", f, *HASH, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        report = json.loads(out)
        assert report["read"] == 300 and report["skipped"] == 0
    assert_exactly(server_target.open(), records(0, 450), n_train=90)


def test_server_killed_mid_ingest_then_rerun_loses_and_duplicates_nothing(
    own_server: ChromaServer, tmp_path: Path
) -> None:
    target = Target("server", tmp_path / "unused", own_server.url, "killed")
    mon = target.monitor(embedder=HashingEmbedder())
    mon.ingest(train_posts())
    mon.build_baseline(min_posts=10)
    arrivals = records(0, 600, prefix="k")
    src = write_jsonl(tmp_path / "arrivals.jsonl", arrivals)
    args = [sys.executable, "-m", "monitor.cli", *target.cli_args, "ingest", src, *HASH]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = target.open()
    deadline = time.monotonic() + 120
    while store.count() < 90 + 64 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    own_server.kill()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # it did not finish: the server died under it
    assert own_server.url in error_line(err)

    own_server.start()
    partial = target.open().count()
    assert 90 + 64 <= partial < 90 + len(arrivals)
    report = target.monitor(embedder=HashingEmbedder()).ingest(src)  # the re-run
    assert report.unchanged >= partial - 90 and report.added + report.unchanged == len(arrivals)
    assert_exactly(target.open(), arrivals, n_train=90)


# -- embedded: one writer at a time ------------------------------------------------------------------------------


def test_second_embedded_writer_is_refused_then_recovers_after_sigkill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    more = write_jsonl(tmp_path / "more.jsonl", records(0, 40, prefix="m"))
    first = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "--db", str(db), "ingest", "-", *HASH, "--verdicts"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdin is not None and first.stdout is not None
        for rec in records(0, 3, prefix="s"):
            first.stdin.write(json.dumps(rec) + "\n")
        first.stdin.flush()
        stored = [json.loads(first.stdout.readline()) for _ in range(3)]  # stored and still running
        assert [s["action"] for s in stored] == ["added"] * 3

        # this test process is the second writer (the lock is the kernel's, per process)
        for command in (
            ["ingest", more, *HASH],
            ["baseline", "--min-posts", 2],
            ["nightly", "--out", tmp_path],
        ):
            code, _, err = run_main(["--db", db, *command], capsys)
            line = error_line(err)
            assert code == 75, err
            assert f"pid {first.pid}" in line and "monitor ingest" in line and "since 20" in line
            assert "--chroma-url" in line
        assert not list(tmp_path.glob("20*"))  # the refused nightly wrote no snapshot
        assert (held_elsewhere(db / WRITER_LOCK) or {})["pid"] == first.pid  # what a failed read names
        code, out, err = run_main(["--db", db, "stats", "--format", "json"], capsys)
        assert code == 0, err  # readers do not wait for the writer
        assert json.loads(out)["posts"] == 3
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    after = cli("--db", db, "ingest", more, *HASH, "--json")  # the dead writer's lock is gone
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["added"] == 40
    assert ChromaStore.open(db).count() == 43


def kernel_lock_is_free(path: Path) -> bool:
    """Whether a new descriptor can take the flock (one held by this process blocks it too)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_one_process_may_open_its_own_folder_twice(tmp_path: Path) -> None:
    db = tmp_path / "db"
    one = Monitor(db, embedder=HashingEmbedder())
    two = Monitor(db, embedder=HashingEmbedder())
    one.ingest(train_posts(3))
    two.ingest([Post("another post", "space", "x")])
    assert one.store.count() == 10
    lock = db / WRITER_LOCK
    assert holder(lock)["pid"] == os.getpid() and not kernel_lock_is_free(lock)
    assert held_elsewhere(lock) is None  # this process's own lock is no other writer
    one.close()
    assert not kernel_lock_is_free(lock)  # still held for the other monitor
    two.close()
    assert kernel_lock_is_free(lock)  # released once both closed


# -- the nightly job ------------------------------------------------------------------------------------------


def test_nightly_writes_dated_snapshots_and_keeps_the_last_n(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mon = target.monitor(embedder=HashingEmbedder())
    mon.ingest(train_posts(12))
    mon.close()
    out = tmp_path / "snaps"
    made = []
    for _ in range(3):
        code, stdout, err = run_main(
            [*target.cli_args, "nightly", "--out", out, "--keep", 2, "--min-posts", 5, "--max-points", 20],
            capsys,
        )
        assert code == 0, err
        made.append(Path(stdout.strip()))
    kept = sorted(p for p in out.iterdir() if p.is_dir())
    assert kept == made[1:] and not made[0].exists() and made[1].parent == out
    summary = json.loads((made[1] / "summary.json").read_text())
    assert (made[1] / "report.html").is_file() and summary["posts"] == 36
    assert summary["baseline"]["version"] == 2  # the baseline was recomputed each night
    assert summary["changes"]["previous_snapshot"] == str(made[0])  # compared with the night before
    assert "removed 1" in err


def test_a_nightly_killed_mid_snapshot_leaves_no_dated_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed while writing leaves only a ``.partial-*`` folder, which the next run clears."""
    from monitor.nightly import PARTIAL, snapshot_folders

    db, out = tmp_path / "db", tmp_path / "snaps"
    Monitor(db, embedder=HashingEmbedder()).ingest(train_posts(12))
    leftover = out / f"{PARTIAL}2026-12-01T023000Z"
    leftover.mkdir(parents=True)
    (leftover / "embedding_map.png").write_bytes(b"half")
    code, stdout, err = run_main(
        ["--db", db, "nightly", "--out", out, "--min-posts", 5, "--max-points", 20], capsys
    )
    assert code == 0, err
    assert not leftover.exists()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [Path(stdout.strip()).name]
    assert snapshot_folders(out) == [Path(stdout.strip())]


def test_nightly_script_takes_paths_from_the_callers_folder(tmp_path: Path) -> None:
    """scripts/nightly.sh run from elsewhere (cron): MONITOR_DB and --out are the caller's paths."""
    with Monitor(tmp_path / "db", embedder=HashingEmbedder()) as mon:
        mon.ingest(train_posts(12))
    script = Path(__file__).resolve().parent.parent / "scripts" / "nightly.sh"
    proc = subprocess.run(
        [script, "--out", "snaps", "--min-posts", "5", "--max-points", "20"],
        cwd=tmp_path,
        env={**os.environ, "MONITOR_DB": "db"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / proc.stdout.strip()
    assert written.parent == tmp_path / "snaps" and (written / "summary.json").is_file()


def test_overlapping_nightly_runs_exit_75(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, out = tmp_path / "db", tmp_path / "snaps"
    Monitor(db, embedder=HashingEmbedder()).ingest(train_posts(12))
    hold = (
        "import sys, time; from pathlib import Path; from monitor.nightly import nightly_lock\n"
        "with nightly_lock(Path(sys.argv[1]), 'monitor nightly (test)'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, stdout, err = run_main(["--db", db, "nightly", "--out", out, "--min-posts", 5], capsys)
        line = error_line(err)
        assert code == 75 and stdout == ""
        assert "another nightly run" in line and f"pid {holder.pid}" in line
        assert not [p for p in out.iterdir() if p.is_dir()]
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_main(
        ["--db", db, "nightly", "--out", out, "--min-posts", 5, "--max-points", 20], capsys
    )
    assert code == 0, err


# -- the same main job embedded and on a server ----------------------------------------------------------------


def main_job(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The README's main job steps (hashing embedder); what each printed."""

    def step(*more: Any) -> str:
        code, out, err = run_main([*args, *more], capsys)
        assert code == 0, err
        return out

    step("ingest", SAMPLE, "--split", "train", "--category", "sci.*", "--per-category", 40, *HASH)
    step("baseline", "--if-missing")
    step("ingest", SAMPLE, "--split", "test", "--category", "sci.*", "--per-category", 15, *HASH)
    step("ingest", SAMPLE, "--split", "test", "--exclude-category", "sci.*", "--as-category", "sci.*", *HASH)
    stats = json.loads(step("stats", "--format", "json"))
    for key in ("location", "baseline"):
        stats.pop(key)
    return {"stats": stats, "outliers": json.loads(step("outliers", "--format", "json"))}


def test_main_job_gives_the_same_outputs_embedded_and_on_a_server(
    server_target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded = main_job(["--db", str(tmp_path / "db"), "--collection", server_target.collection], capsys)
    served = main_job(server_target.cli_args, capsys)
    assert embedded["stats"] == served["stats"] and embedded["stats"]["posts"] > 200
    strip = [{k: v for k, v in r.items() if k != "ingested_at"} for r in embedded["outliers"]]
    assert strip == [{k: v for k, v in r.items() if k != "ingested_at"} for r in served["outliers"]]
    assert len(strip) > 5


# -- compose file, Dockerfile, container entrypoint ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_names_what_it_must() -> None:
    import chromadb
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    chroma, mon = compose["services"]["chroma"], compose["services"]["monitor"]
    assert chroma["image"] == f"chromadb/chroma:{chromadb.__version__}"  # pinned to the client's version
    volume = chroma["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]  # a named volume
    assert all(str(p).startswith("127.0.0.1:") for p in chroma["ports"])
    assert "/api/v2/heartbeat" in " ".join(chroma["healthcheck"]["test"])
    assert mon["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert mon["environment"]["MONITOR_CHROMA_URL"] == "http://chroma:8000"
    assert mon["depends_on"]["chroma"]["condition"] == "service_healthy"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "docker/entrypoint.sh" in dockerfile


def test_compose_health_check_asks_the_heartbeat(chroma_server: ChromaServer) -> None:
    """The health check runs in an image with bash only; here it runs with bash against a real server."""
    import yaml

    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["chroma"]["healthcheck"][
        "test"
    ]
    assert test[:3] == ["CMD", "/bin/bash", "-c"]
    script = test[3].replace("$$", "$")  # compose's escape

    def check(port: int) -> int:
        return subprocess.run(["bash", "-c", script.replace("/8000", f"/{port}")], timeout=30).returncode

    assert check(chroma_server.port) == 0
    assert check(free_port()) != 0


def entrypoint(env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh")],
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_container_entrypoint_runs_the_nightly_job_against_a_server(
    server_target: Target, tmp_path: Path
) -> None:
    server_target.monitor(embedder=HashingEmbedder()).ingest(train_posts(12))
    env = {
        "MONITOR_CHROMA_URL": str(server_target.url),
        "MONITOR_COLLECTION": server_target.collection,
        "MONITOR_SNAPSHOTS": str(tmp_path / "snaps"),
        "NIGHTLY_ONCE": "1",
    }
    done = entrypoint(env)
    assert done.returncode == 0, done.stderr
    folders = [p for p in (tmp_path / "snaps").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "report.html").is_file()
    summary = json.loads((folders[0] / "summary.json").read_text())
    assert summary["store"] == server_target.url and summary["posts"] == 36

    url = f"http://127.0.0.1:{free_port()}"
    down = entrypoint({**env, "MONITOR_CHROMA_URL": url, "MONITOR_WAIT_SECONDS": "1"})
    assert down.returncode != 0 and f"no Chroma server answering at {url}" in down.stderr

    start = time.monotonic()  # a typo in the URL: refused at once, not after the heartbeat wait
    typo = entrypoint({**env, "MONITOR_CHROMA_URL": "ftp://chroma:8000", "MONITOR_WAIT_SECONDS": "60"})
    assert typo.returncode == 2 and time.monotonic() - start < 30
    assert typo.stderr.startswith("monitor: MONITOR_CHROMA_URL: bad Chroma URL 'ftp://chroma:8000'")


def test_container_entrypoint_stops_at_once_while_it_waits_for_the_server(tmp_path: Path) -> None:
    """docker stop during the heartbeat wait: exit 143 now, not when the wait runs out; no child left."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "MONITOR_CHROMA_URL": f"http://127.0.0.1:{free_port()}"}
    env.update({"MONITOR_WAIT_SECONDS": "120", "NIGHTLY_ONCE": "1", "MONITOR_SNAPSHOTS": str(tmp_path)})
    proc = subprocess.Popen(["sh", str(ROOT / "docker" / "entrypoint.sh")], env=env, stderr=subprocess.PIPE)
    try:
        deadline, waiting = time.monotonic() + 30, []
        while not waiting and time.monotonic() < deadline:
            waiting = _children(proc.pid)
            time.sleep(0.05)
        start = time.monotonic()
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and time.monotonic() - start < 20
    assert waiting and _gone(waiting), "the heartbeat wait was left running"
    bad = entrypoint({**env, "MONITOR_WAIT_SECONDS": "abc"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "monitor: MONITOR_WAIT_SECONDS must be a whole number of seconds, got 'abc'"


def test_container_entrypoint_schedules_the_next_run(chroma_server: ChromaServer, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    at = (datetime.now(UTC) + timedelta(hours=2)).strftime("%H:%M")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "MONITOR_CHROMA_URL": chroma_server.url, "NIGHTLY_AT": at}
    env["MONITOR_SNAPSHOTS"] = str(tmp_path)
    proc = subprocess.Popen(
        ["sh", str(ROOT / "docker" / "entrypoint.sh")], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        deadline, sleepers = time.monotonic() + 10, []
        while not sleepers and time.monotonic() < deadline:  # the sleep starts just after the line
            sleepers = _children(proc.pid)
            time.sleep(0.05)
    finally:
        proc.terminate()  # docker stop: the shell's trap ends its pending sleep too
        proc.wait(timeout=30)
    assert proc.returncode == 143
    assert sleepers and _gone(sleepers), "the entrypoint left its sleep running"
    assert f"next nightly run at {at} UTC" in line, line
    pause = int(line.rsplit("(in ", 1)[1].split("s)")[0])
    assert 2 * 3600 - 120 <= pause <= 2 * 3600  # to the minute
    assert not list(tmp_path.iterdir())  # nothing ran yet


def _gone(pids: list[int], within: float = 10.0) -> bool:
    """Whether every pid has ended (exited or a zombie waiting to be reaped) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the shell's ``sleep``), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_prune_keeps_the_new_snapshot_and_ignores_what_is_not_one(tmp_path: Path) -> None:
    from monitor.nightly import prune

    out = tmp_path / "snaps"
    for name in ("2026-01-01T000000Z", "2026-01-02T000000Z", "2099-01-01T000000Z"):
        (out / name).mkdir(parents=True)
        (out / name / "summary.json").write_text("{}")
    (out / "2026-01-03T000000Z").mkdir()  # half-written: no summary.json
    target = tmp_path / "precious"
    target.mkdir()
    (out / "2020-01-01T000000Z").symlink_to(target)
    current = out / "2026-12-03T000000Z"
    current.mkdir()
    (current / "summary.json").write_text("{}")
    removed = prune(out, keep=2, current=current)
    # the folder dated in the future is neither counted nor removed: the newest real night stays
    assert [p.name for p in removed] == ["2026-01-01T000000Z"]
    assert (out / "2026-01-02T000000Z").is_dir() and (out / "2099-01-01T000000Z").is_dir()
    assert current.is_dir() and target.is_dir()
    assert (out / "2026-01-03T000000Z").is_dir()  # not a snapshot: not counted, not deleted
