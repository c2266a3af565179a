"""Diet for the figures: weekly means over logged days (`weekly_diet`, everyone's at once) and what
the timeline draws of a person's (`_diet_panel`), and the day numbers the calendars share.
"""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from pipelines.reports.figures.base import _r_many
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


_NO_WEEKS = pl.DataFrame(schema={"person_id": pl.String, "week": pl.Date})


def weekly_diet(diet: pl.DataFrame) -> pl.DataFrame:
    """Mean per logged day, by person and Monday-starting week; weeks with nothing logged between
    a person's first and last logged week stay null (gaps). Worked out for everyone at once (a
    query per page cost more than drawing its result).

    Unlogged days are missing, not zero: averaging them in would fake a drop in intake.
    """
    value_cols = [
        c
        for c, dtype in diet.schema.items()
        if (c.endswith("_servings") or c in ("fiber_g", "dii")) and dtype.is_numeric()
    ]
    if diet.is_empty() or not value_cols:
        return _NO_WEEKS
    weekly = (
        diet.lazy()
        .filter(pl.col("logged") & pl.col("day").is_not_null())
        .group_by("person_id", week=pl.col("day").dt.truncate("1w"))
        .agg(pl.col(value_cols).mean().round(2), days_logged=pl.len())
        .sort("person_id", "week")
        .collect()
    )
    if weekly.is_empty():
        return _NO_WEEKS
    return weekly.upsample("week", every="1w", group_by="person_id", maintain_order=True)


def _diet_series(
    weekly: pl.DataFrame, values: dict[str, np.ndarray]
) -> list[tuple[str, bool, bool]]:
    """Headline series always (when present), other categories with any intake as legend-only.

    `values` holds each candidate column of `weekly` as floats (null as NaN, which a maximum
    skips, as Polars' does)."""
    present = [c for c, _, _ in HEADLINE_DIET if c in values and weekly[c].count()]
    series = [(c, vis, sec) for c, vis, sec in HEADLINE_DIET if c in present]
    for cat in CATEGORIES:
        col = f"{cat}_servings"
        if col in values and col not in present:
            top = float(np.fmax.reduce(values[col]))
            if is_num(top) and top > 0:
                series.append((col, False, False))
    return series


# Day numbers (days since 1970-01-01, a Thursday) to dates and Monday-starting weeks. The
# calendars and the person summary work on a person's days in numpy: a Polars query for each
# step cost more than these few hundred rows.
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _iso_days(first: int, count: int, step: int = 1) -> list[str]:
    """`date.isoformat()` of `count` days `step` apart from day number `first`."""
    days = np.arange(first, first + count * step, step)
    return days.astype("datetime64[D]").astype(str).tolist()  # type: ignore[no-any-return]


def _week_texts(start: date, n_weeks: int) -> list[str]:
    """ISO text of `n_weeks` weeks from `start`."""
    return _iso_days(start.toordinal() - _EPOCH_ORDINAL, n_weeks, 7)


def _date_numbers(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Days (a datetime counts as its date) as (day numbers, mask of non-null days)."""
    raw = series.cast(pl.Date).to_numpy().astype("datetime64[D]")
    return raw.astype(np.int64), ~np.isnat(raw)


def _logged_mask(diet: pl.DataFrame) -> np.ndarray:
    """The logged days as a boolean array (a null flag counts as not logged)."""
    logged = diet.get_column("logged")
    if logged.dtype != pl.Boolean:
        logged = logged.cast(pl.Boolean)
    if logged.null_count():
        logged = logged.fill_null(False)
    return logged.to_numpy().astype(bool, copy=False)


class _DietPanel(NamedTuple):
    """What `crp_timeline` draws of the weekly diet."""

    series: list[tuple[str, bool, bool]]  # (column, visible by default, on the fibre axis)
    with_dii: bool
    weeks: list[str]  # Mondays, ISO
    days: list[int]  # days logged per week (0 for a gap)
    rounded: dict[str, list[Any]]  # `_r` of each series' weekly means (and "dii")


_NO_PANEL = _DietPanel([], False, [], [], {})


def _diet_panel(weekly: pl.DataFrame) -> _DietPanel:
    """The series drawn of a person's `weekly_diet` (`_diet_series`) and their rounded means."""
    if weekly.is_empty():
        return _NO_PANEL
    # Every column the panel may draw, read once: a Polars call per column and question (its
    # count, its maximum, its values) cost more than the rest of the panel.
    columns = set(weekly.columns)
    candidates = [c for c, _, _ in HEADLINE_DIET] + [f"{cat}_servings" for cat in CATEGORIES]
    values = {
        c: weekly.get_column(c).to_numpy().astype(np.float64, copy=False)
        for c in [*candidates, "dii"]
        if c in columns
    }
    series = _diet_series(weekly, values)
    if not series:
        return _NO_PANEL
    with_dii = "dii" in values and weekly["dii"].count() > 0
    drawn = [c for c, _, _ in series] + (["dii"] if with_dii else [])
    return _DietPanel(
        series,
        with_dii,
        [d.isoformat() for d in weekly["week"].to_list()],
        # Counts (pl.len), null in the gap weeks. Plain Python and numpy here: a Polars
        # select or fill_null is a query (tens of microseconds) for a few dozen weeks.
        [0 if n is None else n for n in weekly["days_logged"].to_list()],
        # Weekly means are floats (Polars averages integers and decimals to floats).
        dict(
            zip(
                drawn,
                _r_many(np.array([values[c] for c in drawn])),
                strict=True,
            )
        ),
    )
