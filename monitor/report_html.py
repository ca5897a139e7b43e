"""One self-contained HTML page for a snapshot: tables, embedded plots, top outliers, changes.

The page has no external resources at all: images are ``data:`` URIs, the CSS is inline, there
is no JavaScript, and a Content-Security-Policy forbids loading anything else. Every piece of
text that comes from data (titles, ids, categories, excerpts, keys) goes through
:func:`html.escape`: post texts are hostile input.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Columns of the top-outlier tables, in this order; any other keys of the rows follow.
OUTLIER_COLUMNS: tuple[str, ...] = (
    "id",
    "score",
    "p_value",
    "looks_like",
    "nearest_category",
    "ingested_at",
    "excerpt",
)

FLOAT_DECIMALS = 4

_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1280px; padding: 0 24px 48px; color: #1d232a; background: #fff;
       line-height: 1.45; }
header { border-bottom: 2px solid #d62728; margin-bottom: 8px; padding: 18px 0 10px; }
header h1 { margin: 0 0 4px; font-size: 1.6rem; }
header p { margin: 0; color: #5a6570; }
h2 { margin-top: 32px; font-size: 1.25rem; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
h3 { margin: 20px 0 6px; font-size: 1.05rem; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.88rem; }
th, td { border: 1px solid #dfe3e8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.excerpt { max-width: 560px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.82rem; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.8rem;
        overflow-wrap: anywhere; max-width: 260px; }
figure { margin: 16px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { color: #5a6570; font-size: 0.9rem; margin-top: 4px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dt { font-weight: 600; }
dd { margin: 0; }
.empty { color: #8a949e; font-style: italic; }
ul.notes li { margin: 2px 0; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render_report(
    *,
    title: str,
    generated_at: str,
    summary_rows: Sequence[Mapping[str, Any]],
    images: Mapping[str, str | Path],
    top_outliers: Mapping[str, Sequence[Mapping[str, Any]]],
    sweep_rows: Sequence[Mapping[str, Any]],
    changes: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The whole report as one HTML5 document.

    * ``summary_rows``: one table, columns are the rows' keys in order of first appearance.
    * ``images``: caption -> image file (PNG; JPEG/GIF/SVG/WebP by suffix), embedded as base64
      ``data:`` URIs. The files are read here; a missing file raises ``FileNotFoundError``.
    * ``top_outliers``: category -> rows, one table per category in the given order, columns
      :data:`OUTLIER_COLUMNS` then any extra keys.
    * ``sweep_rows``: rows such as ``{"radius": ..., "n_outliers": ...}``.
    * ``changes``: rendered generically under "Change since last snapshot": scalars as a
      definition list, lists of scalars as lists, lists of dicts and dicts as tables.
    * ``notes``: plain-text bullet points.

    Floats are shown with :data:`FLOAT_DECIMALS` decimals; ``None`` as an empty cell.
    """
    esc_title = _esc(title)
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc_title}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc_title}</h1>",
        f"<p>Generated at <time>{_esc(generated_at)}</time></p>",
        "</header>",
    ]
    if notes:
        parts.append('<ul class="notes">')
        parts.extend(f"<li>{_esc(note)}</li>" for note in notes)
        parts.append("</ul>")

    parts.append('<section id="summary"><h2>Per-category summary</h2>')
    parts.append(_table(summary_rows))
    parts.append("</section>")

    if images:
        parts.append('<section id="plots"><h2>Plots</h2>')
        for caption, image_path in images.items():
            parts.append(_figure(caption, Path(image_path)))
        parts.append("</section>")

    parts.append('<section id="sweep"><h2>Radius sweep</h2>')
    parts.append(_table(sweep_rows))
    parts.append("</section>")

    parts.append('<section id="top-outliers"><h2>Top outliers per category</h2>')
    if not top_outliers:
        parts.append('<p class="empty">No outliers flagged.</p>')
    for category, rows in top_outliers.items():
        parts.append(f"<h3>{_esc(category)} <small>({len(rows)})</small></h3>")
        parts.append(_table(rows, first=OUTLIER_COLUMNS))
    parts.append("</section>")

    if changes is not None:
        parts.append('<section id="changes"><h2>Change since last snapshot</h2>')
        parts.append(_generic(changes))
        parts.append("</section>")

    parts.extend(["</body>", "</html>", ""])
    return "\n".join(parts)


def write_report(path: str | Path, html: str) -> Path:
    """Write ``html`` as UTF-8 to ``path`` (creating its parent directory); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_value(value: Any) -> str:
    """Plain-text cell value: floats with :data:`FLOAT_DECIMALS` decimals, ``None`` as ``""``.

    Lists/tuples are joined with ``", "`` and dicts become ``"k: v; ..."``. Not escaped.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        return f"{f:.{FLOAT_DECIMALS}f}" if math.isfinite(f) else str(f)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bytes | numbers.Number)


def _columns(rows: Iterable[Mapping[str, Any]], first: Sequence[str] = ()) -> list[str]:
    columns = list(first)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def _cell(column: str, value: Any) -> str:
    classes = []
    if _is_number(value):
        classes.append("num")
    if column == "excerpt":
        classes.append("excerpt")
    elif column == "id":
        classes.append("id")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{_esc(format_value(value))}</td>"


def _table(rows: Sequence[Mapping[str, Any]], first: Sequence[str] = ()) -> str:
    if not rows:
        return '<p class="empty">No data.</p>'
    columns = _columns(rows, first)
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(str(c), row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _figure(caption: str, path: Path) -> str:
    mime = _MIME_BY_SUFFIX.get(path.suffix.lower(), "image/png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = _esc(caption)
    return f'<figure><img src="data:{mime};base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _generic(changes: Mapping[str, Any]) -> str:
    """Scalars first as one definition list, then one sub-section per list/dict value."""
    scalars = {k: v for k, v in changes.items() if _is_scalar(v)}
    parts: list[str] = []
    if scalars:
        parts.append("<dl>")
        for key, value in scalars.items():
            parts.append(f"<dt>{_esc(key)}</dt><dd>{_esc(format_value(value))}</dd>")
        parts.append("</dl>")
    for key, value in changes.items():
        if key in scalars:
            continue
        parts.append(f"<h3>{_esc(key)}</h3>")
        parts.append(_generic_value(value))
    if not parts:
        parts.append('<p class="empty">No changes.</p>')
    return "\n".join(parts)


def _generic_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return '<p class="empty">None.</p>'
        if all(isinstance(v, Mapping) for v in value.values()):
            # e.g. {"comp.graphics": {"before": 0.02, "after": 0.05, "delta": 0.03}, ...}
            rows = [{"key": k, **v} for k, v in value.items()]
            return _table(rows)
        rows = [{"key": k, "value": v} for k, v in value.items()]
        return _table(rows)
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if not items:
            return '<p class="empty">None.</p>'
        if all(isinstance(v, Mapping) for v in items):
            return _table(items)
        return "<ul>" + "".join(f"<li>{_esc(format_value(v))}</li>" for v in items) + "</ul>"
    return f"<p>{_esc(format_value(value))}</p>"
