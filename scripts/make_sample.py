"""Build the small real sample shipped with the package: ``monitor/data/20news-sample.tar.gz``.

From the full 20news-bydate archive it takes, with seeded per-category sampling:

- for each sci.* group: 150 train and 50 test posts (the "on-topic" stream);
- from each of the 16 other groups: 3 test posts (48 "off-topic" posts).

The posts' bytes are unchanged and the tarball is deterministic (sorted entries, mtime 0, uid/gid 0,
ustar, gzip mtime 0), so re-running with the same archive and seed gives the identical file.
It also writes ``README.md`` next to the sample.

    python scripts/make_sample.py [--archive ../shared/data/20news-bydate.tar.gz] [--out ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import tarfile
from collections import Counter
from pathlib import Path

from monitor.errors import MonitorError
from monitor.posts import Post
from monitor.sources.newsgroups import NewsgroupArchive

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "20news-bydate.tar.gz"
DEFAULT_OUT = REPO / "monitor" / "data" / "20news-sample.tar.gz"

ON_TOPIC = "sci.*"
TRAIN_PER_GROUP = 150
TEST_PER_GROUP = 50
OFF_TOPIC_PER_GROUP = 3

Member = tuple[str, str, int]  # split, category, article


def select(archive: Path, seed: int) -> dict[Member, bytes]:
    """The sample's posts, keyed by (split, category, article), with their original bytes."""
    plan = [  # (split, categories, exclude, per category)
        ("train", [ON_TOPIC], [], TRAIN_PER_GROUP),
        ("test", [ON_TOPIC], [], TEST_PER_GROUP),
        ("test", ["*"], [ON_TOPIC], OFF_TOPIC_PER_GROUP),
    ]
    selections = [
        NewsgroupArchive(archive, split=split, categories=cats, exclude=excl, per_category=n, seed=seed)
        for split, cats, excl, n in plan
    ]
    posts: dict[Member, bytes] = {}
    for source in selections:
        for item in source:
            if not isinstance(item, Post):
                raise SystemExit(f"unexpected skipped post in {archive}: {item.where} ({item.reason})")
            key = (str(item.extra["split"]), str(item.category), int(item.extra["article"]))
            posts[key] = item.text.encode("latin-1")  # latin-1 round-trips every byte exactly
    return posts


def write_tar(posts: dict[Member, bytes], out: Path) -> None:
    """A deterministic .tar.gz in the bydate layout, with directory entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        dirs_done: set[str] = set()
        for split, category, article in sorted(posts):
            split_dir = f"20news-bydate-{split}"
            for d in (split_dir, f"{split_dir}/{category}"):
                if d not in dirs_done:
                    tf.addfile(_info(d, tarfile.DIRTYPE, 0o755, 0))
                    dirs_done.add(d)
            data = posts[(split, category, article)]
            name = f"{split_dir}/{category}/{article}"
            tf.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())
    os.replace(tmp, out)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_readme(posts: dict[Member, bytes], out: Path, seed: int) -> Path:
    counts = Counter((category, split) for split, category, _ in posts)
    categories = sorted({category for _, category, _ in posts})
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    n_train = sum(1 for split, _, _ in posts if split == "train")
    n_test = len(posts) - n_train
    n_off = sum(1 for split, category, _ in posts if not category.startswith("sci."))
    rows = "\n".join(f"| {c} | {counts[(c, 'train')]} | {counts[(c, 'test')]} |" for c in categories)
    seed_arg = f" --seed {seed}" if seed else ""
    text = f"""# 20news-sample.tar.gz — a small real sample of 20 Newsgroups

A subset of the public **20 Newsgroups** corpus (originally collected by Ken Lang), in its "bydate"
train/test split, the same split scikit-learn's `fetch_20newsgroups` uses. It is used by the tests and
the demo: the four `sci.*` groups are the normal stream, the posts from the other 16 groups are off-topic.

- File: `20news-sample.tar.gz` ({out.stat().st_size:,} bytes)
- sha256: `{digest}`
- Layout: `20news-bydate-train/<category>/<id>` and `20news-bydate-test/<category>/<id>`, as in the full
  archive; post files are the original bytes (Latin-1 where not ASCII, some CR bytes kept).
- Posts: {len(posts)} = {n_train} train + {n_test} test; per sci.* group {TRAIN_PER_GROUP} train and
  {TEST_PER_GROUP} test; {OFF_TOPIC_PER_GROUP} test posts from each other group ({n_off} off-topic posts).
- Deterministic tarball: entries sorted (split, category, numeric id) with directory entries, mtime 0,
  uid/gid 0, ustar format, gzip mtime 0.

## How it was made

From the full `20news-bydate.tar.gz` (re-packed bydate archive, 18,846 posts), with seeded sampling per
(split, category) as done by `monitor.sources.NewsgroupArchive(per_category=..., seed={seed})`:

```
python scripts/make_sample.py --archive ../shared/data/20news-bydate.tar.gz{seed_arg}
```

Re-running the command gives the identical file.

## Counts

| category | train | test |
|---|---:|---:|
{rows}
| **total** | **{n_train}** | **{n_test}** |
"""
    readme = out.with_name("README.md")
    readme.write_text(text, encoding="utf-8")
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="full 20news-bydate.tar.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="sample .tar.gz to write")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        posts = select(args.archive, args.seed)
    except MonitorError as e:
        raise SystemExit(f"make_sample: {e}") from None
    write_tar(posts, args.out)
    readme = write_readme(posts, args.out, args.seed)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {len(posts)} posts, sha256 {digest})")
    print(f"wrote {readme}")


if __name__ == "__main__":
    main()
