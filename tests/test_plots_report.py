from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monitor.plots import (
    category_colors,
    plot_distance_histograms,
    plot_embedding_map,
    plot_radius_sweep,
)
from monitor.report_html import render_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"


def _check_png(path: Path, width: int, height: int, tol: int = 40) -> Image.Image:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        assert abs(img.size[0] - width) <= tol, img.size
        assert abs(img.size[1] - height) <= tol, img.size
        return img.convert("RGB")


def _map_inputs(n_per: int = 25) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    names = ["comp.graphics", "rec.autos", "sci.space"]
    coords = np.vstack([rng.normal(loc=(10 * i, -5 * i), size=(n_per, 2)) for i in range(3)])
    cats = [name for name in names for _ in range(n_per)]
    flags = np.zeros(len(cats), dtype=bool)
    flags[[0, 30, 60]] = True
    centroids = {name: coords[np.array(cats) == name].mean(axis=0) for name in names}
    return coords, cats, flags, centroids


def _red_pixels(img: Image.Image) -> int:
    arr = np.asarray(img).astype(int)
    return int(((arr[..., 0] > 180) & (arr[..., 1] < 80) & (arr[..., 2] < 80)).sum())


def _has_red(img: Image.Image) -> bool:
    return _red_pixels(img) > 30


def test_category_colors_stable_distinct_and_not_red() -> None:
    names = [f"cat{i:02d}" for i in range(20)]
    colors = category_colors(reversed(names))
    assert list(colors) == names
    assert len(set(colors.values())) == 20
    assert category_colors(names) == colors
    for rgba in colors.values():
        r, g, b, _ = rgba
        assert not (r > 0.7 and g < 0.3 and b < 0.3)


def test_embedding_map_png(tmp_path: Path) -> None:
    coords, cats, flags, centroids = _map_inputs()
    out = plot_embedding_map(coords, cats, flags, centroids, tmp_path / "sub" / "map.png", title="T <x>")
    assert out == tmp_path / "sub" / "map.png"
    with_outliers = _check_png(out, 1210, 880)
    none = np.zeros_like(flags)
    without = _check_png(plot_embedding_map(coords, cats, none, centroids, tmp_path / "m.png"), 1210, 880)
    # Only the legend entry is red without outliers; the three circles add a lot more red.
    assert _red_pixels(with_outliers) > 2 * _red_pixels(without) + 100


def test_embedding_map_edge_cases(tmp_path: Path) -> None:
    _check_png(plot_embedding_map(np.zeros((0, 2)), [], np.zeros(0, bool), {}, tmp_path / "e.png"), 1210, 880)
    many = [f"group.number.{i}" for i in range(20)]
    coords = np.random.default_rng(1).normal(size=(200, 2))
    cats = [many[i % 20] for i in range(200)]
    cents = {c: coords[np.array(cats) == c].mean(axis=0) for c in many}
    _check_png(plot_embedding_map(coords, cats, np.ones(200, bool), cents, tmp_path / "m.png"), 1210, 880)
    with pytest.raises(ValueError):
        plot_embedding_map(coords, cats[:-1], np.ones(200, bool), cents, tmp_path / "x.png")


def test_radius_sweep_png(tmp_path: Path) -> None:
    radii = [0.3 + 0.05 * i for i in range(12)]
    counts = [200 // (i + 1) for i in range(12)]
    out = plot_radius_sweep(radii, counts, tmp_path / "sweep.png", current_radius=0.52)
    img = _check_png(out, 1100, 605)
    assert _has_red(img)  # current-radius marker
    plain = _check_png(plot_radius_sweep(radii, counts, tmp_path / "plain.png"), 1100, 605)
    assert not _has_red(plain)


def test_radius_sweep_edge_cases(tmp_path: Path) -> None:
    _check_png(plot_radius_sweep([], [], tmp_path / "empty.png", current_radius=0.5), 1100, 605)
    _check_png(plot_radius_sweep([0.5], [3], tmp_path / "one.png", current_radius=0.5), 1100, 605)
    many = np.linspace(0.1, 2.0, 80)
    _check_png(plot_radius_sweep(many, np.arange(80)[::-1], tmp_path / "many.png"), 1100, 605)
    with pytest.raises(ValueError):
        plot_radius_sweep([0.1, 0.2], [1], tmp_path / "bad.png")


def test_distance_histograms_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    dists = {f"cat{i}": rng.gamma(4, 0.1, size=80) for i in range(6)}
    radii = {f"cat{i}": 0.6 for i in range(5)}  # cat5 has no radius
    out = plot_distance_histograms(dists, radii, tmp_path / "hist.png")
    img = _check_png(out, 4 * 352, 2 * 286 + 66, tol=60)
    assert _has_red(img)
    one = plot_distance_histograms({"only": np.array([0.1, 0.2])}, {"only": 0.15}, tmp_path / "one.png")
    _check_png(one, 550, 352, tol=60)
    empty = plot_distance_histograms({"none": np.array([])}, {}, tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == PNG_MAGIC
    assert plot_distance_histograms({}, {}, tmp_path / "nothing.png").read_bytes()[:8] == PNG_MAGIC


# --- HTML report -----------------------------------------------------------------------------


def _report(tmp_path: Path, changes: dict | None = None) -> str:
    png = plot_radius_sweep([0.1, 0.2], [5, 1], tmp_path / "sweep.png")
    return render_report(
        title=f"Snapshot {HOSTILE}",
        generated_at="2026-12-03T17:00:00Z",
        summary_rows=[
            {"category": "sci.space", "n": 120, "radius": 0.123456, "rate": 0.05},
            {"category": f"evil{HOSTILE}", "n": 3, "radius": 0.5, "extra": "x"},
        ],
        images={f"Sweep {HOSTILE}": png},
        top_outliers={
            "sci.space": [
                {
                    "id": "20news/test/sci.space/61234",
                    "score": 0.987654321,
                    "p_value": 0.004,
                    "looks_like": "sci.med",
                    "nearest_category": "rec.autos",
                    "ingested_at": "2026-12-03T16:00:00Z",
                    "excerpt": f"hello {HOSTILE} & <b>bold</b>",
                }
            ]
        },
        sweep_rows=[{"radius": 0.1, "n_outliers": 5}, {"radius": 0.2, "n_outliers": 1}],
        changes=changes,
        notes=[f"note {HOSTILE}"],
    )


def test_report_self_contained(tmp_path: Path) -> None:
    page = _report(tmp_path)
    assert page.startswith("<!DOCTYPE html>")
    assert "<link" not in page.lower()
    assert 'src="http' not in page.lower()
    assert "<script" not in page.lower()
    assert "url(" not in page.lower()
    assert "@import" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 1
    assert srcs[0].startswith("data:image/png;base64,")
    embedded = base64.b64decode(srcs[0].split(",", 1)[1])
    assert embedded == (tmp_path / "sweep.png").read_bytes()


def test_report_escapes_hostile_text(tmp_path: Path) -> None:
    page = _report(tmp_path, changes={"new_flags": [{"id": HOSTILE, "category": "sci.space"}]})
    assert HOSTILE not in page
    assert "<b>bold</b>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # title (x2: <title> and <h1>), summary row, caption (x2: alt and figcaption), excerpt, note, change
    assert page.count(escaped) >= 8
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "hello &lt;script&gt;" in page and "&amp; &lt;b&gt;" in page


def test_report_tables_contain_rows(tmp_path: Path) -> None:
    page = _report(tmp_path)
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert re.search(r"<th>category</th><th>n</th><th>radius</th><th>rate</th><th>extra</th>", summary)
    assert "<td>sci.space</td>" in summary
    assert ">0.1235<" in summary  # floats with 4 decimals
    assert ">120<" in summary
    sweep = page.split('id="sweep"')[1].split("</section>")[0]
    assert sweep.count("<tr>") == 3
    assert ">0.1000<" in sweep and ">5<" in sweep
    top = page.split('id="top-outliers"')[1].split("</section>")[0]
    assert "<h3>sci.space" in top
    assert "20news/test/sci.space/61234" in top
    assert ">0.9877<" in top
    assert "rec.autos" in top
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", top)
    assert head is not None
    assert re.findall(r"<th>(.*?)</th>", head.group(1)) == [
        "id",
        "score",
        "p_value",
        "looks_like",
        "nearest_category",
        "ingested_at",
        "excerpt",
    ]
    assert 'id="changes"' not in page


def test_report_changes_rendered_generically(tmp_path: Path) -> None:
    changes = {
        "previous_snapshot": "2026-12-02T10:00:00Z",
        "n_new": 2,
        "new_flags": [{"id": "a/1", "category": "sci.space", "distance": 0.91}],
        "cleared_flags": [],
        "dropped_ids": ["x/1", "x/2"],
        "rate_delta": {"sci.space": {"before": 0.01, "after": 0.03, "delta": 0.02}},
        "threshold": {"sci.space": 0.55},
    }
    page = _report(tmp_path, changes=changes)
    section = page.split('id="changes"')[1].split("</section>")[0]
    assert "Change since last snapshot" in section
    assert "<dt>previous_snapshot</dt><dd>2026-12-02T10:00:00Z</dd>" in section
    assert "<dt>n_new</dt><dd>2</dd>" in section
    assert "<th>id</th><th>category</th><th>distance</th>" in section
    assert ">a/1<" in section and ">0.9100<" in section
    assert "<h3>cleared_flags</h3>" in section and "None." in section
    assert "<li>x/1</li><li>x/2</li>" in section
    assert "<th>before</th><th>after</th><th>delta</th>" in section and ">0.0200<" in section
    assert ">0.5500<" in section


def test_report_empty_sections(tmp_path: Path) -> None:
    page = render_report(
        title="t",
        generated_at="now",
        summary_rows=[],
        images={},
        top_outliers={},
        sweep_rows=[],
        changes={},
    )
    assert "No outliers flagged." in page
    assert page.count("No data.") == 2
    assert "No changes." in page
    assert "<img" not in page


def test_report_missing_image_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        render_report(
            title="t",
            generated_at="now",
            summary_rows=[],
            images={"gone": tmp_path / "missing.png"},
            top_outliers={},
            sweep_rows=[],
        )


def test_write_report_roundtrip(tmp_path: Path) -> None:
    page = _report(tmp_path)
    out = write_report(tmp_path / "deep" / "report.html", page)
    assert out == tmp_path / "deep" / "report.html"
    assert out.read_text(encoding="utf-8") == page
    assert 'charset="utf-8"' in out.read_text(encoding="utf-8")
