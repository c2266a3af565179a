"""The CRP timeline of a person page (`crp_timeline`): the headline marker's draws by kind (chronic,
acute, below the detection limit, washout) on a log axis over the hs-CRP risk bands, the chronic
baseline, and the weekly diet panel below.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
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
from pipelines.reports.figures.diet import DIET_COLORS, _diet_panel
from pipelines.reports.html import (
    feature_label,
    fmt_value,
    is_num,
    pesc,
)


def _draw_kind(row: dict[str, Any]) -> str:
    reason = row.get("excluded_reason")
    if row.get("acute") or reason == "acute":
        return "acute"
    if reason == "post_acute_washout":
        return "washout"
    if reason == "merged_into_visit":
        return "merged"
    if reason is not None:
        return "other"
    if row.get("below_lod") or row.get("censored") == "<":
        return "censored"
    return "chronic"


DRAW_STYLES: dict[str, dict[str, Any]] = {
    "chronic": {
        "name": "chronic draw (analysed)",
        "marker": {"symbol": "circle", "size": 10, "color": "#2457a6"},
    },
    "censored": {
        "name": "below detection limit (drawn at LOD/√2)",
        "marker": {"symbol": "circle-open", "size": 11, "color": "#2457a6", "line": {"width": 2}},
    },
    "acute": {
        "name": "excluded: acute (>10 mg/L)",
        "marker": {"symbol": "x", "size": 12, "color": "#b91c1c"},
        "label": "excluded: acute",
    },
    "washout": {
        "name": "excluded: post-acute washout",
        "marker": {"symbol": "diamond-open", "size": 11, "color": "#d9480f", "line": {"width": 2}},
        "label": "washout",
    },
    "merged": {
        "name": "merged into a visit (averaged)",
        "marker": {"symbol": "circle", "size": 6, "color": "#9aa5b1"},
    },
    "other": {
        "name": "excluded (other reason)",
        "marker": {"symbol": "square-open", "size": 9, "color": "#6b7280"},
    },
}


def draw_points(draws: pl.DataFrame) -> pl.DataFrame:
    """The draws a timeline plots: those with a plottable date string ("x": the draw's time, else
    its day) and a positive value (log axis), in time order per person. One query for all the
    people drawn (every rendered page's, see `people._split_tables`): one per page cost more
    than drawing its result."""
    return (
        draws.lazy()
        .with_columns(
            x=pl.coalesce(
                pl.col("collected_at").dt.strftime("%Y-%m-%d %H:%M"),
                pl.col("day").dt.strftime("%Y-%m-%d"),
            )
        )
        .filter(pl.col("x").is_not_null() & (pl.col("value") > 0))
        .sort("person_id", "x", maintain_order=True)
        .collect()
    )


def _short_span(xs: list[str]) -> dict[str, Any]:
    """A padded date range when the data spans under three weeks.

    Plotly autoranges a single date to a millisecond-wide axis; a few weeks around it reads.
    """
    days = sorted({x[:10] for x in xs if x})
    if not days:
        return {}
    lo, hi = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    if (hi - lo).days >= 21:
        return {}
    pad = timedelta(days=(21 - (hi - lo).days) // 2 + 3)
    return {"range": [(lo - pad).isoformat(), (hi + pad).isoformat()]}


def _crp_range(values: list[float]) -> tuple[float, float]:
    return min([0.1, *(v / 1.6 for v in values)]), max([20.0, *(v * 1.6 for v in values)])


def crp_timeline(
    rows: list[dict[str, Any]],
    weekly: pl.DataFrame,
    baseline: float | None,
    title: str,
    dii_params: str = "",
    bands: bool = True,
    x_range: list[str] | None = None,
) -> Fig | None:
    """CRP on a log axis with the hs-CRP risk bands (`bands`: hs-CRP only) for the draws `rows`
    (the person's `draw_points`, as dicts), the weekly diet (`weekly`: their `weekly_diet`) beneath
    and the weekly DII under that, all on one shared time axis. `dii_params` says how many
    parameters the DII was computed from ("28 of 45 parameters"); the DII panel's title and hover
    show it. `x_range` fixes the time axis' range (the page's span, shared with the daily
    outcomes panel); without it the axis fits the data."""
    panel = _diet_panel(weekly)
    series = panel.series
    if not rows and not series:
        return None
    two_rows = bool(series)
    with_dii = panel.with_dii
    if with_dii:
        top, diet_dom, dii_dom = [0.53, 1.0], [0.25, 0.45], [0.0, 0.17]
    else:
        top, diet_dom, dii_dom = ([0.45, 1.0] if two_rows else [0.0, 1.0]), [0.0, 0.36], [0.0, 0.0]
    lo, hi = _crp_range([float(r["value"]) for r in rows])
    data: list[dict[str, Any]] = []
    shapes = []
    annotations = [_panel_title("CRP draws (log scale)", 0.5, top[1])]
    for (y0, y1), key, text in (
        (
            ((lo, 1.0), "<1", "low <1 mg/L"),
            ((1.0, 3.0), "1-3", "average 1-3 mg/L"),
            ((3.0, hi), ">3", "high >3 mg/L"),
        )
        if bands
        else ()
    ):
        shapes.append(_hband(y0, y1, BAND_FILL[key]))
        # Annotations on a log axis take log10 positions, unlike shapes.
        annotations.append(
            {
                "text": text,
                "x": 0.995,
                "xref": "x domain",
                "y": math.log10(min(y1, 30.0)),
                "yref": "y",
                "xanchor": "right",
                "yanchor": "top",
                "showarrow": False,
                "font": {"size": 11, "color": "#4b5563"},
            }
        )

    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_kind.setdefault(_draw_kind(r), []).append(r)
    chronic_xy = sorted(
        by_kind.get("chronic", []) + by_kind.get("censored", []), key=lambda r: r["x"]
    )
    if len(chronic_xy) >= 2:
        data.append(
            {
                "type": "scatter",
                "x": [r["x"] for r in chronic_xy],
                "y": [_r(r["value"]) for r in chronic_xy],
                "mode": "lines",
                "line": {"color": "#8fa8cf", "width": 1, "dash": "dot"},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    for kind, style in DRAW_STYLES.items():
        pts = by_kind.get(kind)
        if not pts:
            continue
        hover = []
        for r in pts:
            note = style["name"]
            if r.get("censored"):
                note += f" (reported as {pesc(r['censored'])} {fmt_value(r['value'])})"
            n_res = r.get("n_results")
            extra = f"<br>{n_res} results averaged" if is_num(n_res) and n_res > 1 else ""
            hover.append(f"{r['x']}<br><b>{fmt_value(r['value'])} mg/L</b><br>{note}{extra}")
        trace: dict[str, Any] = {
            "type": "scatter",
            "x": [r["x"] for r in pts],
            "y": [_r(r["value"]) for r in pts],
            "mode": "markers",
            "marker": style["marker"],
            "name": style["name"],
            "hovertext": hover,
            "hoverinfo": "text",
        }
        if style.get("label"):
            trace.update(
                mode="markers+text",
                text=[style["label"]] * len(pts),
                textposition="top center",
                textfont={"size": 11, "color": style["marker"]["color"]},
            )
        data.append(trace)
    xs_all = [r["x"] for r in rows]
    weeks = panel.weeks
    xs_all += weeks
    if is_num(baseline) and baseline > 0 and xs_all:
        data.append(
            {
                "type": "scatter",
                "x": [min(xs_all), max(xs_all)],
                "y": [_r(baseline), _r(baseline)],
                "mode": "lines",
                "line": {"color": "#0f766e", "width": 2, "dash": "dash"},
                "name": f"chronic baseline {fmt_value(baseline)} mg/L",
                "hoverinfo": "name",
            }
        )

    if not rows:
        # plotly.js draws NaN axis lines for a subplot no trace refers to: anchor an empty trace
        # and say why the panel is empty.
        data.append(
            {
                "type": "scatter",
                "x": xs_all[:1],
                "y": [None],
                "showlegend": False,
                "hoverinfo": "skip",
            }
        )
        annotations.append(
            {
                "text": "No CRP draws yet",
                "x": 0.5,
                "xref": "x domain",
                "y": 0.5,
                "yref": "y domain",
                "showarrow": False,
                "font": {"size": 14, "color": "#5f6b7a"},
            }
        )
    has_secondary = False
    rounded = panel.rounded
    days = panel.days
    if series:
        annotations.append(_panel_title("Weekly mean intake on logged days", 0.5, diet_dom[1]))
        for col, visible, secondary in series:
            has_secondary |= secondary
            data.append(
                {
                    "type": "scatter",
                    "x": weeks,
                    "y": rounded[col],
                    "xaxis": "x2",
                    "yaxis": "y3" if secondary else "y2",
                    "legend": "legend2",
                    "mode": "lines+markers",
                    "marker": {"size": 4},
                    "line": {"width": 2 if visible else 1.5}
                    | ({"color": DIET_COLORS[col]} if col in DIET_COLORS else {}),
                    "name": feature_label(col),
                    "visible": True if visible else "legendonly",
                    "customdata": days,
                    "hovertemplate": (
                        f"week of %{{x|%Y-%m-%d}}<br>{pesc(feature_label(col))}: %{{y}}"
                        "<br>%{customdata} days logged<extra></extra>"
                    ),
                }
            )
    if with_dii:
        used = f", {pesc(dii_params)}" if dii_params else ""
        annotations.append(
            _panel_title(f"Weekly mean Dietary Inflammatory Index (DII{used})", 0.5, dii_dom[1])
        )
        data.append(
            {
                "type": "scatter",
                "x": weeks,
                "y": rounded["dii"],
                "xaxis": "x2",
                "yaxis": "y4",
                "mode": "lines+markers",
                "marker": {"size": 4, "color": "#7048e8"},
                "line": {"width": 2, "color": "#7048e8"},
                "name": "DII (weekly mean)",
                "showlegend": False,
                "customdata": days,
                "hovertemplate": (
                    f"week of %{{x|%Y-%m-%d}}<br>DII{used}: %{{y}}"
                    "<br>%{customdata} days logged<extra></extra>"
                ),
            }
        )

    layout = _layout(
        title,
        (880 if with_dii else 720) if two_rows else 420,
        shapes=shapes,
        annotations=annotations,
        hovermode="closest",
        margin={"r": 12},
        legend={"x": 1.02, "y": 1, "yanchor": "top", "font": {"size": 11}},
        yaxis={
            "type": "log",
            "range": [math.log10(lo), math.log10(hi)],
            "domain": top,
            "anchor": "x",
            "tickvals": LOG_TICKS,
            "title": {"text": "CRP (mg/L, log)"},
        },
    )
    if two_rows:
        # Shared x axis: the top panel follows the bottom one and hides its tick labels.
        layout["xaxis"] = {"type": "date", "anchor": "y", "matches": "x2", "showticklabels": False}
        layout["xaxis2"] = {
            "type": "date",
            "anchor": "y4" if with_dii else "y2",
            "title": {"text": "date"},
            **({"range": x_range} if x_range else _short_span(xs_all)),
        }
        if with_dii:
            layout["yaxis4"] = {
                "domain": dii_dom,
                "anchor": "x2",
                "title": {"text": "DII"},
                "zeroline": True,
                "zerolinecolor": "#9aa5b1",
            }
        layout["yaxis2"] = {
            "domain": diet_dom,
            "anchor": "x2",
            "rangemode": "tozero",
            "title": {"text": "servings/day"},
        }
        if has_secondary:
            layout["yaxis3"] = {
                "overlaying": "y2",
                "side": "right",
                "anchor": "x2",
                "rangemode": "tozero",
                "showgrid": False,
                # Own ticks: plotly.js otherwise syncs them to the left axis (12.6, 25.2, ...).
                "tickmode": "auto",
                "nticks": 6,
                "title": {"text": "fibre g/day"},
            }
        # A second legend beside the diet panel keeps draws and foods apart.
        layout["legend2"] = {
            "x": 1.02 if not has_secondary else 1.06,
            "y": diet_dom[1] + 0.04,
            "yanchor": "top",
            "font": {"size": 10},
            "tracegroupgap": 0,
            "title": {"text": "Diet (click to show)", "font": {"size": 11}},
        }
        if has_secondary:
            layout["legend"]["x"] = 1.06
    else:
        layout["xaxis"] = {
            "type": "date",
            "anchor": "y",
            "title": {"text": "date"},
            **({"range": x_range} if x_range else _short_span(xs_all)),
        }
    return {"data": data, "layout": layout}
