"""The symptom and wearable panel of a person page (`outcome_panel`): one small row per daily
outcome (measure and scale: bloating 0-10, Bristol 1-7, resting heart rate in bpm, ...), the
day's readings as dots and their 7-day rolling mean as a line, on one shared time axis whose range
is the CRP timeline's (`page_span`), so a symptom flare lines up with the draws and the diet.
`outcome_points` works out the plotted values for every rendered page at once.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl

from pipelines.reports.figures.base import Fig, _layout, _panel_title, _r_many
from pipelines.reports.html import pesc
from pipelines.reports.outcome_power import SCALE_BRISTOL, SCALE_UNIT, SCALE_YES_NO
from pipelines.reports.outcome_text import series_title

ROLLING_DAYS = 7
# A rolling mean over fewer readings than this in its 7 days is left out (a gap in the line):
# one reading is not a week's mean.
ROLLING_MIN_READINGS = 3
ROW_HEIGHT = 150
OUTCOME_COLOR = "#c2255c"

OUTCOME_POINTS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "metric": pl.String,
    "scale": pl.String,
    "unit": pl.String,
    "day": pl.Date,
    "x": pl.String,  # the day as ISO text, for the figure
    "value": pl.Float64,
    "mean7": pl.Float64,
}


def outcome_points(readings: pl.DataFrame) -> pl.DataFrame:
    """Per person, measure, scale and day: the day's mean reading (several Bristol readings a
    day are one point, as the analysis takes them) and the mean of the readings in the 7 days
    ending that day (null with fewer than ROLLING_MIN_READINGS), in day order. For every
    rendered page at once, with the days as text: a query or date formatting per page cost
    more than drawing the figure."""
    if readings.is_empty():
        return pl.DataFrame(schema=OUTCOME_POINTS_SCHEMA)
    series = ["person_id", "metric", "scale"]
    return (
        readings.lazy()
        .filter(
            pl.col("value").is_not_null()
            & pl.col("value").is_finite()
            & pl.col("day").is_not_null()
        )
        .group_by(*series, "day")
        .agg(pl.col("value").mean(), pl.col("unit").drop_nulls().first())
        .sort(*series, "day")
        .with_columns(
            x=pl.col("day").dt.strftime("%Y-%m-%d"),
            mean7=pl.col("value")
            .rolling_mean_by("day", f"{ROLLING_DAYS}d", min_samples=ROLLING_MIN_READINGS)
            .over(series),
        )
        .select(list(OUTCOME_POINTS_SCHEMA))
        .collect()
    )


def page_span(*days: list[date]) -> list[str] | None:
    """One x range for every time figure of a page: the first to the last day of any of `days`,
    padded by 3 days (and to three weeks for a short span, as the timeline pads a single draw)."""
    every = [d for group in days for d in group if isinstance(d, date)]
    if not every:
        return None
    lo, hi = min(every), max(every)
    span = (hi - lo).days
    pad = timedelta(days=3 if span >= 21 else (21 - span) // 2 + 3)
    return [(lo - pad).isoformat(), (hi + pad).isoformat()]


def _y_range(scale: str) -> list[float] | None:
    """The scale's full range, so a calm week does not look like a flare; physical measures
    autorange."""
    if scale == SCALE_YES_NO:
        return [-0.1, 1.1]
    if scale == SCALE_BRISTOL:
        return [0.5, 7.5]
    if scale == SCALE_UNIT:
        return None
    lo, _, hi = scale.partition("-")
    try:
        low, high = float(lo), float(hi)
    except ValueError:
        return None
    pad = (high - low) * 0.05
    return [low - pad, high + pad]


def _series_runs(points: pl.DataFrame) -> list[tuple[int, int]]:
    """(first row, rows) of each measure and scale in a person's points, which come sorted by
    them (`outcome_points`): a Python pass over two short lists, where partition_by was a
    query per page that cost more than the rest of the figure."""
    keys = list(zip(points["metric"].to_list(), points["scale"].to_list(), strict=True))
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i - start))
            start = i
    return runs


def outcome_panel(points: pl.DataFrame, x_range: list[str] | None, title: str) -> Fig | None:
    """Small multiples of the person's daily outcomes (`points`: their `outcome_points`), one
    row per measure and scale, all rows on one time axis with range `x_range` (the page's span,
    shared with the CRP timeline). None without a reading."""
    if points.is_empty():
        return None
    parts = [points.slice(start, length) for start, length in _series_runs(points)]
    n = len(parts)
    gap = 0.22 / n if n > 1 else 0.0
    height = (1.0 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []
    annotations = []
    layout: dict[str, Any] = {}
    for k, part in enumerate(parts):
        axis = "" if k == 0 else str(k + 1)
        top = 1.0 - k * (height + gap)
        domain = [round(max(0.0, top - height), 4), round(top, 4)]
        metric, scale = str(part["metric"][0]), str(part["scale"][0])
        unit = (
            part["unit"].drop_nulls().first() if part["unit"].null_count() < part.height else None
        )
        label = series_title(metric, scale, unit)
        days = part["x"].to_list()
        common = {"x": days, "xaxis": f"x{axis}", "yaxis": f"y{axis}", "showlegend": k == 0}
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "y": _r_many(part["value"]),
                "marker": {"size": 4, "color": "rgba(194,37,92,0.35)"},
                "name": "daily reading",
                "legendgroup": "daily",
                "hovertemplate": f"%{{x|%Y-%m-%d}}<br>{pesc(label)}: %{{y}}<extra></extra>",
                **common,
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "y": _r_many(part["mean7"]),
                "line": {"width": 2, "color": OUTCOME_COLOR},
                "connectgaps": False,
                "name": f"{ROLLING_DAYS}-day mean",
                "legendgroup": "mean",
                "hovertemplate": (
                    f"%{{x|%Y-%m-%d}}<br>{pesc(label)}, {ROLLING_DAYS}-day mean: %{{y}}"
                    "<extra></extra>"
                ),
                **common,
            }
        )
        annotations.append(_panel_title(pesc(label), 0.5, domain[1]))
        y_range = _y_range(scale)
        layout[f"yaxis{axis}"] = {
            "domain": domain,
            "anchor": f"x{axis}",
            **({"range": y_range} if y_range else {}),
        }
        last = k == n - 1
        # One time axis: every row follows the first (zooming one zooms all), and only the
        # bottom row has tick labels.
        layout[f"xaxis{axis}"] = {
            "type": "date",
            "anchor": f"y{axis}",
            "showticklabels": last,
            **({"matches": "x"} if k else {}),
            **({"range": x_range} if x_range and not k else {}),
            **({"title": {"text": "date"}} if last else {}),
        }
    return {
        "data": data,
        "layout": _layout(
            title,
            90 + ROW_HEIGHT * n,
            annotations=annotations,
            hovermode="closest",
            margin={"r": 12},
            legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
            **layout,
        ),
    }


# Zooming or panning the CRP timeline moves the outcomes panel to the same dates, and back, and
# the panel takes the timeline's left and right margins (the timeline's legend sits to its
# right), so a date is at the same place in both: two figures, one time axis. The timeline's
# bottom axis is "xaxis2" when it has a diet panel (its top axis follows it), else "xaxis".
# Only a change of a time axis is passed on; `busy` stops the echo of the relayout it caused.
AXIS_SYNC_SCRIPT = """
(function () {
  var a = document.getElementById("timeline"), b = document.getElementById("outcomes");
  if (!a || !b || typeof Plotly === "undefined" || !a.on || !b.on) return;
  var axisA = a.layout.xaxis2 ? "xaxis2" : "xaxis", busy = false;
  function link(from, fromAxis, to, toAxis) {
    from.on("plotly_relayout", function (ev) {
      var r = from.layout[fromAxis] && from.layout[fromAxis].range;
      var timeAxis = Object.keys(ev || {}).some(function (k) { return k.indexOf("xaxis") === 0; });
      if (busy || !r || !timeAxis) return;
      var update = {};
      update[toAxis + ".range"] = r.slice();
      busy = true;
      Plotly.relayout(to, update).then(
        function () { busy = false; }, function () { busy = false; });
    });
  }
  function align() {
    var s = a._fullLayout && a._fullLayout._size, t = b._fullLayout && b._fullLayout._size;
    if (!s || !t || (Math.abs(s.l - t.l) < 1 && Math.abs(s.r - t.r) < 1)) return;
    Plotly.relayout(b, {"margin.l": s.l, "margin.r": s.r});
  }
  link(a, axisA, b, "xaxis");
  link(b, "xaxis", a, axisA);
  a.on("plotly_afterplot", align);
  align();
})();
"""


def axis_sync_script() -> str:
    """The script that keeps the timeline's and the outcomes panel's time axes together."""
    return f"<script>{AXIS_SYNC_SCRIPT}</script>"
