"""One person's summary (`PersonSummary`): their headline CRP marker, latest value and category,
counts, diet coverage, DII parameters and warnings, worked out once from their rows of each table
(`_summarise`) and shared by the index and their page. Sits between the per-person split
(`people`) and the page builders (`pages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.figures.cell_scatter import CELL_FITS_SCHEMA, CELL_POINTS_SCHEMA
from pipelines.reports.figures.diet import _EPOCH_ORDINAL, _date_numbers, _logged_mask
from pipelines.reports.figures.outcomes import OUTCOME_POINTS_SCHEMA
from pipelines.reports.findings import _date_text, _sorted_findings
from pipelines.reports.html import is_num
from pipelines.reports.inputs import SCHEMAS
from pipelines.schema import (
    RULE_ENERGY,
    RULE_NOTHING,
)

# hs-CRP and standard CRP are two markers, never pooled (pipelines/transforms/labs.py). A person's
# headline CRP series (cards, timeline, index) is their hs-CRP when they have any, else their
# standard CRP; the other one is listed with the other markers. Only hs-CRP gets a category.
CRP_MARKERS = ("hscrp", "crp")
CATEGORY_MARKER = "hscrp"


def _marker_order(marker: object) -> tuple[int, str]:
    """hs-CRP first, then standard CRP, then the other markers by name."""
    m = str(marker)
    return (CRP_MARKERS.index(m) if m in CRP_MARKERS else len(CRP_MARKERS), m)


# Empty frames for what a person has no rows of. Polars frames are not changed in place here,
# so one of each serves every summary (a new one per field and person cost ~10 µs each, a
# dozen per person on every run).
_NO_ROWS = pl.DataFrame()
_NO_DRAWS = pl.DataFrame(schema=SCHEMAS["marker_draws"])
_NO_DIET = pl.DataFrame(schema=SCHEMAS["diet_daily"])
_NO_FINDINGS = pl.DataFrame(schema=SCHEMAS["associations"])
_NO_CELL_POINTS = pl.DataFrame(schema=CELL_POINTS_SCHEMA)
_NO_CELL_FITS = pl.DataFrame(schema=CELL_FITS_SCHEMA)
_NO_OUTCOME_POINTS = pl.DataFrame(schema=OUTCOME_POINTS_SCHEMA)
_NO_OUTCOME_EFFECTS = pl.DataFrame(schema=SCHEMAS["daily_effects"])


@dataclass
class PersonSummary:
    person_id: str
    sex: str | None = None
    age: float | None = None
    # The headline CRP marker's draws, plus the other CRP marker's acute draws (an infection is
    # shown whichever assay saw it, and starts the washout of both).
    crp: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    headline: str = CATEGORY_MARKER
    all_draws: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    diet: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    weekly: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)  # `figures.weekly_diet`
    # The draws the timeline plots (`figures.draw_points`, from `crp`).
    draw_points: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    trends: list[dict[str, Any]] = field(default_factory=list)
    trend: dict[str, Any] = field(default_factory=dict)
    findings_df: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    n_findings: int = 0
    # The significant findings, in `_sorted_findings` order (the index shows them).
    significant: list[dict[str, Any]] = field(default_factory=list)
    unmapped: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    latest_value: float | None = None
    latest_at: str = ""
    latest_acute: bool = False
    latest_censored: str | None = None
    category: str | None = None
    n_draws: int = 0
    n_chronic: int = 0
    n_acute: int = 0
    days_logged: int = 0
    days_in_range: int = 0
    first_day: date | None = None
    last_day: date | None = None
    longest_gap: int = 0
    unmapped_share: float | None = None
    # Fewest and most DII parameters over the logged days with a DII (None without one).
    dii_params: tuple[int, int] | None = None
    # The points and fits behind the cells of the person's lag heatmaps (`figures.cell_points`).
    cell_points: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    cell_fits: pl.DataFrame = field(default_factory=lambda: _NO_ROWS)
    # Per marker, the cell whose scatter is drawn first (`figures.initial_cells`).
    initial_cells: dict[str, str] = field(default_factory=dict)
    sufficiency: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Daily outcomes (symptoms, wearable signals): the plotted days (`figures.outcome_points`)
    # and the tests of each food against each measure (`daily_effects` rows).
    outcome_points: pl.DataFrame = field(default_factory=lambda: _NO_OUTCOME_POINTS)
    outcome_effects: pl.DataFrame = field(default_factory=lambda: _NO_OUTCOME_EFFECTS)

    @cached_property
    def findings(self) -> list[dict[str, Any]]:
        """Every finding as a dict; worked out when a page section that lists them is built."""
        return self.findings_df.to_dicts()


def _category_of(value: object) -> str | None:
    if not is_num(value):
        return None
    v = float(value)
    return "<1" if v < 1 else ("1-3" if v <= 3 else ">3")


def _summarise(
    pid: str,
    person: pl.DataFrame | None,
    diet: pl.DataFrame | None,
    weekly: pl.DataFrame | None,
    draws: pl.DataFrame | None,
    trends: pl.DataFrame | None,
    findings: pl.DataFrame | None,
    unmapped: pl.DataFrame | None,
    cell_points: pl.DataFrame | None = None,
    cell_fits: pl.DataFrame | None = None,
    cell_initial: pl.DataFrame | None = None,
    sufficiency: pl.DataFrame | None = None,
    freshness: list[dict[str, Any]] | None = None,
    outcome_points: pl.DataFrame | None = None,
    outcome_effects: pl.DataFrame | None = None,
    draw_points: pl.DataFrame | None = None,
    dii_params: pl.DataFrame | None = None,
    crp: pl.DataFrame | None = None,
) -> PersonSummary:
    """One person's summary from their rows of each table. `dii_params` is their row of
    `dii_params_ranges`; `crp` is their CRP draws in time order, when the caller has sorted
    everyone's at once; otherwise they are taken from `draws`."""
    s = PersonSummary(person_id=pid)
    if outcome_points is not None:
        s.outcome_points = outcome_points
    if outcome_effects is not None:
        s.outcome_effects = outcome_effects
    s.cell_points = cell_points if cell_points is not None else _NO_CELL_POINTS
    s.cell_fits = cell_fits if cell_fits is not None else _NO_CELL_FITS
    if cell_initial is not None:
        s.initial_cells = dict(
            zip(cell_initial["marker"].to_list(), cell_initial["key"].to_list(), strict=True)
        )
    s.sufficiency = (
        sorted(sufficiency.to_dicts(), key=lambda r: _marker_order(r.get("marker")))
        if sufficiency is not None
        else []
    )
    s.sources = freshness or []
    if person is not None and not person.is_empty():
        row = person.row(0, named=True)
        s.sex, s.age = row.get("sex"), row.get("age")
    all_draws = draws if draws is not None else _NO_DRAWS
    s.all_draws = all_draws
    s.crp = crp if crp is not None else _crp_draws(all_draws)
    markers = _column(s.crp, "marker")
    if markers and CATEGORY_MARKER not in markers:
        s.headline = "crp"
    s.diet = diet if diet is not None else _NO_DIET
    s.weekly = weekly if weekly is not None else _NO_ROWS
    s.draw_points = draw_points if draw_points is not None else _NO_ROWS
    s.trends = trends.to_dicts() if trends is not None else []
    s.trend = next((t for t in s.trends if t.get("marker") == s.headline), {})
    s.findings_df = findings if findings is not None else _NO_FINDINGS
    s.n_findings = s.findings_df.height
    if s.n_findings and "status" in s.findings_df.columns:
        significant = s.findings_df.get_column("status") == "significant"
        if significant.any():
            # Sorting is stable: sorting the significant rows alone gives their order among all.
            s.significant = _sorted_findings(s.findings_df.filter(significant).to_dicts())
    s.unmapped = unmapped if unmapped is not None else _NO_ROWS

    # Counts and the latest value are the headline marker's (the other CRP's acute draws are in
    # `s.crp` for the timeline only). A person has a few draws: lists over them cost
    # microseconds, where a Polars filter is a query per person (~0.4 ms, paid for everyone
    # on every run, also for people whose page is not rendered).
    mine = [i for i, m in enumerate(markers) if m == s.headline]
    reasons, acute = _column(s.crp, "excluded_reason"), _column(s.crp, "acute")
    s.n_draws = len(mine)
    s.n_chronic = (
        int(s.trend["n_chronic"])
        if is_num(s.trend.get("n_chronic"))
        else sum(reasons[i] is None and not acute[i] for i in mine)
    )
    s.n_acute = sum(bool(acute[i]) or reasons[i] == "acute" for i in mine)
    if is_num(s.trend.get("latest_value")):
        s.latest_value = float(s.trend["latest_value"])
        s.latest_at = _date_text(s.trend.get("latest_at"))
        s.latest_acute = bool(s.trend.get("latest_acute"))
        s.latest_censored = s.trend.get("latest_censored")
    elif mine:
        values = _column(s.crp, "value")
        with_value = [i for i in mine if values[i] is not None]
        if with_value:
            last = with_value[-1]
            s.latest_value = values[last]
            s.latest_at = _date_text(
                _column(s.crp, "collected_at")[last] or _column(s.crp, "day")[last]
            )
            s.latest_acute = bool(acute[last]) or reasons[last] == "acute"
    if s.headline == CATEGORY_MARKER:
        s.category = s.trend.get("category") or _category_of(s.trend.get("baseline"))

    coverage = _diet_coverage(s.diet)
    if coverage is not None:
        s.first_day, s.last_day, s.days_logged, widest = coverage
        s.days_in_range = (s.last_day - s.first_day).days + 1
        if s.days_logged >= 2:
            s.longest_gap = max(0, widest - 1)
    if dii_params is not None and dii_params.height:
        s.dii_params = (int(dii_params["low"][0]), int(dii_params["high"][0]))
    if s.unmapped.height and s.unmapped["energy_share"].drop_nulls().len():
        s.unmapped_share = min(1.0, float(s.unmapped["energy_share"].sum()))

    w = s.warnings
    if s.days_in_range == 0:
        w.append("no diet log yet")
    elif s.days_logged / s.days_in_range < 0.6:
        w.append(
            f"diet logged on {s.days_logged} of {s.days_in_range} days "
            f"({100 * s.days_logged / s.days_in_range:.0f}%): "
            "windows before draws may be too sparse"
        )
    if s.n_draws == 0:
        w.append("no CRP draws yet")
    if s.latest_acute:
        w.append(
            "latest CRP is above 10 mg/L (acute): excluded from the chronic trend; guidelines "
            "repeat the test about 2 weeks after recovery"
        )
    if s.unmapped_share is not None and s.unmapped_share >= 0.05:
        w.append(
            f"{100 * s.unmapped_share:.0f}% of energy comes from foods without a gut-food "
            "category (see the unmapped foods list)"
        )
    return s


def _column(df: pl.DataFrame, name: str) -> list[Any]:
    """A column of a person's few rows as a list (all None when the frame lacks it)."""
    return df.get_column(name).to_list() if name in df.columns else [None] * df.height


DII_PARAMS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "low": pl.Int64,
    "high": pl.Int64,
}


def dii_params_ranges(diet: pl.DataFrame) -> pl.DataFrame:
    """Per person, the fewest and most DII parameters over their logged days that have a DII
    (`low`, `high`; no row without one). Worked out for a group of people at once: a person's
    page shows it and their findings' sentences quote it, so the plan of their section file
    fingerprints it (`page_inputs.person_section_inputs`), not the diet it comes from."""
    if not {"dii", "dii_params"} <= set(diet.columns) or not diet["dii_params"].dtype.is_numeric():
        return pl.DataFrame(schema=DII_PARAMS_SCHEMA)
    counts, dii = pl.col("dii_params").cast(pl.Float64), pl.col("dii").cast(pl.Float64)
    logged = pl.col("logged").cast(pl.Boolean).fill_null(False)
    with_dii = logged & dii.is_not_null() & ~dii.is_nan() & counts.is_not_null() & ~counts.is_nan()
    return (
        diet.filter(with_dii)
        .group_by("person_id", maintain_order=True)
        .agg(low=counts.min().cast(pl.Int64), high=counts.max().cast(pl.Int64))
    )


def _crp_draws(draws: pl.DataFrame, *by: str) -> pl.DataFrame:
    """The headline CRP draws (see `CRP_MARKERS`) and the other CRP marker's acute draws, in time
    order (within each `by` group, e.g. per person, which is also where the headline is chosen)."""
    crp = draws.filter(pl.col("marker").is_in(CRP_MARKERS))
    has_hs = pl.col("marker") == CATEGORY_MARKER
    has_hs = has_hs.any().over(list(by)) if by else has_hs.any()
    headline = pl.when(has_hs).then(pl.lit(CATEGORY_MARKER)).otherwise(pl.lit("crp"))
    return crp.filter((pl.col("marker") == headline) | pl.col("acute").fill_null(False)).sort(
        *by, "collected_at", "day", nulls_last=True, maintain_order=True
    )


def _diet_coverage(diet: pl.DataFrame) -> tuple[date, date, int, int] | None:
    """(first day, last day, days with a log, widest step in days between logged days) of a
    person's diet days; None without a day."""
    day_numbers, has_day = _date_numbers(diet.get_column("day"))
    if not has_day.any():
        return None
    days = day_numbers[has_day]
    on_log = np.unique(days[_logged_mask(diet)[has_day]])
    widest = int(np.diff(on_log).max()) if on_log.size >= 2 else 0
    first, last = (date.fromordinal(_EPOCH_ORDINAL + int(x)) for x in (days.min(), days.max()))
    return first, last, int(on_log.size), widest


def logged_rule_text(diet: pl.DataFrame) -> str:
    """How each day's logged status was decided (diet_daily.logged_rule), with the days logged
    under each rule, so "0 days logged" says why: e.g. "daily total (energy at least 800 kcal):
    0 of 29 days"."""
    if "logged_rule" not in diet.columns or diet.is_empty():
        return "n/a"
    rules = diet.get_column("logged_rule").to_list()
    logged = _logged_mask(diet).tolist()
    counts: dict[str, list[int]] = {}
    for rule, on_log in zip(rules, logged, strict=True):
        if rule is None or rule == RULE_NOTHING:
            continue  # gap days: nothing to decide
        seen = counts.setdefault(rule, [0, 0])
        seen[0] += int(on_log)
        seen[1] += 1
    if not counts:
        return "n/a"
    parts = [f"{rule}: {n} of {total} days" for rule, (n, total) in sorted(counts.items())]
    if any(rule.startswith(RULE_ENERGY) for rule in counts):
        parts.append("a reported day not ticked 'complete' is judged by its energy")
    return "; ".join(parts)


def _logged_median(diet: pl.DataFrame, column: str) -> float | None:
    """The median of a numeric column over the logged days (nulls left out); None if none."""
    logged = _logged_mask(diet)
    values = diet.get_column(column).cast(pl.Float64).to_numpy()[logged]
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None
