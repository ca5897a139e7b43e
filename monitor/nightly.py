"""The nightly job: recompute the baseline, re-score every post, snapshot into a dated folder.

``out/<UTC time>/`` gets a full snapshot (compared with the previous one beside it), written as
``out/.partial-<UTC time>/`` and renamed once complete, so a run killed midway leaves no dated folder
(the next run clears its leftovers); only the newest ``keep`` dated folders are kept. A lock file in ``out`` makes overlapping runs safe:
a second run while one is going exits at once with :class:`~monitor.errors.LockedError`
(exit code 75). On an embedded database the run also holds the folder's writer lock.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.calibration import DEFAULT_POLICY
from monitor.detector import DEFAULT_MIN_POSTS
from monitor.errors import InputError
from monitor.locks import ProcessLock
from monitor.scores import DEFAULT_SCORE
from monitor.snapshot import SUMMARY

if TYPE_CHECKING:
    from monitor.api import Monitor

NIGHTLY_LOCK = ".nightly.lock"
PARTIAL = ".partial-"  # a snapshot being written; renamed to its dated name once complete
STAMP_FORMAT = "%Y-%m-%dT%H%M%SZ"
DATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z(-\d+)?$")


def nightly_lock(out: Path, command: str | None = None) -> ProcessLock:
    return ProcessLock(
        out / NIGHTLY_LOCK,
        what=f"the nightly snapshot folder {out}",
        busy="another nightly run is still going; this one stops here (nothing was changed)",
        command=command,
    )


def dated_folder(out: Path, now: datetime | None = None) -> Path:
    """``out/<UTC time>``, with a suffix if a folder of that second exists already."""
    stamp = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    folder, n = out / stamp, 1
    while folder.exists():
        n += 1
        folder = out / f"{stamp}-{n}"
    return folder


def snapshot_folders(out: Path) -> list[Path]:
    """The complete dated snapshot folders in ``out`` (real folders holding a summary.json),
    oldest first; anything else — other files, symlinks, half-written folders — is ignored."""
    if not out.is_dir():
        return []
    found = [
        p
        for p in out.iterdir()
        if DATED.match(p.name) and p.is_dir() and not p.is_symlink() and (p / SUMMARY).is_file()
    ]
    return sorted(found, key=_order)


def prune(out: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Delete all but the newest ``keep`` dated folders, never ``current`` (the one just written);
    returns what was deleted.

    Folders dated after ``current`` (a clock that was once ahead, a copied folder) are neither
    counted nor deleted: going by name, they would otherwise push out every real night.
    """
    folders = snapshot_folders(out)
    if current is not None:
        mine = current.resolve()
        newer = _order(current)
        folders = [p for p in folders if p.resolve() != mine and _order(p) < newer]
    old = folders[: max(0, len(folders) - (keep - (current is not None)))] if keep > 0 else []
    for folder in old:
        shutil.rmtree(folder)
    return old


def _order(folder: Path) -> tuple[str, int]:
    """Sort key of a dated folder: its time stamp, then its ``-N`` suffix."""
    return folder.name[:18], int(folder.name[19:] or 1)


def _clear_leftovers(out: Path) -> None:
    """Remove what runs killed mid-snapshot left (``.partial-*`` folders): only ever ours."""
    for p in out.glob(f"{PARTIAL}*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def run_nightly(
    monitor: Monitor,
    out: Path,
    *,
    keep: int = 14,
    policy: str = DEFAULT_POLICY,
    score: str = DEFAULT_SCORE,
    robust: bool = False,
    min_posts: int = DEFAULT_MIN_POSTS,
    max_points: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the nightly job once; returns what it did (folder, baseline, re-score, pruned)."""
    if keep < 1:
        raise InputError(f"bad keep {keep}: keep at least the snapshot just written (1)")
    say = progress or (lambda _msg: None)
    if not str(out).strip():
        raise InputError("--out is empty: give the folder for the dated snapshots")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = nightly_lock(out, command)
        lock.acquire()
    except OSError as exc:
        raise InputError(f"cannot use {out} for snapshots: {exc.strerror or exc}") from None
    try:
        monitor.store.claim_writer(command)  # embedded: refuse at once if another process writes
        say("recomputing the baseline and re-scoring")
        baseline, rescored = monitor.build_baseline(policy, min_posts, score=score, robust=robust)
        _clear_leftovers(out)
        folder = dated_folder(out)
        partial = out / f"{PARTIAL}{folder.name}"
        say(f"snapshot into {folder}")
        try:
            summary = monitor.snapshot(partial, max_points=max_points, seed=seed)
            partial.rename(folder)  # a dated folder appears complete, or not at all
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # no half-written snapshot left to compare with
            raise
        pruned = prune(out, keep, current=folder)
    finally:
        lock.release()
    return {
        "snapshot": str(folder),
        "baseline_version": baseline.version,
        "rescored": asdict(rescored) if rescored is not None else None,
        "posts": summary["posts"],
        "outliers": summary["outliers"],
        "changes": summary.get("changes"),
        "pruned": [str(p) for p in pruned],
    }
