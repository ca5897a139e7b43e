"""PNG plots for a snapshot: the 2-D embedding map, the radius sweep, per-category distance histograms.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: no global state, no display needed, no figures left open. Each function writes
exactly the PNG it is asked for (creating its parent directory) and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 110
OUTLIER_COLOR = "#d62728"

Color = tuple[float, float, float, float]


def category_colors(categories: Iterable[str]) -> dict[str, Color]:
    """Stable colour per category (sorted names), from ``tab20`` then ``tab20b``.

    The saturated half of ``tab20`` comes first, then its pastel half, so up to 9 categories get
    clearly distinct colours. Red is left out: it is reserved for outliers and radius lines.
    Up to 20 categories get distinct colours; beyond :data:`_PALETTE` size they repeat.
    """
    names = sorted(set(categories))
    return {name: (*_PALETTE[i % len(_PALETTE)][:3], 1.0) for i, name in enumerate(names)}


def _palette() -> list[tuple[float, ...]]:
    tab20 = [tuple(c) for c in matplotlib.colormaps["tab20"].colors]
    no_red = tab20[:6] + tab20[8:]  # drop tab:red and its pastel twin
    return no_red[0::2] + no_red[1::2] + [tuple(c) for c in matplotlib.colormaps["tab20b"].colors]


_PALETTE = _palette()


def plot_embedding_map(
    coords: np.ndarray,
    categories: Sequence[str],
    is_outlier: np.ndarray,
    centroids_2d: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "Embedding map (t-SNE): categories, centroids and outliers",
) -> Path:
    """Scatter of the 2-D points coloured by category, as in the notebook.

    Category centroids are large ``X`` markers in the category colour with a black edge;
    outliers get an unfilled red circle around their point. The legend sits outside the axes
    on the right. About 1210 x 880 px at :data:`DPI`.
    """
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    cats = np.asarray(list(categories), dtype=object).astype(str)
    flags = np.asarray(is_outlier, dtype=bool).reshape(-1)
    if not (len(xy) == len(cats) == len(flags)):
        raise ValueError(
            f"coords ({len(xy)}), categories ({len(cats)}) and is_outlier ({len(flags)}) differ in length"
        )
    colors = category_colors([*cats.tolist(), *centroids_2d.keys()])

    fig = _figure(11.0, 8.0)
    ax = fig.add_subplot()
    size = _point_size(len(xy))
    handles: list[Line2D] = []
    for name, color in colors.items():
        mask = cats == name
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=color, alpha=0.75, linewidths=0, zorder=2)
        label = f"{name} ({int(mask.sum())})"
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=7, color=color, label=label))
    if flags.any():
        many = flags.sum() > 200  # many circles: smaller and thinner, so the map stays readable
        ax.scatter(
            xy[flags, 0],
            xy[flags, 1],
            s=size * 3 + 20 if many else size * 6 + 60,
            facecolors="none",
            edgecolors=OUTLIER_COLOR,
            linewidths=0.9 if many else 1.6,
            alpha=0.8 if many else 1.0,
            zorder=3,
        )
    centroid_size = 300.0 if len(centroids_2d) <= 10 else 200.0
    for name, centre in centroids_2d.items():
        c = np.asarray(centre, dtype=np.float64).reshape(2)
        ax.scatter(
            [c[0]],
            [c[1]],
            s=centroid_size,
            marker="X",
            c=[colors[name]],
            edgecolors="black",
            linewidths=1.5,
            zorder=4,
        )
    handles.append(
        Line2D(
            [],
            [],
            linestyle="",
            marker="X",
            markersize=12,
            markerfacecolor="white",
            markeredgecolor="black",
            label="category centroid",
        )
    )
    handles.append(
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor=OUTLIER_COLOR,
            markeredgewidth=1.6,
            label=f"outlier ({int(flags.sum())})",
        )
    )
    if len(xy) == 0:
        ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title, fontsize=13)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.grid(True, alpha=0.25)
    ax.set_axisbelow(True)
    fig.legend(
        handles=handles,
        loc="outside right upper",
        fontsize=9 if len(handles) <= 16 else 8,
        frameon=False,
        title="category (points on map)",
        title_fontsize=9,
    )
    return _save(fig, path)


def plot_radius_sweep(
    radii: Sequence[float],
    counts: Sequence[int],
    path: str | Path,
    current_radius: float | None = None,
    title: str = "Number of outliers vs. radius",
) -> Path:
    """Bar chart of the number of outliers per candidate radius (the notebook's sweep plot).

    X tick labels are the radii rounded to 2 decimals (thinned out when there are many). With
    ``current_radius`` a dashed red line marks it (interpolated between bars) and the bar
    closest to it is drawn in red. About 1100 x 605 px.
    """
    r = np.asarray(radii, dtype=np.float64).reshape(-1)
    k = np.asarray(counts, dtype=np.float64).reshape(-1)
    if len(r) != len(k):
        raise ValueError(f"radii ({len(r)}) and counts ({len(k)}) differ in length")
    order = np.argsort(r, kind="stable")
    r, k = r[order], k[order]
    pos = np.arange(len(r))

    fig = _figure(10.0, 5.5)
    ax = fig.add_subplot()
    bar_colors = ["#4c72b0"] * len(r)
    marker_pos: float | None = None
    if current_radius is not None and len(r) > 0 and math.isfinite(current_radius):
        bar_colors[int(np.argmin(np.abs(r - current_radius)))] = OUTLIER_COLOR
        marker_pos = float(np.interp(current_radius, r, pos)) if len(r) > 1 else 0.0
    ax.bar(pos, k, color=bar_colors, width=0.8, zorder=2)
    if len(r) <= 30:
        for p, value in zip(pos, k, strict=True):
            ax.annotate(
                f"{int(value)}",
                (p, value),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    step = max(1, math.ceil(len(r) / 30))
    ax.set_xticks(pos[::step], [f"{v:.2f}" for v in r[::step]], rotation=45 if len(r) > 12 else 0)
    if marker_pos is not None and current_radius is not None:
        ax.axvline(
            marker_pos,
            color=OUTLIER_COLOR,
            linestyle="--",
            linewidth=1.5,
            zorder=3,
            label=f"current radius = {current_radius:.3f}",
        )
        ax.legend(loc="upper right", frameon=False)
    if len(r) == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        ax.set_xlim(-0.6, len(r) - 0.4)
        ax.set_ylim(0, max(1.0, float(k.max())) * 1.1)
    ax.set_title(title, fontsize=13)
    ax.set_xlabel("radius (distance from category centroid)")
    ax.set_ylabel("number of outliers")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _save(fig, path)


def plot_distance_histograms(
    distances_by_category: Mapping[str, np.ndarray],
    radii: Mapping[str, float],
    path: str | Path,
    title: str = "Distance to category centroid (red line: category radius)",
) -> Path:
    """Small multiples, one histogram per category (sorted) with its radius as a red line.

    Each panel's title gives the number of points and how many lie beyond the radius. Up to 4
    panels per row, about 350 x 290 px each; categories without a radius get no line.
    """
    names = sorted(distances_by_category)
    colors = category_colors(names)
    n_panels = max(1, len(names))
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = _figure(max(5.0, 3.2 * ncols), 0.6 + 2.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(i == 0 and not names)
            if not names:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            continue
        name = names[i]
        d = np.asarray(distances_by_category[name], dtype=np.float64).reshape(-1)
        d = d[np.isfinite(d)]
        radius = radii.get(name)
        has_radius = radius is not None and math.isfinite(float(radius))
        if len(d):
            bins = min(30, max(5, int(math.sqrt(len(d)) * 2)))
            ax.hist(d, bins=bins, color=colors[name], alpha=0.85, edgecolor="white", linewidth=0.4)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        if has_radius and radius is not None:
            ax.axvline(float(radius), color=OUTLIER_COLOR, linewidth=1.8)
            beyond = int((d > float(radius)).sum())
            sub = f"n={len(d)}, r={float(radius):.3f}, beyond={beyond}"
        else:
            sub = f"n={len(d)}, no radius"
        ax.set_title(f"{_shorten(name, 34)}\n{sub}", fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(title, fontsize=12)
    fig.supxlabel("distance", fontsize=9)
    fig.supylabel("posts", fontsize=9)
    return _save(fig, path)


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _point_size(n: int) -> float:
    """Marker area that stays readable from a handful of points to a few thousand."""
    if n <= 200:
        return 28.0
    if n <= 1000:
        return 16.0
    return 9.0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
