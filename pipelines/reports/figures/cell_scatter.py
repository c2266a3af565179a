"""The scatter behind a lag-heatmap cell: a person's section file carries one compact blob with
each cell's points and fit (`cell_scatter_data`, `cell_data`), and the page a short script
(`CELL_SCRIPT`) that redraws the scatter on a Plotly click with Plotly's own API.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.figures.base import LOG_TICKS, TEMPLATE, _r_many
from pipelines.reports.figures.heatmap import (
    _window_label,
    heatmap_axes,
    window_key,
)
from pipelines.reports.figures.render import CONFIG
from pipelines.reports.html import (
    feature_label,
    feature_order,
    pesc,
)

_EPOCH = datetime(1970, 1, 1)

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

# A function of the blob `cell_data` makes (`gutsignalCells(B)`, called by a person page's
# section file once its heatmaps are drawn) that (re)draws the scatter of a heatmap cell: at once
# the most significant cell, then whichever cell is clicked. Small on purpose; it uses only
# Plotly's public API (react, on("plotly_click")). The fit is y = a + b x on ln(marker), the band
# a + b x +/- t * s * sqrt(1/n + (x - mean x)^2 / Sxx), both drawn back on the marker's own (log)
# axis.
CELL_SCRIPT = """
function gutsignalCells(B) {
  if (typeof Plotly === "undefined") return;
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
}
""".strip()


# A page names each cell two or three times per finding; its features and windows are a few
# dozen, so the keys are cached (typed: a window of 28 and 28.0 are the same key anyway, but True
# is no window, unlike 1).
@lru_cache(maxsize=4096, typed=True)
def cell_key(feature: object, window: object) -> str:
    return f"{feature}|{window_key(window)}"


# The columns naming a cell of a person's lag heatmap, in the order the cell tables are sorted.
CELL = ["person_id", "marker", "key"]

CELL_POINTS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "key": pl.String,
    "collected_at": pl.Datetime("us"),
    "x": pl.Float64,
    "y": pl.Float64,
    "ly": pl.Float64,
}
CELL_FITS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "key": pl.String,
    "n": pl.Int64,
    **{c: pl.Float64 for c in ("a", "b", "s", "mx", "sxx", "t")},
}


def cell_points(windows: pl.DataFrame, draws: pl.DataFrame) -> pl.DataFrame:
    """The points behind every lag-heatmap cell of everyone, worked out at once (a Polars query
    per page cost a third of the page): per person, marker, cell `key` ("feature|window") and
    draw, the feature over the window (`x`), the draw's value (`y`) and its log (`ly`).

    Only complete windows with a finite value, of draws with a positive value and no exclusion
    (the chronic draws the association step fits). In the order of `windows` (the dashboards
    read it sorted by person), so a person's points are one run of rows.
    """
    ly = (
        pl.coalesce(pl.col("log_value"), pl.col("value").log())
        if "log_value" in draws.columns
        else pl.col("value").log()
    )
    resp = (
        draws.lazy()
        .filter(
            pl.col("excluded_reason").is_null()
            & pl.col("collected_at").is_not_null()
            & (pl.col("value") > 0)
        )
        .select(
            "person_id",
            "marker",
            pl.col("collected_at").cast(pl.Datetime("us")),
            pl.col("value").alias("y"),
            ly.alias("ly"),
        )
        .unique(["person_id", "marker", "collected_at"], keep="first", maintain_order=True)
    )
    return (
        windows.lazy()
        .filter(
            pl.col("complete").fill_null(False)
            & pl.col("value").is_not_null()
            & pl.col("value").is_finite()
        )
        .select(
            "person_id",
            "marker",
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
        .join(resp, on=["person_id", "marker", "collected_at"], how="inner", maintain_order="left")
        .collect()
    )


def cell_fits(points: pl.DataFrame) -> pl.DataFrame:
    """Per cell of `cell_points`, the OLS of ln(marker) on the feature: n, a, b, s, mean x, Sxx
    and t, the 0.975 quantile of Student's t with n - 2 degrees of freedom (unrounded), for cells
    with at least 3 points and some spread in x. Sorted like the points."""
    fits = (
        points.lazy()
        .with_columns(
            (pl.col("x") - pl.col("x").mean().over(CELL)).alias("_dx"),
            (pl.col("ly") - pl.col("ly").mean().over(CELL)).alias("_dy"),
        )
        .group_by(CELL)
        .agg(
            pl.len().alias("n"),
            pl.col("x").mean().alias("mx"),
            pl.col("ly").mean().alias("my"),
            (pl.col("_dx") ** 2).sum().alias("sxx"),
            (pl.col("_dx") * pl.col("_dy")).sum().alias("sxy"),
            (pl.col("_dy") ** 2).sum().alias("syy"),
        )
        .filter((pl.col("n") >= 3) & (pl.col("sxx") > 1e-12))
        # b = sxy / sxx, a = my - b * mx, rss = max(syy - b * sxy, 0), s = sqrt(rss / (n - 2)).
        .with_columns(b=pl.col("sxy") / pl.col("sxx"))
        .with_columns(
            a=pl.col("my") - pl.col("b") * pl.col("mx"),
            rss=pl.max_horizontal(pl.col("syy") - pl.col("b") * pl.col("sxy"), pl.lit(0.0)),
        )
        .with_columns(
            s=pl.when(pl.col("n") > 2)
            .then((pl.col("rss") / (pl.col("n") - 2)).sqrt())
            .otherwise(0.0)
        )
        .select(*CELL, pl.col("n").cast(pl.Int64), "a", "b", "s", "mx", "sxx")
        .sort(CELL)
        .collect()
    )
    # One scipy call for every fit, in the process that splits the tables (the pipeline's, which
    # has scipy loaded for the analysis): imported in each page worker, scipy.stats cost a
    # second of CPU per worker, and a call per cell more than the cell's other numbers. The
    # quantile depends on n alone, and cells have a few dozen distinct n: each is worked out once.
    from scipy import stats

    df, at = np.unique((fits.get_column("n") - 2).cast(pl.Float64).to_numpy(), return_inverse=True)
    return fits.with_columns(pl.Series("t", stats.t.ppf(0.975, df)[at], dtype=pl.Float64))


def _finite_or(column: str, default: float) -> pl.Expr:
    return pl.when(pl.col(column).is_finite()).then(pl.col(column)).otherwise(default)


def initial_cells(findings: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """Per person and marker, the lag-heatmap cell whose scatter a page draws first (`key`): one
    with points before one without, then significant first, then by q, p, the feature's order
    and the window (the first row of `findings` among equals). For everyone whose page is
    rendered at once: ranking each page's 150 cells in Python cost more than drawing them."""
    if findings.is_empty():
        return pl.DataFrame(schema={c: pl.String for c in CELL})
    # `feature_order` is (number, feature name): the number per feature, then the name.
    order = {f: feature_order(f)[0] for f in findings["feature"].drop_nulls().unique().to_list()}
    with_points = points.lazy().select(CELL).unique().with_columns(_points=pl.lit(True))
    return (
        findings.lazy()
        .filter(pl.col("feature").is_not_null())
        .with_columns(
            key=pl.concat_str(
                [
                    pl.col("feature"),
                    pl.lit("|"),
                    pl.col("window_days").cast(pl.String).fill_null("all"),
                ]
            )
        )
        .join(with_points, on=CELL, how="left", maintain_order="left")
        .sort(
            pl.col("_points").is_null(),
            (pl.col("status") != "significant").fill_null(True),
            _finite_or("q", 2.0),
            _finite_or("p", 2.0),
            pl.col("feature").replace_strict(order, return_dtype=pl.Int64),
            pl.col("feature"),
            pl.col("window_days").fill_null(0),
            maintain_order=True,
        )
        .group_by("person_id", "marker", maintain_order=True)
        .agg(pl.col("key").first())
        .sort("person_id", "marker")
        .collect()
    )


def _fit_lists(fits: pl.DataFrame, marker: str) -> dict[str, list[float | None]]:
    """One marker's rows of a person's `cell_fits` as `CELL_SCRIPT` reads them, per cell key:
    [a, b, s, mean x, Sxx, n, t_0.975,n-2], rounded."""
    mine = [i for i, m in enumerate(fits.get_column("marker").to_list()) if m == marker]
    if not mine:
        return {}
    keys, ns = fits.get_column("key").to_list(), fits.get_column("n").to_list()
    at = np.array(mine)
    # One rounding call for the five columns (a call costs more than rounding a page's fits).
    values = np.array([fits.get_column(c).to_numpy()[at] for c in ("a", "b", "s", "mx", "sxx")])
    a, b, s, mx, sxx = _r_many(values, 6)
    ts = _r_many(fits.get_column("t").to_numpy()[at], 5)
    return {
        keys[i]: [ra, rb, rs, rmx, rsxx, ns[i], t]
        for i, ra, rb, rs, rmx, rsxx, t in zip(mine, a, b, s, mx, sxx, ts, strict=True)
    }


def cell_scatter_data(
    rows: list[dict[str, Any]],
    points: pl.DataFrame,
    fits: pl.DataFrame,
    marker: str,
    marker_name: str,
    unit: str,
    titles: dict[str, str],
    target: str,
    initial: str,
) -> dict[str, Any] | None:
    """What `CELL_SCRIPT` needs to draw any cell of one person's lag heatmap for one marker.

    `rows` are the heatmap's associations as dicts (as `lag_heatmap` takes them); `points` and
    `fits` are the person's rows of `cell_points` and `cell_fits`. Each draw's date and value
    are stored once; a cell stores its feature values aligned to the draws (null where the
    window was not complete), its fit and its title. `titles` maps a cell key to its title as
    Plotly text (the caller escapes user text with `pesc`; <b> and <br> may be used); `initial`
    is the key of the cell drawn first (the person's `initial_cells`). Returns
    None when no cell has a row in `rows` or no draw has a complete window.
    """
    features, wins = heatmap_axes(rows)
    if not features:
        return None
    cols = [window_key(w) for w in wins]
    keys = {f"{f}|{c}" for f in features for c in cols}  # `cell_key` of each cell
    # A few hundred points a page: the marker and key tests in a plain loop (a Polars query
    # costs more than it), the numbers as arrays.
    point_keys = points["key"].to_list()
    mine = [
        i
        for i, (m, key) in enumerate(zip(points["marker"].to_list(), point_keys, strict=True))
        if m == marker and key in keys
    ]
    if not mine:
        return None
    at = np.array(mine)
    # Microseconds since the epoch (the physical value; a cast, as to_physical runs a query).
    stamps = points["collected_at"].cast(pl.Int64).to_numpy()[at]
    # The draws with a complete window, in time order; each point's draw; a draw's value is the
    # same in all its points.
    used, first, slots = np.unique(stamps, return_index=True, return_inverse=True)
    cells: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        cells[key] = {"title": titles.get(key) or pesc(key)}
    # The points' feature values and the draws' values, rounded in one call (a call costs more
    # than rounding a page's points).
    rounded = _r_many(
        np.concatenate([points["x"].to_numpy()[at], points["y"].to_numpy()[at[first]]])
    )
    xs_rounded, ys_rounded = rounded[: len(mine)], rounded[len(mine) :]
    # Each cell's values aligned to the draws.
    for i, slot, x in zip(mine, slots.tolist(), xs_rounded, strict=True):
        key = point_keys[i]
        xs = cells[key].get("x")
        if xs is None:
            xs = cells[key]["x"] = [None] * len(used)
        xs[slot] = x
    for key, fit in _fit_lists(fits, marker).items():
        if "x" in cells.get(key, {}):
            cells[key]["fit"] = fit

    return {
        "target": target,
        "marker": pesc(marker_name),
        "unit": pesc(unit),
        "dates": [(_EPOCH + timedelta(microseconds=t)).strftime("%Y-%m-%d") for t in used.tolist()],
        "y": ys_rounded,
        "rows": features,
        "cols": cols,
        "ylabels": [pesc(feature_label(f)) for f in features],
        "xlabels": [_window_label(w) for w in wins],
        "xl": {f: pesc(feature_label(f)) for f in features},
        "cells": cells,
        "initial": initial,
    }


def cell_data(maps: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The blob `CELL_SCRIPT` draws from: the scatter layout and config every cell shares and
    each heatmap's `cell_scatter_data` (`maps`, by heatmap div id); None without a heatmap."""
    if not maps:
        return None
    return {"layout": SCATTER_LAYOUT, "config": CONFIG, "maps": maps}
