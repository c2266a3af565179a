"""The logging-coverage calendar of a person page (`coverage_calendar`): a week-by-weekday grid of
the days with a diet log, with the blood-draw days marked.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.figures.base import Fig, _layout
from pipelines.reports.figures.diet import (
    _EPOCH_ORDINAL,
    _date_numbers,
    _iso_days,
    _logged_mask,
    _week_texts,
)
from pipelines.reports.figures.timeline import _short_span
from pipelines.reports.html import is_num

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _coverage_days(diet: pl.DataFrame) -> tuple[date, date, list[str], dict[int, Any]] | None:
    """(first day, last day, the ISO text of every day from first to last, the logged days'
    entries by day offset from first); None without a day. A repeated logged day shows its
    last row's entries."""
    day_numbers, has_day = _date_numbers(diet.get_column("day"))
    if not has_day.any():
        return None
    lo, hi = int(day_numbers[has_day].min()), int(day_numbers[has_day].max())
    rows = np.flatnonzero(_logged_mask(diet) & has_day).tolist()
    entries = diet.get_column("entries").to_list()
    by_offset = {int(day_numbers[i]) - lo: entries[i] for i in rows}
    texts = _iso_days(lo, hi - lo + 1)
    return (
        date.fromordinal(_EPOCH_ORDINAL + lo),
        date.fromordinal(_EPOCH_ORDINAL + hi),
        texts,
        by_offset,
    )


def coverage_calendar(diet: pl.DataFrame, draw_days: list[date], title: str) -> Fig | None:
    """Weeks x weekday: which days have a diet log, with blood-draw days marked."""
    days = _coverage_days(diet)
    if days is None:
        return None
    first, last, texts, logged = days
    start = first - timedelta(days=first.weekday())
    n_weeks = (last - start).days // 7 + 1
    weeks = _week_texts(start, n_weeks)
    z: list[list[int | None]] = [[None] * n_weeks for _ in WEEKDAYS]
    hover = [[""] * n_weeks for _ in WEEKDAYS]
    # Day i after `first` sits (i + its weekday) days after `start`.
    lead = first.weekday()
    for i, text in enumerate(texts):
        k, wd = divmod(i + lead, 7)
        if i in logged:
            z[wd][k] = 1
            entries = logged[i]
            hover[wd][k] = f"{text}: logged" + (f" ({entries} entries)" if is_num(entries) else "")
        else:
            z[wd][k] = 0
            hover[wd][k] = f"{text}: not logged"
    data: list[dict[str, Any]] = [
        {
            "type": "heatmap",
            "x": weeks,
            "y": WEEKDAYS,
            "z": z,
            "zmin": 0,
            "zmax": 1,
            "colorscale": [[0, "#e5e7eb"], [0.5, "#e5e7eb"], [0.5, "#2f9e44"], [1, "#2f9e44"]],
            "showscale": False,
            "xgap": 2,
            "ygap": 2,
            "customdata": hover,
            "hovertemplate": "%{customdata}<extra></extra>",
        }
    ]
    marks = [d for d in sorted(set(draw_days)) if first <= d <= last]
    if marks:
        data.append(
            {
                "type": "scatter",
                "x": [(d - timedelta(days=d.weekday())).isoformat() for d in marks],
                "y": [WEEKDAYS[d.weekday()] for d in marks],
                "mode": "markers",
                "marker": {
                    "symbol": "diamond",
                    "size": 9,
                    "color": "#b91c1c",
                    "line": {"width": 1, "color": "#fff"},
                },
                "name": "blood draw",
                "hovertext": [f"{d.isoformat()}: blood draw" for d in marks],
                "hoverinfo": "text",
            }
        )
    layout = _layout(
        title,
        290,
        xaxis={
            "type": "date",
            "showgrid": False,
            "title": {"text": "week starting"},
            **_short_span([weeks[0], weeks[-1]]),
        },
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        showlegend=bool(marks),
        margin={"t": 70},
    )
    return {"data": data, "layout": layout}
