"""The lag-window heatmap of a person page (`lag_heatmap`): one row per food feature, one column per
exposure window, each cell the % change per unit with its n, significant cells outlined. Its
cells are what the scatter of `cell_scatter` is drawn for.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pipelines.reports.figures.base import Fig, _layout, _r
from pipelines.reports.html import (
    feature_label,
    feature_order,
    fmt_pct,
    fmt_q,
    is_num,
    pesc,
)


def _window_label(w: object) -> str:
    return f"{int(w)} d" if is_num(w) else "all"


def window_key(w: object) -> str:
    """The key of an exposure window in cell ids ("28", or "all" for no window)."""
    return str(int(w)) if is_num(w) else "all"


def heatmap_axes(rows: list[dict[str, Any]]) -> tuple[list[str], list[int | None]]:
    """Row (feature) and column (window) order of the lag heatmap, shared with its click data."""
    # A few dozen distinct values among a page's 150 rows: each is converted once.
    features = sorted(
        {str(f) for f in {r.get("feature") for r in rows} if f is not None}, key=feature_order
    )
    windows = sorted(
        {int(w) if is_num(w) else None for w in {r.get("window_days") for r in rows}},
        key=lambda w: (w is None, w or 0),
    )
    return features, windows


def lag_heatmap(rows: list[dict[str, Any]], title: str) -> Fig | None:
    """Features x exposure windows, colour = effect %, '*' and an outline where significant.

    `rows` are one marker's associations as dicts (the page has them as dicts already, for its
    findings table). Clicking a cell is handled by the page (see `CELL_SCRIPT`): the heatmap
    only draws.
    """
    if not rows:
        return None
    features, windows = heatmap_axes(rows)
    if not features:
        return None
    xlabels = [_window_label(w) for w in windows]
    ylabels = [pesc(feature_label(f)) for f in features]
    zi = {f: i for i, f in enumerate(features)}
    wi = {w: j for j, w in enumerate(windows)}
    z: list[list[float | None]] = [[None] * len(windows) for _ in features]
    text = [[""] * len(windows) for _ in features]
    hover = [["not tested"] * len(windows) for _ in features]
    sig_cells: list[tuple[int, int]] = []
    # Notes repeat from cell to cell ("5 complete windows; ..."): each is escaped once.
    note_text = cache(pesc)
    for r in rows:
        feature, w = r["feature"], r["window_days"]
        if feature is None:
            continue
        i = zi[str(feature)]
        j = wi[int(w) if is_num(w) else None]
        status = r.get("status") or "unknown"
        n = r.get("n")
        if is_num(n):
            n_txt, n_cell = f"n = {n}", f"<br><span style='font-size:9px'>n={int(n)}</span>"
        else:
            n_txt, n_cell = "n unknown", ""
        effect = r.get("effect_pct")
        if status == "insufficient_data" or not is_num(effect):
            text[i][j] = f"–{n_cell}"
            hover[i][j] = f"{ylabels[i]}, {xlabels[j]}<br>not enough data ({n_txt})"
            if note := r.get("note"):
                hover[i][j] += f"<br>{note_text(note)}"
            continue
        z[i][j] = _r(effect)
        star = "*" if status == "significant" else ""
        text[i][j] = f"{fmt_pct(effect)}{star}{n_cell}"
        hover[i][j] = (
            f"{ylabels[i]}, previous {xlabels[j]}<br><b>{fmt_pct(effect)}</b> per unit "
            f"(95% CI {fmt_pct(r.get('ci_low_pct'))} to {fmt_pct(r.get('ci_high_pct'))})"
            f"<br>{n_txt}, q = {fmt_q(r.get('q'))}<br>{status.replace('_', ' ')}"
        )
        if status == "significant":
            sig_cells.append((i, j))
    finite = [abs(v) for row in z for v in row if v is not None]
    span = min(max(finite, default=10.0), 100.0) or 10.0
    heat = {
        "type": "heatmap",
        "x": xlabels,
        "y": ylabels,
        "z": z,
        "text": text,
        "texttemplate": "%{text}",
        "textfont": {"size": 11},
        "customdata": hover,
        "hovertemplate": "%{customdata}<extra></extra>",
        # Blue = marker lower, red = higher, white = no change (explicit: plotly.js's own
        # "RdBu" has a grey middle and runs the other way from plotly.py's).
        "colorscale": [
            [0, "#2166ac"],
            [0.25, "#67a9cf"],
            [0.5, "#f7f7f7"],
            [0.75, "#ef8a62"],
            [1, "#b2182b"],
        ],
        "zmid": 0,
        "zmin": -span,
        "zmax": span,
        "xgap": 2,
        "ygap": 2,
        "colorbar": {"title": {"text": "effect %"}, "ticksuffix": "%"},
    }
    # Category axes place cell k at k, so a cell is the box k-0.5..k+0.5.
    shapes = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "y",
            "x0": j - 0.48,
            "x1": j + 0.48,
            "y0": i - 0.45,
            "y1": i + 0.45,
            "line": {"color": "#111827", "width": 3},
        }
        for i, j in sig_cells
    ]
    layout = _layout(
        title,
        max(280, 100 + 36 * len(features)),
        shapes=shapes,
        xaxis={
            "type": "category",
            "showgrid": False,
            "title": {"text": "exposure window before each draw"},
        },
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
    )
    return {"data": [heat], "layout": layout}
