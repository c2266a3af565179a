"""The forest plot of the cohort page (`forest_plot`): per feature its best window's estimate with
the 95% CI and n, for the pooled and the between-person estimates.
"""

from __future__ import annotations

from typing import Any

from pipelines.reports.figures.base import Fig, _layout, _r
from pipelines.reports.html import (
    fmt_pct,
    fmt_q,
    is_num,
    pesc,
)


def forest_plot(rows: list[dict[str, Any]], title: str, n_word: str) -> Fig | None:
    """Effect % with 95% CI per row; rows carry 'label' and the association columns."""
    pts = [r for r in rows if is_num(r.get("effect_pct"))]
    if not pts:
        return None
    labels = [pesc(r["label"]) for r in pts]
    eff = [float(r["effect_pct"]) for r in pts]
    hi = [
        float(r["ci_high_pct"]) if is_num(r.get("ci_high_pct")) else e
        for r, e in zip(pts, eff, strict=True)
    ]
    lo = [
        float(r["ci_low_pct"]) if is_num(r.get("ci_low_pct")) else e
        for r, e in zip(pts, eff, strict=True)
    ]
    hover = [
        f"{lab}<br><b>{fmt_pct(e)}</b> (95% CI {fmt_pct(low)} to {fmt_pct(high)})"
        f"<br>{n_word} = {r.get('n')}, q = {fmt_q(r.get('q'))}"
        f"<br>{(r.get('status') or '').replace('_', ' ')}"
        for lab, e, low, high, r in zip(labels, eff, lo, hi, pts, strict=True)
    ]
    trace = {
        "type": "scatter",
        "x": [_r(e) for e in eff],
        "y": labels,
        "mode": "markers",
        "marker": {
            "size": 10,
            "symbol": "square",
            "color": ["#0f766e" if r.get("status") == "significant" else "#7b8794" for r in pts],
        },
        "error_x": {
            "type": "data",
            "symmetric": False,
            "array": [_r(h - e) for h, e in zip(hi, eff, strict=True)],
            "arrayminus": [_r(e - low) for e, low in zip(eff, lo, strict=True)],
            "color": "#52606d",
            "thickness": 1.5,
            "width": 4,
        },
        "hovertext": hover,
        "hoverinfo": "text",
        "showlegend": False,
    }
    zero_line = {
        "type": "line",
        "xref": "x",
        "x0": 0,
        "x1": 0,
        "yref": "y domain",
        "y0": 0,
        "y1": 1,
        "line": {"color": "#9aa5b1", "dash": "dash", "width": 1},
    }
    layout = _layout(
        title,
        max(240, 110 + 34 * len(pts)),
        shapes=[zero_line],
        xaxis={
            "ticksuffix": "%",
            "title": {
                "text": "% change in marker per unit (95% CI); "
                "teal = significant after multiple testing"
            },
        },
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
    )
    return {"data": [trace], "layout": layout}
