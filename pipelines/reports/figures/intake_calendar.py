"""The daily-intake calendar of a person page (`category_calendar`): one food group (or fibre, or
the DII) day by day over logged days, switched with Plotly's own dropdown.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.figures.base import Fig, _layout, _r_array
from pipelines.reports.figures.diet import _EPOCH_ORDINAL, _date_numbers, _logged_mask, _week_texts
from pipelines.reports.figures.logging_coverage import WEEKDAYS
from pipelines.reports.figures.timeline import _short_span
from pipelines.reports.html import (
    feature_label,
    pesc,
)
from pipelines.schema import CATEGORIES

CALENDAR_UNITS = {"fiber_g": "g", "dii": "score"}


# Fermented first, then ultra-processed, fibre, the other categories and the DII.
_CALENDAR_ORDER = ["fermented_servings", "ultra_processed_servings", "fiber_g"]
_CALENDAR_ORDER += [f"{c}_servings" for c in CATEGORIES if f"{c}_servings" not in _CALENDAR_ORDER]
_CALENDAR_ORDER.append("dii")


def _calendar_pick(diet: pl.DataFrame, logged: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The calendar's columns, and their values as float64 (every row, null as NaN).

    A column is shown when its `logged` rows have a value (nulls and NaN dropped) and, but for
    the DII, a finite maximum above 0. A Decimal maximum is not a number to `is_num`, so a
    Decimal column other than the DII is never shown.
    """
    schema = dict(zip(diet.columns, diet.dtypes, strict=True))
    wanted = [c for c in _CALENDAR_ORDER if c in schema and schema[c].is_numeric()]
    matrix = np.empty((diet.height, len(wanted)), order="F")
    for i, col in enumerate(wanted):
        values = diet.get_column(col)
        # Most are floats already: a cast is a Polars call even when it changes nothing.
        matrix[:, i] = (values if schema[col] == pl.Float64 else values.cast(pl.Float64)).to_numpy()
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
    day_numbers, has_day = _date_numbers(diet.get_column("day"))
    if not has_day.any():
        return None
    logged = _logged_mask(diet) & has_day
    cols, matrix = _calendar_pick(diet, logged)
    if not cols:
        return None
    days = day_numbers[has_day]
    first = date.fromordinal(_EPOCH_ORDINAL + int(days.min()))
    last = date.fromordinal(_EPOCH_ORDINAL + int(days.max()))
    start = first - timedelta(days=first.weekday())
    n_weeks = (last - start).days // 7 + 1
    weeks = _week_texts(start, n_weeks)
    # The first logged row of each day (a repeated day keeps its first row) and its offset
    # from `start`.
    logged_rows = np.flatnonzero(logged)
    unique_days, at = np.unique(day_numbers[logged_rows], return_index=True)
    rows = logged_rows[at]
    offsets = unique_days - (start.toordinal() - _EPOCH_ORDINAL)
    # Each category's daily values, rounded (NaN and null read as missing), in their cells of a
    # (category, weekday, week) grid of Python objects; one row per day, so each value has its
    # own cell.
    rounded = _r_array(matrix[rows].T, 2)
    grid = np.full((len(cols), len(WEEKDAYS), n_weeks), None, dtype=object)
    grid[:, offsets % 7, offsets // 7] = rounded
    # Each scale tops at the 95th percentile (the lower value) of the category's days, so that one
    # big day does not wash out the rest.
    as_float = rounded.astype(np.float64)  # missing as NaN, which sorts last
    n_present = np.count_nonzero(~np.isnan(as_float), axis=1).tolist()
    # Equal rounded values are the same number (ints for whole ones), so any day at a rank
    # gives its value: every category's days ordered in one call.
    ranked = np.argsort(as_float, axis=1)
    zs: list[list[list[float | None]]] = grid.tolist()
    data: list[dict[str, Any]] = []
    buttons = []
    labels: list[str] = []
    for idx, col in enumerate(cols):
        n = n_present[idx]
        if col == "dii":
            top = max([abs(v) for v in rounded[idx] if v is not None] + [1.0])
            scale: dict[str, Any] = {
                "colorscale": [[0, "#2166ac"], [0.5, "#f7f7f7"], [1, "#b2182b"]],
                "zmin": -top,
                "zmax": top,
            }
        else:
            top = rounded[idx, ranked[idx, int(0.95 * (n - 1))]] if n else 1.0
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
                "z": zs[idx],
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
        visible = [False] * len(cols)
        visible[idx] = True
        buttons.append(
            {
                "label": label,
                "method": "update",
                "args": [
                    {"visible": visible},
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
