"""Plotly figures for the dashboards, built from small Polars frames.

Figures are plain Plotly JSON dicts rather than `go.Figure` objects: plotly.py validates every
property assignment, which made a page cost ~50 ms and a 3,000-person cross-sectional cohort
minutes. The structure is what `make_subplots` would produce; plotly.js applies the template.

Each function returns a figure or None when there is nothing to draw, so pages can say "no data
yet" instead of showing an empty axis. Values are rounded and diet is aggregated to weeks before
plotting: the JSON inside the page is the page's size. User text reaching a figure goes through
`pesc` because Plotly renders a subset of HTML in labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import orjson
import plotly.io as pio
import polars as pl

from pipelines.reports.html import (
    FONT_STACK,
    feature_label,
    feature_order,
    fmt_pct,
    fmt_q,
    fmt_value,
    is_num,
    pesc,
)
from pipelines.schema import CATEGORIES

Fig = dict[str, Any]

_AXIS = {
    "gridcolor": "#edf0f4",
    "linecolor": "#b8c1cc",
    "zeroline": False,
    "showline": True,
    "automargin": True,
}

# A tiny template instead of plotly's default: the default is ~6 kB of JSON per figure.
TEMPLATE: dict[str, Any] = {
    "layout": {
        "font": {"family": FONT_STACK, "size": 13, "color": "#1f2933"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": ["#2457a6", "#d9480f", "#0f766e", "#7048e8", "#c2255c", "#5c940d", "#e67700"],
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"align": "left"},
        "title": {"x": 0.01, "xanchor": "left", "font": {"size": 16}},
        "margin": {"l": 64, "r": 24, "t": 64, "b": 48},
    }
}

# No "Edit in Chart Studio"/logo links, nothing that could phone home.
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

BAND_FILL = {
    "<1": "rgba(34,197,94,0.13)",
    "1-3": "rgba(234,179,8,0.17)",
    ">3": "rgba(239,68,68,0.12)",
}

# Diet lines drawn under the CRP timeline: (column, visible by default, on the fibre axis).
HEADLINE_DIET = [
    ("fermented_servings", True, False),
    ("ultra_processed_servings", True, False),
    ("fiber_g", True, True),
]
# Headline colours stay the same on every page and apart from the CRP blue.
DIET_COLORS = {
    "fermented_servings": "#0f766e",
    "ultra_processed_servings": "#c2255c",
    "fiber_g": "#e67700",
}

LOG_TICKS = [0.1, 0.3, 1, 3, 10, 30, 100, 300]


def figure_html(fig: Fig, div_id: str) -> str:
    """Embed a figure without plotly.js (pages load the shared plotly.min.js).

    A fixed div id keeps re-runs on the same data byte-identical. Plotly's JSON encoder escapes
    "</" (as \\u003c\\u002f) so text cannot close the surrounding <script> tag.
    """
    height = int(fig.get("layout", {}).get("height") or 450)
    fast = _fast_figure_html(fig, div_id, f"{height}px")
    if fast is not None:
        return fast
    out: str = pio.to_html(
        fig,
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        config=CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{height}px",
    )
    return out


# `figure_html` without plotly.io's per-call overhead: the same text, from the same template.
# Plotly encodes with orjson when it is installed (a dependency: five times faster than json on
# the pages' figure data), else with json.dumps plus a `default` for non-JSON types and a second
# pass when the text has NaN or Infinity. The fast path encodes as plotly's engine does; a figure
# it cannot encode (frames, types that need plotly's cleaning, NaN under json) takes plotly's path.
_JSON = json.JSONEncoder(separators=(",", ":"))
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# Characters plotly.io escapes in its JSON, so that it can sit inside a <script> element.
_SWAP_JSON: tuple[tuple[str, str], ...] = (("<", "\\u003c"), (">", "\\u003e"), ("/", "\\u002f"))
_SWAP_ORJSON = (*_SWAP_JSON, ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_SLOTS = ("@@data@@", "@@layout@@", "@@id@@", "@@width@@", "@@height@@")


@lru_cache(maxsize=1)
def _figure_template() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """pio.to_html's text for our options, cut at the figure's own parts: (text pieces, the
    index in _SLOTS of the part that follows each piece but the last)."""
    data, layout, div_id, width, height = _SLOTS
    text: str = pio.to_html(
        {"data": data, "layout": {"width": width, "height": height}},
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        config=CONFIG,
        div_id=div_id,
    )
    engine = _json_engine()
    text = text.replace(_plotly_json(data, engine) or "", data)
    text = text.replace(_plotly_json({"width": width, "height": height}, engine) or "", layout)
    pieces, order = [], []
    while True:
        found = [(text.find(slot), k) for k, slot in enumerate(_SLOTS) if slot in text]
        if not found:
            pieces.append(text)
            break
        at, k = min(found)
        pieces.append(text[:at])
        order.append(k)
        text = text[at + len(_SLOTS[k]) :]
    return tuple(pieces), tuple(order)


def _json_engine() -> str:
    """The engine plotly.io encodes with: "auto" is orjson, which is installed with this
    project; "json" when a user sets plotly.io.json.config.default_engine so."""
    engine = str(pio.json.config.default_engine)
    return "orjson" if engine == "auto" else engine


def _plotly_json(obj: object, engine: str) -> str | None:
    """plotly.io.json.to_json_plotly(obj, engine=engine), or None when that needs plotly."""
    try:
        if engine == "orjson":
            text = orjson.dumps(obj, option=_ORJSON_OPTIONS).decode()
            swaps = _SWAP_ORJSON
        else:
            text = _JSON.encode(obj)
            if "NaN" in text or "Infinity" in text:
                return None
            swaps = _SWAP_JSON
    except (TypeError, ValueError):
        return None
    for unsafe, safe in swaps:
        if unsafe in text:
            text = text.replace(unsafe, safe)
    return text


def _css_size(value: Any) -> str:
    """A div size as plotly.io writes it: numbers in px, anything else as it is."""
    try:
        float(value)
    except (ValueError, TypeError):
        return str(value)
    return f"{value}px"


def _fast_figure_html(fig: Fig, div_id: str, default_height: str) -> str | None:
    layout = fig.get("layout", {})
    engine = _json_engine()
    if not isinstance(layout, dict) or fig.get("frames") or engine not in ("json", "orjson"):
        return None
    template = layout.get("template", {})
    template_layout = template.get("layout", {}) if isinstance(template, dict) else None
    if not isinstance(template_layout, dict):
        return None
    data_json = _plotly_json(fig.get("data", []), engine)
    layout_json = _plotly_json(layout, engine)
    if data_json is None or layout_json is None:
        return None
    width = layout.get("width", template_layout.get("width", "100%"))
    height = layout.get("height", template_layout.get("height", default_height))
    parts = (data_json, layout_json, div_id, _css_size(width), _css_size(height))
    pieces, order = _figure_template()
    out = [pieces[0]]
    for k, piece in zip(order, pieces[1:], strict=True):
        out.append(parts[k])
        out.append(piece)
    return "".join(out)


def _r(x: object, digits: int = 3) -> float | None:
    """Round to `digits` significant digits (values near zero keep 2 decimals)."""
    if not is_num(x):
        return None
    v = float(x)
    if v == 0:
        return 0
    out = round(v, max(2, digits - 1 - math.floor(math.log10(abs(v)))))
    # 2 rather than 2.0: whole servings are common and every character is page weight.
    return int(out) if out.is_integer() and abs(out) < 1e15 else out


# Exact powers of ten as doubles (10**22 is the largest one a double holds exactly).
_POW10 = np.array([float(10**k) for k in range(23)])


def _r_many(values: np.ndarray | Sequence[float | None], digits: int = 3) -> list[Any]:
    """`[_r(v, digits) for v in values]` for floats (None and NaN read as missing), vectorised.
    See `_rounded`."""
    return _rounded(values, digits)[0]


@lru_cache(maxsize=8192)
def _r_float(x: float, digits: int) -> float | None:
    """`_r` of a finite float, cached: the values numpy cannot round (ties such as 1/8 serving
    at 2 decimals) recur from day to day and person to person."""
    return _r(x, digits)


def _rounded(
    values: np.ndarray | Sequence[float | None], digits: int = 3
) -> tuple[list[Any], np.ndarray]:
    """`_r_many`, and the same values as float64 (missing as NaN) for picking scales in numpy.

    Every element comes out exactly as `_r` gives it (same value, same int/float type), so the
    JSON text is the same. Whole numbers stay as they are (`_r` rounds to at least 2 decimals).
    Otherwise `round(v, nd)` is the double nearest to the decimal obtained by rounding the exact
    v at nd decimals; numpy reproduces it when that rounding is unambiguous: v * 10**nd (one
    rounding, error under 2**-13 below 2**40) is far from a .5 tie, 10**nd is exact (nd <= 22)
    and N / 10**nd is one correctly rounded division. log10 is only trusted away from integers
    (numpy's and libm's may differ by an ulp). The rest (near-ties, near powers of ten, huge and
    tiny magnitudes) goes through `_r` itself.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return [], np.empty(0)
    with np.errstate(all="ignore"):
        finite = np.isfinite(a)
        whole_in = finite & (a == np.floor(a))
        lg = np.log10(np.abs(a))
        nd = np.maximum(2.0, (digits - 1) - np.floor(lg))
        ok = finite & ~whole_in & (np.abs(lg - np.rint(lg)) > 1e-9) & (nd <= 22)
        scale = _POW10[np.where(ok, nd, 0).astype(np.intp)]
        y = a * scale
        ok &= (np.abs(y) < 2.0**40) & (np.abs(y - np.floor(y) - 0.5) > 1e-3)
        res = np.where(whole_in, a, np.rint(y) / scale)
        ok |= whole_in
        whole = ok & (res == np.floor(res)) & (np.abs(res) < 1e15)
    # Whole numbers as Python ints: an object array takes them in one assignment.
    boxed = res.astype(object)
    boxed[whole] = res[whole].astype(np.int64)
    out: list[Any] = boxed.tolist()
    for i in np.flatnonzero(~ok).tolist():
        v = _r_float(float(a[i]), digits) if finite[i] else None
        out[i] = v
        res[i] = math.nan if v is None else v
    return out, res


def _as_rounded(x: float) -> float | int:
    """A value `_r_many` gave, back from float64: whole numbers are ints, as it returns them."""
    return int(x) if x.is_integer() and abs(x) < 1e15 else x


def _r_series(values: pl.Series, digits: int = 3) -> list[Any]:
    """`[_r(v, digits) for v in values.to_list()]`, vectorised for float columns."""
    if values.dtype.is_float():
        return _r_many(values.cast(pl.Float64).to_numpy(), digits)
    return [_r(v, digits) for v in values.to_list()]


def _r_columns(frame: pl.DataFrame, columns: list[str], digits: int = 3) -> dict[str, list[Any]]:
    """`_r_series` of each column; float columns are rounded together from one array."""
    schema = frame.schema
    floats = [c for c in columns if schema[c].is_float()]
    out: dict[str, list[Any]] = {}
    if floats and frame.height:
        matrix = frame.select([pl.col(c).cast(pl.Float64) for c in floats]).to_numpy()
        flat = _r_many(matrix.T, digits)
        for i, c in enumerate(floats):
            out[c] = flat[i * frame.height : (i + 1) * frame.height]
    return {c: out[c] if c in out else _r_series(frame[c], digits) for c in columns}


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: int) -> float:
    """`scipy.stats.t.ppf(q, df)` as a float, computed once per (q, df)."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {"template": TEMPLATE, "title": {"text": title}, "height": height, **extra}


def _panel_title(text: str, x: float, y: float) -> dict[str, Any]:
    """A subplot title as make_subplots draws it: centred just above the panel."""
    return {
        "text": text,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14},
    }


def _hband(y0: float, y1: float, color: str, xname: str = "x", yname: str = "y") -> dict[str, Any]:
    """A full-width band; shapes on log axes take data values (plotly converts them)."""
    return {
        "type": "rect",
        "xref": f"{xname} domain",
        "x0": 0,
        "x1": 1,
        "yref": yname,
        "y0": y0,
        "y1": y1,
        "fillcolor": color,
        "line": {"width": 0},
        "layer": "below",
    }


def weekly_diet(diet: pl.DataFrame) -> pl.DataFrame:
    """Mean per logged day, by Monday-starting week; weeks with nothing logged stay null (gaps).

    Unlogged days are missing, not zero: averaging them in would fake a drop in intake.
    """
    schema = diet.schema
    value_cols = [
        c
        for c, dtype in schema.items()
        if (c.endswith("_servings") or c in ("fiber_g", "dii")) and dtype.is_numeric()
    ]
    if diet.is_empty() or not value_cols:
        return pl.DataFrame()
    weekly = (
        diet.lazy()
        .filter(pl.col("logged") & pl.col("day").is_not_null())
        .with_columns(week=pl.col("day").dt.truncate("1w"))
        .group_by("week")
        .agg([pl.col(c).mean().round(2) for c in value_cols] + [pl.len().alias("days_logged")])
        .collect()
    )
    if weekly.is_empty():
        return pl.DataFrame()
    start, end = weekly["week"].min(), weekly["week"].max()
    if not isinstance(start, date) or not isinstance(end, date):
        return pl.DataFrame()
    all_weeks = pl.DataFrame({"week": pl.date_range(start, end, "1w", eager=True)})
    return all_weeks.lazy().join(weekly.lazy(), on="week", how="left").sort("week").collect()


def _diet_series(weekly: pl.DataFrame) -> list[tuple[str, bool, bool]]:
    """Headline series always (when present), other categories with any intake as legend-only."""
    present = [
        c for c, _, _ in HEADLINE_DIET if c in weekly.columns and weekly[c].drop_nulls().len()
    ]
    series = [(c, vis, sec) for c, vis, sec in HEADLINE_DIET if c in present]
    for cat in CATEGORIES:
        col = f"{cat}_servings"
        if col in weekly.columns and col not in present:
            top = weekly[col].max()
            if is_num(top) and top > 0:
                series.append((col, False, False))
    return series


# Day numbers (days since 1970-01-01, a Thursday) to dates and Monday-starting weeks.
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CATEGORY_COLUMNS = [f"{c}_servings" for c in CATEGORIES]


def _iso_days(first: int, count: int, step: int = 1) -> list[str]:
    """`date.isoformat()` of `count` days `step` apart from day number `first`."""
    days = np.arange(first, first + count * step, step)
    return days.astype("datetime64[D]").astype(str).tolist()  # type: ignore[no-any-return]


def _week_texts(start: date, n_weeks: int) -> list[str]:
    """ISO text of `n_weeks` weeks from `start` (a datetime keeps its time, as isoformat does)."""
    if type(start) is date:
        return _iso_days(start.toordinal() - _EPOCH_ORDINAL, n_weeks, 7)
    return [(start + timedelta(weeks=k)).isoformat() for k in range(n_weeks)]


def _monday(day_numbers: np.ndarray) -> np.ndarray:
    """The Monday on or before each day, as day numbers (`dt.truncate("1w")` of a date)."""
    return day_numbers - (day_numbers + 3) % 7


def _value_columns(diet: pl.DataFrame) -> list[str]:
    """The columns `weekly_diet` averages, in frame order."""
    return [
        c
        for c, dtype in zip(diet.columns, diet.dtypes, strict=True)
        if (c.endswith("_servings") or c in ("fiber_g", "dii")) and dtype.is_numeric()
    ]


def _date_numbers(series: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """A Date column as (day numbers, mask of non-null days); None for other types."""
    if not isinstance(series.dtype, pl.Date):
        return None
    raw = series.to_numpy().astype("datetime64[D]")
    has_day = ~np.isnat(raw) if series.null_count() else np.ones(raw.size, dtype=bool)
    return raw.astype(np.int64), has_day


def _logged_mask(diet: pl.DataFrame) -> np.ndarray:
    """The rows `filter(pl.col("logged"))` keeps, as a boolean array."""
    logged = diet.get_column("logged")
    if isinstance(logged.dtype, pl.Boolean):
        return (logged.fill_null(False) if logged.null_count() else logged).to_numpy().astype(bool)
    # Other types: whatever Polars' filter makes of them (it refuses most).
    kept = diet.select(pl.int_range(pl.len()).alias("_row"), "logged").filter(pl.col("logged"))
    mask = np.zeros(diet.height, dtype=bool)
    mask[kept.get_column("_row").to_numpy()] = True
    return mask


def _float_matrix(
    diet: pl.DataFrame, columns: list[str], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The given rows of Float64 and integer columns as float64 (null as NaN) and a null mask;
    None for other types, or integers too large to stay exact (Polars averages integers
    exactly; under 2**50 leaves room for sums). NaN values stay NaN and are not null."""
    values = np.empty((rows.size, len(columns)), order="F")
    nulls = np.zeros(values.shape, dtype=bool, order="F")
    for i, col in enumerate(columns):
        series = diet.get_column(col)
        integer = not isinstance(series.dtype, pl.Float64)
        if integer and not series.dtype.is_integer():
            return None
        full = series.to_numpy()
        values[:, i] = full[rows]
        if integer and bool((np.abs(values[:, i]) >= 2.0**50).any()):
            return None
        n_null = series.null_count()
        if n_null:
            if np.count_nonzero(np.isnan(full)) == n_null:
                nulls[:, i] = np.isnan(values[:, i])
            else:  # NaN values besides the nulls: ask Polars which is which
                nulls[:, i] = series.is_null().to_numpy()[rows]
    return values, nulls


def _weekly_means(
    days: np.ndarray, values: np.ndarray, nulls: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """`weekly_diet`'s aggregate of the logged rows: (first Monday, days logged per week,
    rounded weekly means with NaN for null, count of non-null values per week and column).

    Polars' group mean is a Kahan-compensated sum in row order, skipping nulls, divided by the
    count; the compensation restarts when the running sum is not finite. Rows are laid out as
    (position in week, week, column) so that each step of the sum is one array operation, with
    the same IEEE operations in the same order. `round(2)` is half-to-even on value * 100
    (a value too large to scale stays as it is).
    """
    weeks = _monday(days)
    first = int(weeks.min())
    k = (weeks - first) // 7
    n_weeks = int(k.max()) + 1
    per_week = np.bincount(k, minlength=n_weeks)
    order = np.argsort(k, kind="stable")
    ks = k[order]
    position = np.arange(ks.size) - (np.cumsum(per_week) - per_week)[ks]
    x = np.zeros((int(position.max()) + 1, n_weeks, values.shape[1]))
    valid = np.zeros(x.shape, dtype=bool)
    x[position, ks] = values[order]
    valid[position, ks] = ~nulls[order]
    with np.errstate(all="ignore"):
        # Values under 1e300 cannot sum past the largest double: no need to check each step.
        bounded = bool((np.abs(values) < 1e300)[~nulls].all())
        # The first value of a week leaves no compensation (0 + x, then (x - 0) - x).
        total = np.where(valid[0], x[0] + 0.0, 0.0)
        comp = np.zeros(total.shape)
        for step, ok in zip(x[1:], valid[1:], strict=True):
            y = step - comp
            t = total + y
            c = (t - total) - y
            if not bounded:
                c = np.where(np.isfinite(t), c, 0.0)
            comp = np.where(ok, c, comp)
            total = np.where(ok, t, total)
        counts = valid.sum(axis=0)
        means = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
        # Polars keeps a value whose scaled form overflows (rounding would give infinity).
        scaled = means * 100.0
        rounded = np.where(np.isfinite(scaled), np.rint(scaled) / 100.0, means)
    return first, per_week, rounded, counts


class _DietPanel(NamedTuple):
    """What `crp_timeline` draws of the weekly diet."""

    series: list[tuple[str, bool, bool]]  # (column, visible by default, on the fibre axis)
    with_dii: bool
    weeks: list[str]  # Mondays, ISO
    days: list[int]  # days logged per week (0 for a gap)
    rounded: dict[str, list[Any]]  # `_r` of each series' weekly means (and "dii")


_NO_PANEL = _DietPanel([], False, [], [], {})


def _diet_panel_polars(diet: pl.DataFrame) -> _DietPanel:
    """The panel from `weekly_diet`'s frame: column types the numpy path does not reproduce."""
    weekly = weekly_diet(diet)
    series = _diet_series(weekly) if not weekly.is_empty() else []
    if not series:
        return _NO_PANEL
    with_dii = "dii" in weekly.columns and weekly["dii"].drop_nulls().len() > 0
    return _DietPanel(
        series,
        with_dii,
        [d.isoformat() for d in weekly["week"].to_list()],
        [d if d is not None else 0 for d in weekly["days_logged"].to_list()],
        _r_columns(weekly, [c for c, _, _ in series] + (["dii"] if with_dii else [])),
    )


def _diet_panel(diet: pl.DataFrame) -> _DietPanel:
    """`weekly_diet`, `_diet_series` and the rounding of the drawn columns, in numpy.

    A page is re-rendered each night for one new diet day; Polars' per-query overhead on these
    few hundred rows cost more than the work. Float64 and integer columns are reproduced
    exactly; other types (Float32, Decimal, a non-Date day) take `weekly_diet` itself.
    """
    value_cols = _value_columns(diet)
    if diet.is_empty() or not value_cols:
        return _NO_PANEL
    days = _date_numbers(diet.get_column("day"))
    if days is None or not isinstance(diet.get_column("logged").dtype, pl.Boolean):
        return _diet_panel_polars(diet)
    day_numbers, has_day = days
    rows = np.flatnonzero(_logged_mask(diet) & has_day)
    matrix = _float_matrix(diet, value_cols, rows)
    if matrix is None:
        return _diet_panel_polars(diet)
    if not rows.size:
        return _NO_PANEL
    first, per_week, means, counts = _weekly_means(day_numbers[rows], *matrix)
    at = {c: i for i, c in enumerate(value_cols)}
    # As `_diet_series`: a headline column with any non-null week (NaN counts), another category
    # when its largest week (NaN skipped, as Polars' max does) is a finite number above 0.
    has_value: list[bool] = (np.count_nonzero(counts, axis=0) > 0).tolist()
    tops: list[float] = np.fmax.reduce(means, axis=0).tolist()
    present = [c for c, _, _ in HEADLINE_DIET if c in at and has_value[at[c]]]
    series = [(c, vis, sec) for c, vis, sec in HEADLINE_DIET if c in present]
    series += [
        (col, False, False)
        for col in _CATEGORY_COLUMNS
        if col in at and col not in present and is_num(tops[at[col]]) and tops[at[col]] > 0
    ]
    if not series:
        return _NO_PANEL
    with_dii = "dii" in at and has_value[at["dii"]]
    drawn = [c for c, _, _ in series] + (["dii"] if with_dii else [])
    n_weeks = len(per_week)
    flat = _r_many(means[:, [at[c] for c in drawn]].T)
    return _DietPanel(
        series,
        with_dii,
        _iso_days(first, n_weeks, 7),
        per_week.tolist(),
        {c: flat[i * n_weeks : (i + 1) * n_weeks] for i, c in enumerate(drawn)},
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


def _draw_rows(draws: pl.DataFrame) -> list[dict[str, Any]]:
    """Draw rows with a plottable date string and a positive value (log axis)."""
    if draws.is_empty():
        return []
    fast = _draw_rows_python(draws)
    return fast if fast is not None else _draw_rows_polars(draws)


def _draw_rows_polars(draws: pl.DataFrame) -> list[dict[str, Any]]:
    """`_draw_rows` as one Polars query: the definition the Python path reproduces, and what
    runs when a frame's types are not the ones that path handles."""
    if draws.is_empty():
        return []
    frame = (
        draws.lazy()
        .with_columns(
            x=pl.coalesce(
                pl.col("collected_at").dt.strftime("%Y-%m-%d %H:%M"),
                pl.col("day").dt.strftime("%Y-%m-%d"),
            )
        )
        .filter(pl.col("x").is_not_null() & (pl.col("value") > 0))
        .sort("x")
        .collect()
    )
    return frame.to_dicts()


def _draw_rows_python(draws: pl.DataFrame) -> list[dict[str, Any]] | None:
    """`_draw_rows` from `to_dicts` (a person has a few draws: a query costs more than them).

    None when Polars' own answer could differ: other column types (a time zone changes the
    text), an existing "x" column, or two draws with the same x (Polars' sort is not stable).
    """
    schema = dict(zip(draws.columns, draws.dtypes, strict=True))
    stamp, day, value = schema.get("collected_at"), schema.get("day"), schema.get("value")
    if (
        not isinstance(stamp, pl.Datetime)
        or stamp.time_zone is not None
        or day != pl.Date
        or value is None
        or not (value == pl.Float64 or value.is_integer())
        or "x" in schema
    ):
        return None
    out = []
    for row in draws.to_dicts():
        v = row["value"]
        # Polars orders NaN above every number, so `value > 0` keeps NaN; null never passes.
        if v is None or not (v > 0 or v != v):
            continue
        at, d = row["collected_at"], row["day"]
        if at is not None:
            row["x"] = at.isoformat(" ", "minutes")  # strftime("%Y-%m-%d %H:%M")
        elif d is not None:
            row["x"] = d.isoformat()
        else:
            continue
        out.append(row)
    if len({r["x"] for r in out}) < len(out):
        return None
    out.sort(key=lambda r: r["x"])
    return out


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
    draws: pl.DataFrame,
    diet: pl.DataFrame,
    baseline: float | None,
    title: str,
    dii_params: str = "",
    bands: bool = True,
) -> Fig | None:
    """CRP on a log axis with the hs-CRP risk bands (`bands`: hs-CRP only), weekly diet beneath
    and the weekly DII under that, all on one shared time axis. `dii_params` says how many
    parameters the DII was computed from ("28 of 45 parameters"); the DII panel's title and hover
    show it."""
    rows = _draw_rows(draws)
    panel = _diet_panel(diet)
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
            **_short_span(xs_all),
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
            **_short_span(xs_all),
        }
    return {"data": data, "layout": layout}


def _window_label(w: object) -> str:
    return f"{int(w)} d" if is_num(w) else "all"


def window_key(w: object) -> str:
    """The key of an exposure window in cell ids ("28", or "all" for no window)."""
    return str(int(w)) if is_num(w) else "all"


def _rows(frame: pl.DataFrame, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """`frame.to_dicts()` with only the named columns that exist (fewer Python objects)."""
    return frame.select([c for c in columns if c in frame.columns]).to_dicts()


# The association columns the lag heatmap and the cell scatter read.
_HEATMAP_COLUMNS = (
    "feature",
    "window_days",
    "status",
    "n",
    "effect_pct",
    "ci_low_pct",
    "ci_high_pct",
    "q",
    "note",
)
_CELL_COLUMNS = ("feature", "window_days", "status", "q", "p")


def heatmap_axes(rows: list[dict[str, Any]]) -> tuple[list[str], list[int | None]]:
    """Row (feature) and column (window) order of the lag heatmap, shared with its click data."""
    features = sorted(
        {str(r["feature"]) for r in rows if r.get("feature") is not None}, key=feature_order
    )
    windows = sorted(
        {int(r["window_days"]) if is_num(r.get("window_days")) else None for r in rows},
        key=lambda w: (w is None, w or 0),
    )
    return features, windows


def lag_heatmap(assoc: pl.DataFrame, title: str) -> Fig | None:
    """Features x exposure windows, colour = effect %, '*' and an outline where significant.

    Clicking a cell is handled by the page (see `CELL_SCRIPT`): the heatmap only draws.
    """
    if assoc.is_empty():
        return None
    rows = _rows(assoc, _HEATMAP_COLUMNS)
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
    for r in rows:
        if r["feature"] is None:
            continue
        i = zi[str(r["feature"])]
        j = wi[int(r["window_days"]) if is_num(r["window_days"]) else None]
        status = r.get("status") or "unknown"
        n = r.get("n")
        n_txt = f"n = {n}" if is_num(n) else "n unknown"
        effect = r.get("effect_pct")
        n_cell = f"<br><span style='font-size:9px'>n={int(n)}</span>" if is_num(n) else ""
        if status == "insufficient_data" or not is_num(effect):
            text[i][j] = f"–{n_cell}"
            hover[i][j] = f"{ylabels[i]}, {xlabels[j]}<br>not enough data ({n_txt})"
            if r.get("note"):
                hover[i][j] += f"<br>{pesc(r['note'])}"
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


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _coverage_days(diet: pl.DataFrame) -> tuple[date, date, list[str], dict[int, Any]] | None:
    """(first day, last day, the ISO text of every day from first to last, the logged days'
    entries by day offset from first); None without a day. A repeated logged day shows its
    last row's entries."""
    day, logged, entries = (diet.get_column(c) for c in ("day", "logged", "entries"))
    numbers = _date_numbers(day)
    if numbers is not None and isinstance(logged.dtype, pl.Boolean):
        # In numpy: any Polars query on the day rows costs more than this.
        values, has_day = numbers
        if not has_day.any():
            return None
        lo, hi = int(values[has_day].min()), int(values[has_day].max())
        rows = np.flatnonzero(_logged_mask(diet) & has_day)
        counts = entries.to_list()
        by_offset = dict(
            zip((values[rows] - lo).tolist(), [counts[i] for i in rows.tolist()], strict=True)
        )
        texts = _iso_days(lo, hi - lo + 1)
        first = date.fromordinal(_EPOCH_ORDINAL + lo)
        return first, date.fromordinal(_EPOCH_ORDINAL + hi), texts, by_offset
    # Other types: the Python values, compared as Polars' min and max would.
    all_days = day.to_list()
    present = [d for d in all_days if d is not None]
    if not present:
        return None
    lo_day, hi_day = min(present), max(present)
    if not isinstance(lo_day, date) or not isinstance(hi_day, date):
        return None
    by_day = {
        d: e
        for d, e, ok in zip(all_days, entries.to_list(), logged.to_list(), strict=True)
        if ok and d is not None
    }
    texts, by_offset = [], {}
    for i in range((hi_day - lo_day).days + 1):
        d = lo_day + timedelta(days=i)
        texts.append(d.isoformat())
        if d in by_day:
            by_offset[i] = by_day[d]
    return lo_day, hi_day, texts, by_offset


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
    parts = {str(k[0]): v for k, v in draws.partition_by("person_id", as_dict=True).items()}
    per_person = {pid: _draw_rows(parts.get(pid, pl.DataFrame())) for pid in person_ids}
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


# --------------------------------------------------------------------------------------------
# Lag-heatmap cell -> scatter (drawn in the browser from one compact JSON blob per page)

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
    assoc: pl.DataFrame,
    windows: pl.DataFrame,
    draws: pl.DataFrame,
    marker: str,
    marker_name: str,
    unit: str,
    titles: dict[str, str],
    target: str,
) -> dict[str, Any] | None:
    """What `CELL_SCRIPT` needs to draw any cell of one person's lag heatmap for one marker.

    `windows` are the person's exposure windows, `draws` their marker draws; only complete
    windows of chronic draws (excluded_reason null) are used, as in the association step. Each
    draw's date and value are stored once; a cell stores its feature values aligned to the draws
    (null where the window was not complete), its fit and its title. `titles` maps a cell key to
    its title as Plotly text (the caller escapes user text with `pesc`; <b> and <br> may be
    used). Returns None when no cell has a row in `assoc` or no draw has a complete window.
    """
    rows = _rows(assoc, _CELL_COLUMNS)
    features, wins = heatmap_axes(rows)
    if not features:
        return None
    cols = [window_key(w) for w in wins]
    keys = {cell_key(f, w) for f in features for w in wins}
    # Each frame below is one query (a chain of eager calls would collect at every step).
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
        .collect()
    )
    points = pl.DataFrame(
        schema={"key": pl.String, "collected_at": pl.Datetime("us"), "x": pl.Float64}
    )
    if windows.height and resp.height:
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
            .join(resp.lazy(), on="collected_at", how="inner")
            .collect()
        )
    if points.is_empty():
        return None
    # The draws with a complete window, in time order (physical values: microseconds).
    stamps = points["collected_at"].to_physical().to_numpy()
    used = np.unique(stamps)
    draw_rows = (
        resp.lazy()
        .filter(pl.col("collected_at").is_in(points["collected_at"].implode()))
        .sort("collected_at")
        .collect()
    )
    fits = _cell_fits(points)
    cells: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        cells[key] = {"title": titles.get(key) or pesc(key)}
    # One pass over all points: each cell's values aligned to the draws (a later duplicate of a
    # draw within a cell wins, as row order is kept).
    slots = np.searchsorted(used, stamps).tolist()
    n_used = len(used)
    per_cell: dict[str, list[float | None]] = {}
    for key, slot, x in zip(points["key"].to_list(), slots, _r_series(points["x"]), strict=True):
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
        "dates": [d.strftime("%Y-%m-%d") for d in draw_rows["collected_at"].to_list()],
        "y": _r_series(draw_rows["y"]),
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


# --------------------------------------------------------------------------------------------
# Calendar of one chosen food category


CALENDAR_UNITS = {"fiber_g": "g", "dii": "score"}


# Fermented first, then ultra-processed, fibre, the other categories and the DII.
_CALENDAR_ORDER = ["fermented_servings", "ultra_processed_servings", "fiber_g"]
_CALENDAR_ORDER += [f"{c}_servings" for c in CATEGORIES if f"{c}_servings" not in _CALENDAR_ORDER]
_CALENDAR_ORDER.append("dii")


def _as_float64(series: pl.Series) -> np.ndarray:
    """`series.cast(pl.Float64)` as numpy, nulls as NaN."""
    if not isinstance(series.dtype, pl.Float64):
        series = series.cast(pl.Float64)
    return series.to_numpy()


def _calendar_pick(diet: pl.DataFrame, logged: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The calendar's columns, and their values as float64 (every row, null as NaN).

    A column is shown when its `logged` rows have a value (nulls and NaN dropped) and, but for
    the DII, a finite maximum above 0. A Decimal maximum is not a number to `is_num`, so a
    Decimal column other than the DII is never shown (as with the Series code this replaced).
    """
    schema = dict(zip(diet.columns, diet.dtypes, strict=True))
    wanted = [c for c in _CALENDAR_ORDER if c in schema and schema[c].is_numeric()]
    matrix = np.empty((diet.height, len(wanted)), order="F")
    for i, col in enumerate(wanted):
        matrix[:, i] = _as_float64(diet.get_column(col))
    kept = matrix[logged]
    counts = np.count_nonzero(~np.isnan(kept), axis=0).tolist()
    # Largest value with NaN skipped (NaN only when there is none).
    tops = np.fmax.reduce(kept, axis=0).tolist() if len(kept) else [math.nan] * len(wanted)
    cols, at = [], []
    for i, col in enumerate(wanted):
        if not counts[i]:
            continue
        if col != "dii" and not (
            (schema[col].is_float() or schema[col].is_integer())
            and math.isfinite(tops[i])
            and tops[i] > 0
        ):
            continue
        cols.append(col)
        at.append(i)
    return cols, matrix[:, at]


def _calendar_columns(diet: pl.DataFrame) -> list[str]:
    """Fermented first, then ultra-processed, fibre, the other categories and the DII: those
    with a logged value (nulls and NaN dropped) and, but for the DII, a maximum above 0."""
    return _calendar_pick(diet, _logged_mask(diet))[0]


def category_calendar(diet: pl.DataFrame, title: str, dii_params: str = "") -> Fig | None:
    """Weeks x weekday of one chosen category's daily intake; a dropdown switches category.

    Unlogged days stay blank (missing, not zero). One heatmap trace per category, only the
    first visible; the dropdown (Plotly updatemenus) toggles visibility and the title. The DII's
    label carries `dii_params` ("28 of 45 parameters") when given.
    """
    # In numpy: a Polars query per step cost more than these few hundred rows.
    day = diet.get_column("day")
    numbers = _date_numbers(day)
    day_list: list[Any] = []
    if numbers is not None:
        has_day = numbers[1]
    else:  # not a Date column: Python values, as Polars' min and max give them
        day_list = day.to_list()
        has_day = np.array([d is not None for d in day_list], dtype=bool)
    if not has_day.any():
        return None
    logged = _logged_mask(diet) & has_day
    cols, matrix = _calendar_pick(diet, logged)
    if numbers is not None:
        present = numbers[0][has_day]
        first = date.fromordinal(_EPOCH_ORDINAL + int(present.min()))
        last = date.fromordinal(_EPOCH_ORDINAL + int(present.max()))
    else:
        first = min(d for d in day_list if d is not None)
        last = max(d for d in day_list if d is not None)
    if not cols or not isinstance(first, date) or not isinstance(last, date):
        return None
    start = first - timedelta(days=first.weekday())
    n_weeks = (last - start).days // 7 + 1
    weeks = _week_texts(start, n_weeks)
    # The first logged row of each day (a repeated day keeps its first row) and its offset
    # from `start`.
    logged_rows = np.flatnonzero(logged)
    if numbers is not None:
        unique_days, at = np.unique(numbers[0][logged_rows], return_index=True)
        rows = logged_rows[at]
        offsets = (unique_days - (start.toordinal() - _EPOCH_ORDINAL)).astype(np.intp)
    else:
        first_row: dict[Any, int] = {}
        for i in logged_rows.tolist():
            first_row.setdefault(day_list[i], i)
        rows = np.array(list(first_row.values()), dtype=np.intp)
        offsets = np.array([(d - start).days for d in first_row], dtype=np.intp)
    # Every category's daily values rounded in one go (NaN and null both read as missing) and
    # placed on a (category, weekday, week) grid of Python objects; one day per row, so each
    # value lands in its own cell. Row order does not matter: cells are placed by offset and
    # each scale's top is a maximum or a sorted quantile.
    rounded, rounded_f = _rounded(matrix[rows].T, 2)
    grid = np.full((len(cols), len(WEEKDAYS), n_weeks), None, dtype=object)
    if offsets.size:
        values = np.empty(len(rounded), dtype=object)
        values[:] = rounded
        grid[:, offsets % 7, offsets // 7] = values.reshape(len(cols), offsets.size)
    # Each scale's top: the 95th percentile (lower value) of the rounded days, NaN sorted last.
    by_col = rounded_f.reshape(len(cols), offsets.size)
    n_finite = np.count_nonzero(~np.isnan(by_col), axis=1)
    rank = np.maximum((0.95 * (n_finite - 1)).astype(np.intp), 0)
    tops = np.sort(by_col, axis=1)[np.arange(len(cols)), rank] if offsets.size else []
    data: list[dict[str, Any]] = []
    buttons = []
    labels: list[str] = []
    for idx, col in enumerate(cols):
        z: list[list[float | None]] = grid[idx].tolist()
        if col == "dii":
            vals = rounded[idx * offsets.size : (idx + 1) * offsets.size]
            top = max([abs(v) for v in vals if v is not None] + [1.0])
            scale: dict[str, Any] = {
                "colorscale": [[0, "#2166ac"], [0.5, "#f7f7f7"], [1, "#b2182b"]],
                "zmin": -top,
                "zmax": top,
            }
        else:
            top = _as_rounded(float(tops[idx])) if n_finite[idx] else 1.0
            scale = {
                "colorscale": [[0, "#dde3ea"], [0.2, "#c6dbef"], [0.55, "#6baed6"], [1, "#08306b"]],
                "zmin": 0,
                "zmax": max(top, 1e-9),
            }
        unit = CALENDAR_UNITS.get(col, "servings")
        label = pesc(feature_label(col))
        if col == "dii" and dii_params:
            label = pesc(f"DII (score, {dii_params})")
        labels.append(label)
        data.append(
            {
                "type": "heatmap",
                "x": weeks,
                "y": WEEKDAYS,
                "z": z,
                **scale,
                "xgap": 2,
                "ygap": 2,
                "visible": idx == 0,
                "name": label,
                "colorbar": {"title": {"text": unit}, "thickness": 12, "len": 0.8},
                "hoverongaps": False,
                "hovertemplate": (
                    f"%{{y}}, week of %{{x|%Y-%m-%d}}<br>{label}: %{{z}} {unit}<extra></extra>"
                ),
            }
        )
        buttons.append(
            {
                "label": label,
                "method": "update",
                "args": [
                    {"visible": [k == idx for k in range(len(cols))]},
                    {"title.text": f"{title}: {label}"},
                ],
            }
        )
    layout = _layout(
        f"{title}: {labels[0]}",
        320,
        xaxis={
            "type": "date",
            "showgrid": False,
            "title": {"text": "week starting"},
            **_short_span([weeks[0], weeks[-1]]),
        },
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        updatemenus=[
            {
                "type": "dropdown",
                "buttons": buttons,
                "active": 0,
                "x": 1,
                "xanchor": "right",
                "y": 1.22,
                "yanchor": "top",
                "showactive": True,
            }
        ],
        margin={"t": 90},
    )
    return {"data": data, "layout": layout}
