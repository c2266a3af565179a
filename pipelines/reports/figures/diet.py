"""Diet for the figures: weekly means over logged days (`weekly_diet`, and the numpy twin
`_diet_panel` that the timeline uses, with `_diet_panel_polars` as its slow reference for odd
column types) and the day numbers the calendars share.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from pipelines.reports.figures.base import _r_columns, _r_many
from pipelines.reports.html import is_num
from pipelines.schema import CATEGORIES

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
