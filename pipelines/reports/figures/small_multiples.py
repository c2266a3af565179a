"""The cohort page's CRP small multiples (`crp_small_multiples`): one small log-scale panel of CRP
draws per person, in a grid, for the people with the most draws.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from pipelines.reports.figures.base import (
    BAND_FILL,
    LOG_TICKS,
    Fig,
    _hband,
    _layout,
    _panel_title,
    _r,
)
from pipelines.reports.figures.timeline import DRAW_STYLES, _crp_range, _draw_kind, draw_points
from pipelines.reports.html import (
    fmt_value,
    pesc,
)


def _grid(n: int, ncols: int, hgap: float, vgap: float) -> list[tuple[list[float], list[float]]]:
    """(x domain, y domain) per panel, row by row from the top, like make_subplots."""
    nrows = math.ceil(n / ncols)
    w = (1 - hgap * (ncols - 1)) / ncols
    h = (1 - vgap * (nrows - 1)) / nrows
    out = []
    for k in range(n):
        r, c = divmod(k, ncols)
        x0 = c * (w + hgap)
        y1 = 1 - r * (h + vgap)
        out.append(([round(x0, 4), round(x0 + w, 4)], [round(y1 - h, 4), round(y1, 4)]))
    return out


def crp_small_multiples(draws: pl.DataFrame, person_ids: list[str], title: str) -> Fig | None:
    """One small log-scale CRP panel per person (same y range), acute draws as red crosses."""
    if not person_ids or draws.is_empty():
        return None
    ncols = 3 if len(person_ids) > 2 else len(person_ids)
    nrows = math.ceil(len(person_ids) / ncols)
    points = draw_points(draws.filter(pl.col("person_id").is_in(person_ids)))
    parts = {str(k[0]): v for k, v in points.partition_by("person_id", as_dict=True).items()}
    per_person = {pid: parts[pid].to_dicts() if pid in parts else [] for pid in person_ids}
    lo, hi = _crp_range([float(r["value"]) for rows in per_person.values() for r in rows])
    vgap = min(0.12, 0.5 / nrows)
    domains = _grid(len(person_ids), ncols, 0.06, vgap)
    data: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    annotations = []
    layout = _layout(
        title,
        140 + 210 * nrows,
        # The legend sits in the top margin (container coordinates) so it never covers a
        # panel title.
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 1.0,
            "yanchor": "top",
            "x": 1,
            "xanchor": "right",
        },
        margin={"t": 96},
    )
    shown: set[str] = set()
    for idx, pid in enumerate(person_ids):
        suffix = "" if idx == 0 else str(idx + 1)
        xname, yname = f"x{suffix}", f"y{suffix}"
        xdom, ydom = domains[idx]
        layout[f"xaxis{suffix}"] = {"type": "date", "domain": xdom, "anchor": yname}
        layout[f"yaxis{suffix}"] = {
            "type": "log",
            "domain": ydom,
            "anchor": xname,
            "range": [math.log10(lo), math.log10(hi)],
            "tickvals": LOG_TICKS,
        }
        annotations.append(_panel_title(pesc(pid), (xdom[0] + xdom[1]) / 2, ydom[1]))
        annotations[-1]["font"] = {"size": 12}
        shapes.append(_hband(1.0, 3.0, BAND_FILL["1-3"], xname, yname))
        shapes.append(_hband(3.0, hi, BAND_FILL[">3"], xname, yname))
        groups: dict[str, list[dict[str, Any]]] = {"chronic": [], "excluded": [], "acute": []}
        for r in per_person[pid]:
            kind = _draw_kind(r)
            if kind == "acute":
                groups["acute"].append(r)
            elif kind in ("chronic", "censored"):
                groups["chronic"].append(r)
            else:
                groups["excluded"].append(r)
        for key, pts in groups.items():
            if not pts:
                continue
            style = DRAW_STYLES["merged" if key == "excluded" else key]
            data.append(
                {
                    "type": "scatter",
                    "xaxis": xname,
                    "yaxis": yname,
                    "x": [r["x"] for r in pts],
                    "y": [_r(r["value"]) for r in pts],
                    "mode": "lines+markers" if key == "chronic" else "markers",
                    "marker": {**style["marker"], "size": 7},
                    "line": {"width": 1, "color": "#8fa8cf"},
                    "name": style["name"]
                    if key != "excluded"
                    else "excluded from chronic analysis",
                    "legendgroup": key,
                    "showlegend": key not in shown,
                    "hovertext": [
                        f"{pesc(pid)}<br>{r['x']}<br>{fmt_value(r['value'])} mg/L" for r in pts
                    ],
                    "hoverinfo": "text",
                }
            )
            shown.add(key)
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    return {"data": data, "layout": layout}
