"""The ``monitor`` command: a thin click layer over :class:`monitor.api.Monitor`.

Results go to stdout (tables for people, ``--format json|csv|nl`` for programs); progress,
summaries and errors go to stderr. Any :class:`MonitorError` becomes one line and exit 1.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from monitor.api import Monitor
from monitor.calibration import DEFAULT_POLICY, ThresholdPolicy
from monitor.detector import DEFAULT_MIN_POSTS
from monitor.embedders import Embedder, make_embedder
from monitor.errors import EmbedderError, InputError, MonitorError, StoreError
from monitor.evaluate import default_policies
from monitor.ingest import IngestReport
from monitor.locks import writer_lock
from monitor.output import FORMATS, write_rows
from monitor.preprocess import CLEANERS
from monitor.progress import progress_bar
from monitor.query import OUTLIER_FIELDS
from monitor.scores import DEFAULT_SCORE, ScoreSpec
from monitor.sources import FORMATS as SOURCE_FORMATS
from monitor.sources import open_source, resolve_format
from monitor.store import DEFAULT_COLLECTION, DEFAULT_DB, check_collection_name

OUTLIER_COLUMNS = ("id", "category", "score", "p_value", "looks_like", "ingested_at", "excerpt")
STATS_COLUMNS = (
    "category",
    "posts",
    "scored",
    "outliers",
    "outlier_rate",
    "no_verdict",
    "threshold",
    "baseline_posts",
)


def _format_option(default: str = "table", choices: tuple[str, ...] = FORMATS) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


class _Group(click.Group):
    """The command group; a broken pipe from any command becomes :class:`StdoutClosed` (exit 0)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # click would make this a silent exit 1
            raise StdoutClosed() from None


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--db",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    envvar="MONITOR_DB",
    help="Embedded Chroma database folder (env MONITOR_DB).",
)
@click.option(
    "--chroma-url",
    envvar="MONITOR_CHROMA_URL",
    default=None,
    help="Use a Chroma server instead (http://HOST:PORT; env MONITOR_CHROMA_URL).",
)
@click.option(
    "--collection",
    default=DEFAULT_COLLECTION,
    show_default=True,
    envvar="MONITOR_COLLECTION",
    help="Collection name (env MONITOR_COLLECTION).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress lines to stderr.")
@click.version_option(package_name="monitor")
@click.pass_context
def cli(ctx: click.Context, db: Path, chroma_url: str | None, collection: str, verbose: bool) -> None:
    """Embedding-based outlier monitor for streams of text, backed by Chroma.

    \b
    monitor ingest 20news-bydate.tar.gz --category 'sci.*' --per-category 150
    monitor baseline
    monitor ingest arrivals.jsonl
    monitor outliers --category sci.space --format json
    monitor snapshot --out snapshot/
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )
    if chroma_url is not None and ctx.get_parameter_source("db") is click.core.ParameterSource.COMMANDLINE:
        raise InputError("give --db or --chroma-url, not both (a server keeps its own data)")
    ctx.obj = {"db": db, "url": chroma_url, "collection": collection}


def _lock_folder(ctx: click.Context) -> None:
    """Take an embedded folder's writer lock (once per command), before Chroma or a model is opened:
    a second writer is refused at once, before any work."""
    o = ctx.obj
    if o["url"] is not None or o.get("locked"):
        return
    check_collection_name(o["collection"])  # and create nothing for a name Chroma refuses
    early = writer_lock(Path(o["db"]).resolve(), f"monitor {ctx.info_name}", shown=str(o["db"]))
    early.acquire()
    ctx.call_on_close(early.release)
    o["locked"] = True


def _monitor(
    ctx: click.Context, embedder: str | Embedder = "minilm", *, create: bool = False, write: bool = False
) -> Monitor:
    """The Monitor for the global options; only ``ingest`` may create a new database.

    A command that writes takes an embedded folder's writer lock first (one writer at a time).
    """
    o = ctx.obj
    if not create and o["url"] is None and not (Path(o["db"]) / "chroma.sqlite3").is_file():
        raise StoreError(f"no monitor database at {o['db']} (check --db, or ingest posts first)")
    if write:
        _lock_folder(ctx)
    mon = Monitor(o["db"], url=o["url"], collection=o["collection"], embedder=embedder)
    ctx.call_on_close(mon.close)
    if write:
        mon.store.claim_writer(f"monitor {ctx.info_name}")
    if not create:
        mon.store.require_collection()
    return mon


# -- ingest ----------------------------------------------------------------------------------


@cli.command()
@click.argument("source")
@click.option(
    "--format",
    "source_format",
    type=click.Choice(SOURCE_FORMATS),
    help="Source format (default: from the name; - is JSONL).",
)
@click.option(
    "--split", type=click.Choice(["train", "test", "all"]), default=None, help="20news: which split [train]."
)
@click.option(
    "--category", "categories", multiple=True, help="20news: category glob, repeatable (e.g. 'sci.*')."
)
@click.option(
    "--exclude-category", "exclude", multiple=True, help="20news: category glob to leave out, repeatable."
)
@click.option(
    "--per-category", type=click.IntRange(min=1), help="20news: random sample of N posts per category."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and --as-category.")
@click.option("--id-field", default=None, help="JSONL/CSV: id field [id] (optional in the data).")
@click.option("--text-field", default=None, help="JSONL/CSV: text field [text].")
@click.option("--category-field", default=None, help="JSONL/CSV: category field [category].")
@click.option(
    "--clean",
    type=click.Choice(sorted(CLEANERS)),
    default="seed",
    show_default=True,
    help="seed: the notebook's cleaning; strip: drop headers, quotes, signatures; none.",
)
@click.option(
    "--as-category",
    help="File every post under this category (name, comma list or glob of baseline categories; one is picked per post).",
)
@click.option(
    "--embedder",
    default="minilm",
    show_default=True,
    envvar="MONITOR_EMBEDDER",
    help="minilm (offline), gemini[:MODEL] (API key in GEMINI_API_KEY), hashing[:DIM] (tests).",
)
@click.option(
    "--task-type",
    envvar="MONITOR_GEMINI_TASK_TYPE",
    help="gemini: task type [CLUSTERING] (CLASSIFICATION, SEMANTIC_SIMILARITY, …).",
)
@click.option(
    "--dimensions",
    type=click.IntRange(min=1),
    envvar="MONITOR_GEMINI_DIM",
    help="gemini: output dimensionality [3072] (768, 1536 or 3072).",
)
@click.option(
    "--requests-per-minute",
    type=click.FloatRange(min=0, min_open=True),
    envvar="MONITOR_GEMINI_RPM",
    help="gemini: at most this many API requests per minute (free tier: set it) [no limit].",
)
@click.option(
    "--texts-per-request",
    type=click.IntRange(min=1, max=100),
    envvar="MONITOR_GEMINI_BATCH",
    help="gemini: posts embedded per API request [100, the API's maximum].",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="Threads for the model [MONITOR_THREADS or all cores]."
)
@click.option("--verdicts", is_flag=True, help="Print each stored post's verdict as a JSON line on stdout.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def ingest(
    ctx: click.Context,
    source: str,
    source_format: str | None,
    split: str | None,
    categories: tuple[str, ...],
    exclude: tuple[str, ...],
    per_category: int | None,
    seed: int,
    id_field: str | None,
    text_field: str | None,
    category_field: str | None,
    clean: str,
    as_category: str | None,
    embedder: str,
    task_type: str | None,
    dimensions: int | None,
    requests_per_minute: float | None,
    texts_per_request: int | None,
    threads: int | None,
    verdicts: bool,
    as_json: bool,
) -> None:
    """Embed, score and store posts from SOURCE (.tar.gz / folder of 20news-bydate, .jsonl, .csv, or - for stdin).

    \b
    Re-running never duplicates: posts already stored with the same text are skipped
    without being embedded again.
    """
    fmt = resolve_format(source, source_format)
    news_opts = {
        "--split": split,
        "--category": categories,
        "--exclude-category": exclude,
        "--per-category": per_category,
    }
    record_opts = {"--id-field": id_field, "--text-field": text_field, "--category-field": category_field}
    wrong = [k for k, v in (record_opts if fmt == "20news" else news_opts).items() if v]
    if wrong:
        raise InputError(f"{', '.join(wrong)} do(es) not apply to {fmt} sources")

    kwargs: dict[str, Any] = {
        "format": fmt,
        "split": split or "train",
        "categories": categories or ("*",),
        "exclude": exclude,
        "per_category": per_category,
        "seed": seed,
        "id_field": id_field,  # named: required in every record; else "id", optional
        "text_field": text_field or "text",
        "category_field": category_field,
    }
    opened = open_source(source, **kwargs)  # fails fast on a bad path, before the model loads
    if not embedder.startswith("gemini"):  # MONITOR_GEMINI_* in the environment concern gemini only
        env = click.core.ParameterSource.ENVIRONMENT
        task_type, dimensions, requests_per_minute, texts_per_request = (
            None if ctx.get_parameter_source(name) == env else value
            for name, value in (
                ("task_type", task_type),
                ("dimensions", dimensions),
                ("requests_per_minute", requests_per_minute),
                ("texts_per_request", texts_per_request),
            )
        )
    db = Path(ctx.obj["db"])
    new_db = not ctx.obj["url"] and not db.exists()
    if not new_db:
        _lock_folder(ctx)  # another writer: refused before the model loads
    model = make_embedder(  # a bad --embedder fails before a db is created
        embedder,
        threads=threads,
        task_type=task_type,
        dim=dimensions,
        requests_per_minute=requests_per_minute,
        texts_per_request=texts_per_request,
    )
    mon = _monitor(ctx, model, create=True, write=True)
    before = 0 if new_db else mon.store.count()
    try:
        _run_ingest(mon, opened, source, clean, as_category, seed, verdicts, as_json)
    except MonitorError as exc:
        stored = mon.store.count()
        if new_db and stored == 0:  # a failed first ingest leaves no empty database behind
            shutil.rmtree(db, ignore_errors=True)
        if isinstance(exc, EmbedderError) and stored > before:  # e.g. the API failed mid-ingest
            raise EmbedderError(
                f"{exc}; the {stored - before} new posts stored before it are kept: "
                "run the same command again to continue"
            ) from None
        raise


def _run_ingest(
    mon: Monitor,
    opened: Any,
    source: str,
    clean: str,
    as_category: str | None,
    seed: int,
    verdicts: bool,
    as_json: bool,
) -> None:
    def emit(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        sys.stdout.flush()  # a reader gone (`| head -1`) stops the ingest here: see _Group

    total = len(opened) if hasattr(opened, "__len__") else None  # stdin, JSONL, CSV: unknown
    with progress_bar("ingest", total) as advance:
        report = mon.ingest(
            opened,
            clean=clean,
            as_category=as_category,
            seed=seed,
            progress=advance,
            on_results=emit if verdicts else None,
        )
    _print_ingest_summary(report)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    if report.read == 0:
        raise InputError(f"no posts in {_name(source)}")
    if report.stored + report.unchanged == 0:
        raise InputError(
            f"none of the {report.read} records in {_name(source)} could be ingested (see reasons above)"
        )


def _name(source: str) -> str:
    return "stdin" if source == "-" else source


def _print_ingest_summary(report: IngestReport) -> None:
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(report.verdicts.items())) or "none"
    click.echo(
        f"read {report.read}: {report.added} new, {report.updated} updated, {report.refiled} refiled, "
        f"{report.unchanged} unchanged, {report.skipped} skipped"
        + (
            f", {report.duplicates_in_input} repeated ids (last one kept)"
            if report.duplicates_in_input
            else ""
        )
        + f"; {report.truncated} cut to the model window; "
        f"verdicts: {verdicts}; {report.seconds:.1f}s",
        err=True,
    )
    for reason, n in report.skip_reasons.most_common():
        example = next((w for w, r in report.skip_examples if r == reason), "")
        click.echo(f"  skipped {n}: {reason} (e.g. {example})", err=True)


# -- baseline ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--policy",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Threshold: alpha:A (flag p <= A), quantile:Q (in-sample) or fixed:R.",
)
@click.option(
    "--score",
    "score_spec",
    default=DEFAULT_SCORE,
    show_default=True,
    help="Score: knn[:K] (mean distance to the K nearest posts of the category) or centroid.",
)
@click.option(
    "--robust", is_flag=True, help="Leave posts flagged by their current verdict out of the baseline."
)
@click.option(
    "--min-posts",
    type=click.IntRange(min=2),
    default=DEFAULT_MIN_POSTS,
    show_default=True,
    help="Categories with fewer stored posts get no verdict.",
)
@click.option("--no-rescore", is_flag=True, help="Do not re-score stored posts against the new baseline.")
@click.option(
    "--if-missing", is_flag=True, help="Keep the current baseline if there is one (for re-runnable scripts)."
)
@_format_option()
@click.pass_context
def baseline(
    ctx: click.Context,
    policy: str,
    score_spec: str,
    robust: bool,
    min_posts: int,
    no_rescore: bool,
    if_missing: bool,
    fmt: str,
) -> None:
    """Recompute the per-category baseline from the stored vectors, then re-score stored posts.

    \b
    Every stored post with a category counts, arrivals included: the baseline follows the
    store. --if-missing keeps an existing baseline instead (re-running a script then changes nothing).
    """
    mon = _monitor(ctx, write=True)
    current = mon.baseline() if if_missing else None
    if current is not None:
        write_rows(_baseline_rows(current.records), fmt, sys.stdout)
        click.echo(
            f"kept baseline v{current.version} ({current.score}, {current.policy}) built {current.created_at} "
            f"from {current.n_posts} posts (--if-missing)",
            err=True,
        )
        return
    with progress_bar("baseline", None) as advance:
        base, report = mon.build_baseline(
            policy, min_posts, score=score_spec, robust=robust, rescore_posts=not no_rescore, progress=advance
        )
    rows = _baseline_rows(base.records)
    write_rows(rows, fmt, sys.stdout)
    msg = f"baseline v{base.version} ({base.score}, {base.policy}) from {base.n_posts} posts in {len(rows)} categories"
    if robust:
        msg += f" ({base.excluded} flagged posts left out)"
    mute = [r["category"] for r in base.records if r["status"] == "ok" and r.get("threshold") is None]
    if mute:
        msg += (
            f"; {base.policy} can never flag in {len(mute)} categories ({', '.join(mute[:5])}"
            f"{', …' if len(mute) > 5 else ''}): too few posts (a p-value is at least 1/(posts + 1))"
        )
    if report is not None:
        msg += (
            f"; re-scored {report.posts} posts: {report.outliers} outliers "
            f"({report.newly_flagged} newly flagged, {report.cleared} cleared)"
        )
    click.echo(msg, err=True)


def _baseline_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "category": r["category"],
            "posts": r["n_posts"],
            "status": r["status"],
            "threshold": r.get("threshold"),
            "radius": r.get("radius"),
            "mean_distance": r["mean_distance"],
        }
        for r in records
    ]


# -- outliers / stats / sweep ----------------------------------------------------------------


@cli.command()
@click.option("--category", help="Only this category (a glob like 'sci.*' works).")
@click.option("--since", help="Only posts ingested since: ISO time or an age like 90m, 12h, 7d.")
@click.option("--min-distance", type=float, help="Only posts at least this far from their centroid.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N rows.")
@click.option(
    "--alpha",
    type=float,
    help="Posts with a stored p-value <= ALPHA, instead of the baseline's own flags.",
)
@_format_option()
@click.pass_context
def outliers(
    ctx: click.Context,
    category: str | None,
    since: str | None,
    min_distance: float | None,
    limit: int | None,
    alpha: float | None,
    fmt: str,
) -> None:
    """List flagged posts, most unusual (smallest p-value) first."""
    if min_distance is not None and not math.isfinite(min_distance):
        raise InputError(f"bad --min-distance {min_distance}: expected a finite number")
    if category is not None and not category.strip():
        raise InputError("--category is empty")
    mon = _monitor(ctx)
    rows = mon.outliers(category=category, since=since, min_distance=min_distance, limit=limit, alpha=alpha)
    baseline = mon.baseline() if category is not None and not rows else None
    if baseline is not None and not fnmatch.filter(baseline.detector.categories_, category or ""):
        have = ", ".join(baseline.detector.categories_)  # a typo looks just like "no outliers": say so
        click.echo(f"note: no baseline category matches {category!r} (have: {have})", err=True)
    columns: tuple[str, ...] = OUTLIER_FIELDS  # the same columns whether or not there are rows
    if fmt == "table":  # people get the essentials; json/csv/nl carry every field
        columns = (*OUTLIER_COLUMNS[:-1], "original_category", "excerpt")
        if not any(r.get("original_category") for r in rows):
            columns = OUTLIER_COLUMNS
        rows = [{k: r.get(k) for k in columns} for r in rows]
    write_rows(rows, fmt, sys.stdout, columns, max_width=60)


@cli.command()
@_format_option(choices=("table", "json"))
@click.pass_context
def stats(ctx: click.Context, fmt: str) -> None:
    """Counts and outlier rates per category, baseline version and age."""
    info = _monitor(ctx).stats()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    write_rows(info["categories"], "table", sys.stdout, STATS_COLUMNS)
    base = info["baseline"]
    lines = [
        f"{info['posts']} posts in {info['location']} (collection {info['collection']}, embedder {info['embedder']})"
    ]
    if base:
        age, older = base["age_seconds"], base["posts_with_older_verdicts"]
        hint = " (`monitor baseline` re-scores them)" if older else ""
        lines.append(
            f"baseline v{base['version']} ({base['score']}, {base['policy']}) built {base['created_at']} "
            f"({_age(age)} ago) from {base['posts']} posts; {older} posts carry older verdicts{hint}"
        )
    else:
        lines.append("no baseline yet: run `monitor baseline`")
    click.echo("\n".join(lines))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@cli.command()
@click.option("--radii", help="Comma-separated radii (default: a grid over the stored distances).")
@_format_option()
@click.pass_context
def sweep(ctx: click.Context, radii: str | None, fmt: str) -> None:
    """Number of stored posts beyond each radius (the notebook's radius sweep)."""
    grid = None
    if radii is not None:
        try:
            grid = [float(r) for r in radii.split(",") if r.strip()]
        except ValueError:
            grid = []
        if not grid or not all(math.isfinite(r) and r >= 0 for r in grid):
            raise InputError(f"bad --radii {radii!r}: expected non-negative numbers like 0.9,1.0,1.1")
    write_rows(_monitor(ctx).radius_sweep(grid), fmt, sys.stdout)


# -- snapshot ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("snapshot"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--max-points",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Posts on the t-SNE map (a stratified sample); flagged posts are always added, so it can be more.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Top outliers per category."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sample and t-SNE.")
@click.option(
    "--compare-to", type=click.Path(path_type=Path), help="Earlier snapshot folder to compare with."
)
@click.pass_context
def snapshot(
    ctx: click.Context, out: Path, max_points: int, top: int, seed: int, compare_to: Path | None
) -> None:
    """Write a t-SNE map, radius sweep, top outliers, report.html and summary.json into --out."""

    def say(msg: str) -> None:
        if sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.INFO):
            click.echo(f"snapshot: {msg}…", err=True)

    summary = _monitor(ctx).snapshot(
        out, max_points=max_points, top=top, seed=seed, compare_to=compare_to, progress=say
    )
    click.echo(str(out / "report.html"))
    changes = summary.get("changes")
    extra = (
        f"; since last: {changes['new_flags']} new flags, {changes['cleared_flags']} cleared"
        if changes
        else ""
    )
    click.echo(
        f"snapshot of {summary['posts']} posts, {summary['outliers']} outliers, "
        f"{summary['map']['points']} on the map{extra}",
        err=True,
    )


# -- evaluate ----------------------------------------------------------------------------------


def _list(value: str, what: str) -> list[str]:
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))  # in order, once each
    if not items:
        raise InputError(f"--{what} is empty")
    return items


@cli.command()
@click.argument("source")
@click.option(
    "--recipe",
    is_flag=True,
    help="SOURCE is a 20 Newsgroups archive: run the built-in recipe (stores its posts in --db: use a db of its own).",
)
@click.option(
    "--truth-field", default="anomaly", show_default=True, help="JSONL/CSV: true = anomaly, false = normal."
)
@click.option("--text-field", default="text", show_default=True, help="JSONL/CSV: text field.")
@click.option("--category-field", default="category", show_default=True, help="JSONL/CSV: claimed category.")
@click.option(
    "--scores",
    default="centroid,knn",
    show_default=True,
    help="Comma list of scores to compare (centroid, knn:K).",
)
@click.option(
    "--policies",
    default=",".join(default_policies()),
    show_default=True,
    help="Comma list of policies to compare (alpha:A, quantile:Q, fixed:R).",
)
@click.option(
    "--robust", is_flag=True, help="Leave the reference posts a first fit flags out of the baseline."
)
@click.option(
    "--per-category/--overall", default=False, show_default=True, help="Rows per claimed category too."
)
@click.option(
    "--in-topic", default="sci.*", show_default=True, help="--recipe: the in-topic groups (a glob)."
)
@click.option(
    "--off-topic",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="--recipe: off-topic arrivals.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="--recipe: random splits to average.",
)
@click.option(
    "--clean", type=click.Choice(sorted(CLEANERS)), default="seed", show_default=True, help="Text cleaning."
)
@click.option("--embedder", default="minilm", show_default=True, help="Embedding model (the store's).")
@_format_option()
@click.pass_context
def evaluate(
    ctx: click.Context,
    source: str,
    recipe: bool,
    truth_field: str,
    text_field: str,
    category_field: str,
    scores: str,
    policies: str,
    robust: bool,
    per_category: bool,
    in_topic: str,
    off_topic: int,
    seeds: int,
    clean: str,
    embedder: str,
    fmt: str,
) -> None:
    """Measure detection quality: ROC AUC, average precision, promised vs realised flag rate, recall.

    \b
    Labelled arrivals (JSONL/CSV: text, claimed category, truth) are embedded, not stored,
    and scored against the stored posts that have a category:
      monitor evaluate labelled.jsonl --truth-field is_spam
    The built-in recipe (held-out sci.* posts vs other groups' posts filed under sci.*):
      monitor --db evaldb evaluate 20news-bydate.tar.gz --recipe --seeds 5
    """
    score_list, policy_list = _list(scores, "scores"), _list(policies, "policies")

    def typed(*names: str) -> bool:
        return any(ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE for n in names)

    misplaced = {
        "--per-category (the recipe reports overall)": recipe and per_category,
        "--truth-field/--text-field/--category-field": recipe
        and typed("truth_field", "text_field", "category_field"),
        "--seeds/--in-topic/--off-topic (recipe only)": not recipe
        and typed("seeds", "in_topic", "off_topic"),
    }
    ignored = [name for name, bad in misplaced.items() if bad]
    if ignored:
        raise InputError(f"options that do not apply here: {'; '.join(ignored)}")
    for spec in score_list:
        ScoreSpec.parse(spec)
    for spec in policy_list:
        ThresholdPolicy.parse(spec)
    mon = _monitor(ctx, embedder, create=recipe, write=recipe)
    with progress_bar("evaluate", None) as advance:
        if recipe:
            result = mon.evaluate_newsgroups(
                source,
                in_topic=in_topic,
                off_topic=off_topic,
                seeds=range(seeds),
                scores=score_list,
                policies=policy_list,
                robust=robust,
                clean=clean,
                progress=advance,
            )
        else:
            rows = mon.evaluate(
                source,
                truth_field=truth_field,
                scores=score_list,
                policies=policy_list,
                clean=clean,
                per_category=per_category,
                robust=robust,
                text_field=text_field,
                category_field=category_field if typed("category_field") else None,
                progress=advance,
            )
    if not recipe:
        write_rows(rows, fmt, sys.stdout)
        return
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
        return
    tables = {"arrivals": "rows", "burst": "contaminated", "misfiled": "misfiled"}
    if fmt != "table":  # one machine-readable table: a column says which part each row belongs to
        write_rows(
            [{"table": name, **r} for name, key in tables.items() for r in result[key]], fmt, sys.stdout
        )
        return
    for title, key in (
        ("arrivals", "rows"),
        ("reference with a stored burst of off-topic posts: plain vs --robust", "contaminated"),
        ("misfiled in-topic posts: is the flagged post named by its true group?", "misfiled"),
    ):
        click.echo(f"# {title} (mean of {seeds} splits)")
        write_rows(result[key], fmt, sys.stdout)
        click.echo()


def _non_empty_path(value: str, what: str) -> Path:
    if not str(value).strip():
        raise InputError(f"{what} is empty: give a folder")
    return Path(value)


# -- nightly ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="snapshots",
    show_default=True,
    envvar="MONITOR_SNAPSHOTS",
    callback=lambda _ctx, _param, value: _non_empty_path(value, "--out"),
    help="Folder of dated snapshots (env MONITOR_SNAPSHOTS).",
)
@click.option(
    "--keep", type=click.IntRange(min=1), default=14, show_default=True, help="Dated snapshots to keep."
)
@click.option("--policy", default=DEFAULT_POLICY, show_default=True, help="Threshold policy (see baseline).")
@click.option("--score", "score_spec", default=DEFAULT_SCORE, show_default=True, help="Score (see baseline).")
@click.option("--robust", is_flag=True, help="See baseline.")
@click.option(
    "--min-posts",
    type=click.IntRange(min=2),
    default=DEFAULT_MIN_POSTS,
    show_default=True,
    help="See baseline.",
)
@click.option(
    "--max-points", type=click.IntRange(min=10), default=2000, show_default=True, help="See snapshot."
)
@click.pass_context
def nightly(
    ctx: click.Context,
    out: Path,
    keep: int,
    policy: str,
    score_spec: str,
    robust: bool,
    min_posts: int,
    max_points: int,
) -> None:
    """Recompute the baseline, re-score, and snapshot into OUT/<UTC time>/, keeping the last --keep.

    \b
    Overlapping runs are safe: while one runs, another exits at once with code 75.
    """
    mon = _monitor(ctx)
    done = mon.nightly(
        out,
        keep=keep,
        policy=policy,
        score=score_spec,
        robust=robust,
        min_posts=min_posts,
        max_points=max_points,
        command="monitor nightly",
    )
    click.echo(done["snapshot"])
    rescored = done["rescored"] or {}
    changes = done["changes"]
    click.echo(
        f"nightly: baseline v{done['baseline_version']}, re-scored {rescored.get('posts', 0)} posts: "
        f"{done['outliers']} outliers"
        + (f" ({changes['new_flags']} new, {changes['cleared_flags']} cleared since last)" if changes else "")
        + f"; kept {keep} snapshots at most, removed {len(done['pruned'])}",
        err=True,
    )


# -- entry point -------------------------------------------------------------------------------


class StdoutClosed(Exception):
    """Whoever read stdout has gone; not an OSError, so click does not turn it into exit 1."""



def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=argv, prog_name="monitor", standalone_mode=False)
        sys.stdout.flush()  # here, not at exit: a reader gone by now is handled below
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(2)
    except click.ClickException as exc:
        hint = (
            f" (try 'monitor {exc.ctx.info_name} --help')"
            if getattr(exc, "ctx", None) and exc.ctx.info_name != "monitor"
            else ""
        )
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except MonitorError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (BrokenPipeError, StdoutClosed):
        # the reader has gone (`| head`): like every pipeline tool, stop quietly; point stdout at
        # /dev/null so the exit's own flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("MONITOR_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {first} (MONITOR_DEBUG=1 shows a traceback)", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
