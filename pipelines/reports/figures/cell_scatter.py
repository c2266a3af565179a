"""The scatter behind a lag-heatmap cell: a page carries one compact JSON blob with each cell's
points and fit (`cell_scatter_data`, `cell_data_script`), and a short inline script
(`CELL_SCRIPT`) that redraws the scatter on a Plotly click with Plotly's own API.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.figures.base import LOG_TICKS, TEMPLATE, _r_many, t_quantile
from pipelines.reports.figures.heatmap import (
    _window_label,
    heatmap_axes,
    window_key,
)
from pipelines.reports.figures.render import CONFIG
from pipelines.reports.html import (
    feature_label,
    feature_order,
    is_num,
    pesc,
)

CELL_DATA_ID = "cell-data"

# Drawn by CELL_SCRIPT around every scatter; the figure-specific parts come from the blob.
SCATTER_LAYOUT: dict[str, Any] = {
    "template": TEMPLATE,
    "height": 460,
    "hovermode": "closest",
    "showlegend": True,
    "legend": {"orientation": "h", "y": -0.22, "x": 0, "font": {"size": 11}},
    "margin": {"t": 78, "b": 96},
    "xaxis": {"zeroline": False},
    "yaxis": {"type": "log", "tickvals": LOG_TICKS},
    "annotations": [
        {
            "text": "Association, not causation: points are this person's chronic draws with a "
            "complete window; the line is the log-linear fit with its 95% CI.",
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": -0.36,
            "xanchor": "left",
            "yanchor": "top",
            "showarrow": False,
            "font": {"size": 11, "color": "#5f6b7a"},
        }
    ],
}

# Reads the blob written by `cell_scatter_data` and (re)draws the scatter of a heatmap cell:
# on load the most significant cell, then whichever cell is clicked. Small on purpose; it uses
# only Plotly's public API (react, on("plotly_click")). The fit is y = a + b x on ln(marker),
# the band a + b x +/- t * s * sqrt(1/n + (x - mean x)^2 / Sxx), both drawn back on the marker's
# own (log) axis.
CELL_SCRIPT = """
(function () {
  var node = document.getElementById("cell-data");
  if (!node || typeof Plotly === "undefined") return;
  var B = JSON.parse(node.textContent);
  function copy(o) { return JSON.parse(JSON.stringify(o)); }
  function draw(M, key) {
    var target = document.getElementById(M.target);
    if (!target || !key) return;
    var c = M.cells[key] || {};
    var feature = key.split("|")[0];
    var xl = M.xl[feature] || feature;
    var xs = [], ys = [], ds = [], i;
    if (c.x) {
      for (i = 0; i < c.x.length; i++) {
        if (c.x[i] !== null) { xs.push(c.x[i]); ys.push(M.y[i]); ds.push(M.dates[i]); }
      }
    }
    var data = [{
      type: "scatter", mode: "markers", x: xs, y: ys, text: ds, name: "chronic draw",
      marker: {size: 9, color: "#2457a6", line: {width: 1, color: "#fff"}},
      hovertemplate: "%{text}<br>" + xl + ": %{x}<br>" + M.marker + ": %{y} " + M.unit +
        "<extra></extra>"
    }];
    if (c.fit && xs.length) {
      var f = c.fit, lo = Math.min.apply(null, xs), hi = Math.max.apply(null, xs);
      var gx = [], fit = [], up = [], dn = [];
      for (i = 0; i <= 40; i++) {
        var x = lo + (hi - lo) * i / 40, m = f[0] + f[1] * x;
        var se = f[2] * Math.sqrt(1 / f[5] + Math.pow(x - f[3], 2) / f[4]);
        gx.push(x); fit.push(Math.exp(m));
        up.push(Math.exp(m + f[6] * se)); dn.push(Math.exp(m - f[6] * se));
      }
      data.push({type: "scatter", mode: "lines", x: gx, y: dn, line: {width: 0},
        hoverinfo: "skip", showlegend: false});
      data.push({type: "scatter", mode: "lines", x: gx, y: up, line: {width: 0},
        fill: "tonexty", fillcolor: "rgba(217,72,15,0.16)", hoverinfo: "skip",
        name: "95% CI of the fitted line"});
      data.push({type: "scatter", mode: "lines", x: gx, y: fit,
        line: {color: "#d9480f", width: 2.5}, hoverinfo: "skip",
        name: "log-linear fit"});
    }
    var L = copy(B.layout);
    L.title = {text: c.title || key};
    L.xaxis.title = {text: xl};
    L.yaxis.title = {text: M.marker + (M.unit ? " (" + M.unit + ", log scale)" : " (log scale)")};
    if (!xs.length) {
      L.annotations.push({text: "No draws with a complete window for this cell",
        xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
        font: {size: 14, color: "#5f6b7a"}});
    }
    Plotly.react(target, data, L, B.config);
    target.setAttribute("data-cell", key);
  }
  Object.keys(B.maps).forEach(function (hid) {
    var M = B.maps[hid], gd = document.getElementById(hid);
    draw(M, M.initial);
    if (!gd || !gd.on) return;
    gd.on("plotly_click", function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (!p) return;
      var ij = p.pointNumber, r = -1, k = -1;
      if (ij && ij.length === 2) { r = ij[0]; k = ij[1]; }
      else { r = M.ylabels.indexOf(p.y); k = M.xlabels.indexOf(p.x); }
      if (r >= 0 && k >= 0 && r < M.rows.length && k < M.cols.length) {
        draw(M, M.rows[r] + "|" + M.cols[k]);
      }
    });
  });
})();
""".strip()


def cell_key(feature: object, window: object) -> str:
    return f"{feature}|{window_key(window)}"


def _cell_fits(points: pl.DataFrame) -> dict[str, list[float | None]]:
    """Per cell the OLS of ln(marker) on the feature: [a, b, s, mean x, Sxx, n, t_0.975,n-2]."""
    stats_df = (
        points.lazy()
        .with_columns(
            (pl.col("x") - pl.col("x").mean().over("key")).alias("_dx"),
            (pl.col("ly") - pl.col("ly").mean().over("key")).alias("_dy"),
        )
        .group_by("key")
        .agg(
            pl.len().alias("n"),
            pl.col("x").mean().alias("mx"),
            pl.col("ly").mean().alias("my"),
            (pl.col("_dx") ** 2).sum().alias("sxx"),
            (pl.col("_dx") * pl.col("_dy")).sum().alias("sxy"),
            (pl.col("_dy") ** 2).sum().alias("syy"),
        )
        .filter((pl.col("n") >= 3) & (pl.col("sxx") > 1e-12))
        .collect()
    )
    if stats_df.is_empty():
        return {}
    # Column-wise, with the same IEEE operations in the same order as the scalar formulas
    # b = sxy / sxx, a = my - b * mx, rss = max(syy - b * sxy, 0), s = sqrt(rss / (n - 2)).
    ns = stats_df["n"].cast(pl.Int64).to_list()
    mx, my, sxx, sxy, syy = (
        stats_df[c].cast(pl.Float64).to_numpy() for c in ("mx", "my", "sxx", "sxy", "syy")
    )
    with np.errstate(all="ignore"):
        b = sxy / sxx
        a = my - b * mx
        rss = syy - b * sxy
        rss = np.where(rss < 0.0, 0.0, rss)
        n_float = np.asarray(ns, dtype=np.float64)
        s = np.where(n_float > 2, np.sqrt(rss / (n_float - 2)), 0.0)
    columns = [_r_many(col, 6) for col in (a, b, s, mx, sxx)]
    ts = _r_many([t_quantile(0.975, n - 2) for n in ns], 5)
    return {
        key: [ra, rb, rs, rmx, rsxx, n, t]
        for key, ra, rb, rs, rmx, rsxx, n, t in zip(
            stats_df["key"].to_list(), *columns, ns, ts, strict=True
        )
    }


def cell_scatter_data(
    rows: list[dict[str, Any]],
    windows: pl.DataFrame,
    draws: pl.DataFrame,
    marker: str,
    marker_name: str,
    unit: str,
    titles: dict[str, str],
    target: str,
) -> dict[str, Any] | None:
    """What `CELL_SCRIPT` needs to draw any cell of one person's lag heatmap for one marker.

    `rows` are the heatmap's associations as dicts (as `lag_heatmap` takes them), `windows` the
    person's exposure windows, `draws` their marker draws; only complete
    windows of chronic draws (excluded_reason null) are used, as in the association step. Each
    draw's date and value are stored once; a cell stores its feature values aligned to the draws
    (null where the window was not complete), its fit and its title. `titles` maps a cell key to
    its title as Plotly text (the caller escapes user text with `pesc`; <b> and <br> may be
    used). Returns None when no cell has a row in `rows` or no draw has a complete window.
    """
    features, wins = heatmap_axes(rows)
    if not features:
        return None
    cols = [window_key(w) for w in wins]
    keys = {cell_key(f, w) for f in features for w in wins}
    # The points are one query (a chain of eager calls would collect at every step); the
    # draws' values come with them from the join, so the draws are not collected on their own.
    ly = (
        pl.coalesce(pl.col("log_value"), pl.col("value").log())
        if "log_value" in draws.columns
        else pl.col("value").log()
    )
    resp = (
        draws.lazy()
        .filter(
            (pl.col("marker") == marker)
            & pl.col("excluded_reason").is_null()
            & pl.col("collected_at").is_not_null()
            & (pl.col("value") > 0)
        )
        .select("collected_at", pl.col("value").alias("y"), ly.alias("ly"))
        .unique("collected_at", keep="first")
        .with_columns(pl.col("collected_at").cast(pl.Datetime("us")))
    )
    points = pl.DataFrame(
        schema={"key": pl.String, "collected_at": pl.Datetime("us"), "x": pl.Float64}
    )
    if windows.height:
        points = (
            windows.lazy()
            .filter(
                (pl.col("marker") == marker)
                & pl.col("complete").fill_null(False)
                & pl.col("value").is_not_null()
                & pl.col("value").is_finite()
            )
            .select(
                pl.concat_str(
                    [
                        pl.col("feature"),
                        pl.lit("|"),
                        pl.col("window_days").cast(pl.String).fill_null("all"),
                    ]
                ).alias("key"),
                pl.col("collected_at").cast(pl.Datetime("us")),
                pl.col("value").cast(pl.Float64).alias("x"),
            )
            .filter(pl.col("key").is_in(list(keys)))
            .join(resp, on="collected_at", how="inner")
            .collect()
        )
    if points.is_empty():
        return None
    # The draws with a complete window, in time order (physical values: microseconds), and the
    # first point of each: it carries the draw's date and value.
    stamps = points["collected_at"].to_physical().to_numpy()
    used, first = np.unique(stamps, return_index=True)
    drawn = points[first]
    fits = _cell_fits(points)
    cells: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        cells[key] = {"title": titles.get(key) or pesc(key)}
    # One pass over all points: each cell's values aligned to the draws (a later duplicate of a
    # draw within a cell wins, as row order is kept).
    slots = np.searchsorted(used, stamps).tolist()
    n_used = len(used)
    per_cell: dict[str, list[float | None]] = {}
    for key, slot, x in zip(points["key"].to_list(), slots, _r_many(points["x"]), strict=True):
        xs = per_cell.get(key)
        if xs is None:
            xs = per_cell[key] = [None] * n_used
        xs[slot] = x
    for key, xs in per_cell.items():
        cells[key]["x"] = xs
        if key in fits:
            cells[key]["fit"] = fits[key]

    def rank(r: dict[str, Any]) -> tuple[int, int, float, float, tuple[int, str], int]:
        q, p, w = r.get("q"), r.get("p"), r.get("window_days")
        days = int(w) if is_num(w) else None
        key = f"{r.get('feature')}|{'all' if days is None else days}"  # cell_key, inlined
        return (
            0 if "x" in cells.get(key, {}) else 1,
            0 if r.get("status") == "significant" else 1,
            float(q) if is_num(q) else 2.0,
            float(p) if is_num(p) else 2.0,
            feature_order(str(r.get("feature") or "")),
            0 if days is None else days,
        )

    best = min((r for r in rows if r.get("feature") is not None), key=rank)
    return {
        "target": target,
        "marker": pesc(marker_name),
        "unit": pesc(unit),
        "dates": [d.strftime("%Y-%m-%d") for d in drawn["collected_at"].to_list()],
        "y": _r_many(drawn["y"]),
        "rows": features,
        "cols": cols,
        "ylabels": [pesc(feature_label(f)) for f in features],
        "xlabels": [_window_label(w) for w in wins],
        "xl": {f: pesc(feature_label(f)) for f in features},
        "cells": cells,
        "initial": cell_key(best.get("feature"), best.get("window_days")),
    }


def cell_data_script(maps: dict[str, dict[str, Any]]) -> str:
    """The page's one JSON blob plus the script that draws cell scatters from it.

    JSON inside <script> cannot contain "</": <, > and & are written as \\u escapes.
    """
    if not maps:
        return ""
    blob = json.dumps(
        {"layout": SCATTER_LAYOUT, "config": CONFIG, "maps": maps},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    blob = (
        blob.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return (
        f'<script type="application/json" id="{CELL_DATA_ID}">{blob}</script>'
        f"<script>{CELL_SCRIPT}</script>"
    )
