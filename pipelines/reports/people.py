"""The tables split by person, once for everyone (filtering per person would be quadratic), and the
per-person summaries built from the slices (`build_summaries`). The split tables are what the
page workers map (see `workers`); a person's slices are `_PersonFrames`, in `_summarise`'s
argument order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import polars as pl

from pipelines.reports.figures.cell_scatter import cell_fits, cell_points, initial_cells
from pipelines.reports.figures.diet import weekly_diet
from pipelines.reports.figures.outcomes import outcome_points
from pipelines.reports.figures.timeline import draw_points
from pipelines.reports.inputs import (
    EVERYONE,
    POOLED_COLUMNS,
    SCHEMAS,
    DashboardInputs,
    Renders,
    _page_diet_columns,
    _person_ids,
    normalise,
)
from pipelines.reports.sources import _stale_sources, person_sources, run_time
from pipelines.reports.summaries import (
    PersonSummary,
    _crp_draws,
    _summarise,
    dii_params_ranges,
)

# One person's share of every frame, in `_summarise`'s argument order.
_PersonFrames = tuple[
    str,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    list[dict[str, Any]] | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
    pl.DataFrame | None,
]


@dataclass(frozen=True)
class _Split:
    """A table sorted by person, and each person's rows in it (first row, number of rows)."""

    df: pl.DataFrame
    rows: dict[str, tuple[int, int]]


def _split(df: pl.DataFrame) -> _Split:
    """Split by person once (filtering per person would be quadratic for big cohorts).

    Rows without a person are dropped; each person's rows keep their order. The frames come
    sorted by person, so a person's rows are a run of one id (partition_by ran one query per
    person to name its part).
    """
    df = df.filter(pl.col("person_id").is_not_null())
    if not df.is_empty() and not df["person_id"].is_sorted():
        df = df.sort("person_id", maintain_order=True)
    rows = {}
    start = 0
    if not df.is_empty():
        for length, pid in df.select(pl.col("person_id").rle()).unnest("person_id").iter_rows():
            rows[str(pid)] = (start, length)
            start += length
    return _Split(df, rows)


# Model details of a finding that no person page shows (it shows the effect, CI, p and q, n, what
# the model adjusted for and the crude effect). Left out, they are not copied to the page workers
# or turned into dicts for every finding, and a change in them alone renders no page.
_UNSHOWN_FINDING_COLUMNS = [
    "n_persons",
    "sd_feature",
    "beta",
    "se",
    "covariates",
    "crude_ci_low_pct",
    "crude_ci_high_pct",
    "crude_p",
    "explained_by",
    "collinearity_vif",
    "primary_window_days",
]


def _complete(windows: pl.DataFrame) -> pl.DataFrame:
    """Only complete windows are behind the lag-heatmap cells."""
    return windows.filter(pl.col("complete").fill_null(False))


# The person-split tables, in `_summarise`'s argument order (its `freshness` goes between
# "sufficiency" and "crp"); "crp" is derived from "draws".
def _page_tables(d: DashboardInputs) -> dict[str, pl.DataFrame]:
    """Every table a person page is built from, before the split by person: a person's page
    shows their rows of these (and their sources' freshness), nothing else of anyone's."""
    diet = d.diet_daily.select(_page_diet_columns(d.diet_daily.columns))
    return {
        "persons": d.persons,
        "diet": diet,
        # Shown on the page and quoted by the findings in its section file.
        "dii_params": dii_params_ranges(diet),
        "draws": d.marker_draws,
        "trends": d.marker_trends,
        # Partially pooled estimates move with everyone's data: on a person's page they would
        # rewrite every page whenever anyone logs a day. The cohort page shows them instead.
        "findings": d.associations.filter(pl.col("scope") == "person").drop(
            [*POOLED_COLUMNS, *_UNSHOWN_FINDING_COLUMNS], strict=False
        ),
        "unmapped": d.unmapped_foods,
        "windows": _complete(d.exposure_windows),
        "sufficiency": d.data_sufficiency,
        # Everyone's CRP draws in time order at once, not a query per person.
        "crp": _crp_draws(d.marker_draws, "person_id"),
        # Daily outcomes: the readings (plotted as `outcome_points`) and their tests.
        "outcomes": d.biometrics.select("person_id", "day", "metric", "scale", "unit", "value"),
        "outcome_effects": d.daily_effects.select(list(SCHEMAS["daily_effects"])),
    }


def _split_tables(
    d: DashboardInputs,
    renders: Renders = EVERYONE,
    tables: dict[str, pl.DataFrame] | None = None,
) -> dict[str, _Split]:
    """The page tables (`tables`, default `_page_tables(d)`: pass one group of people's rows to
    split that group) split by person, with what the pages draw of them worked out at once for
    everyone whose page is rendered (`renders.pages`; None: everyone): the weekly diet, the CRP
    draws the timeline plots and the daily outcomes; and for everyone whose section file is
    rendered (`renders.sections`), the exposure windows as the points and fits behind each
    lag-heatmap cell, and the cell each scatter shows first. The others need only their summary
    (on a night when everyone logged a day and nobody had a draw, no section's figure data)."""
    tables = dict(_page_tables(d) if tables is None else tables)
    diet, windows, draws = tables["diet"], tables.pop("windows"), tables["draws"]
    outcomes, crp, findings = tables.pop("outcomes"), tables["crp"], tables["findings"]
    if renders.pages is not None:
        paged = pl.col("person_id").is_in(
            pl.Series(sorted(renders.pages), dtype=pl.String).implode()
        )
        diet, outcomes, crp = diet.filter(paged), outcomes.filter(paged), crp.filter(paged)
    if renders.sections is not None:
        scanned = pl.col("person_id").is_in(
            pl.Series(sorted(renders.sections), dtype=pl.String).implode()
        )
        windows, draws, findings = (
            windows.filter(scanned),
            draws.filter(scanned),
            findings.filter(scanned),
        )
    tables["outcome_points"] = outcome_points(outcomes)
    tables["weekly_diet"] = weekly_diet(diet)
    tables["draw_points"] = draw_points(crp)
    points = cell_points(windows, draws)
    tables["cell_points"] = points
    tables["cell_fits"] = cell_fits(points)
    tables["cell_initial"] = initial_cells(findings, points)
    return {name: _split(df) for name, df in tables.items()}


def page_table_groups(
    d: DashboardInputs, ids: list[str], size: int, first: int
) -> Iterator[tuple[list[str], dict[str, pl.DataFrame]]]:
    """`ids` in groups of `size` people, the first of `first` (at most `size`), each with its
    people's rows of the page tables: the dashboards work out, share and render one group while
    the workers render the one before, and hold one group's figure data at a time, not
    everyone's. With `d.people` each group's rows are read when its turn comes (the dashboards
    step reads them from the warehouse), so only one group's tables are in memory at a time."""
    tables = _page_tables(d) if d.people is None else {}
    starts = [0, *range(min(first, size), len(ids), size)] if ids else []
    for start, end in pairwise([*starts, len(ids)]):
        group = ids[start:end]
        if d.people is not None:
            yield group, _page_tables(normalise(d.people.read(group)))
        elif len(group) == len(ids):
            yield group, tables
        else:
            mine = pl.col("person_id").is_in(pl.Series(group, dtype=pl.String).implode())
            yield group, {name: df.filter(mine) for name, df in tables.items()}


def with_section_windows(
    d: DashboardInputs, group: list[str], tables: dict[str, pl.DataFrame], renders: Renders
) -> dict[str, pl.DataFrame]:
    """A group's page tables (of `page_table_groups`) with the windows of the people whose
    section files are rendered (`renders.sections`; None: the whole group's). With `d.people`
    the group's tables came without windows: they are read now, for those people only (on a
    night with no new draw or finding, nobody's)."""
    if d.people is None:
        return tables
    ids = group if renders.sections is None else [p for p in group if p in renders.sections]
    if not ids:
        return tables
    read = DashboardInputs(exposure_windows=d.people.windows(ids))
    return {**tables, "windows": _complete(normalise(read).exposure_windows)}


@dataclass(frozen=True)
class _PersonRows:
    """Where a person's frames are in the split tables, and what is theirs besides: small
    enough to send to a page worker, which slices the tables it has mapped (`_mapped_table`)."""

    person_id: str
    rows: dict[str, tuple[int, int]]
    sources: list[dict[str, Any]] | None


def _person_rows(
    splits: dict[str, _Split], ids: list[str], sources: dict[str, list[dict[str, Any]]]
) -> list[_PersonRows]:
    return [
        _PersonRows(
            pid,
            {name: split.rows[pid] for name, split in splits.items() if pid in split.rows},
            sources.get(pid),
        )
        for pid in ids
    ]


def _frames(person: _PersonRows, tables: dict[str, pl.DataFrame]) -> _PersonFrames:
    """A person's frames, sliced from the split tables (in memory, or mapped in a worker)."""

    def part(name: str) -> pl.DataFrame | None:
        at = person.rows.get(name)
        return None if at is None else tables[name].slice(*at)

    return (
        person.person_id,
        part("persons"),
        part("diet"),
        part("weekly_diet"),
        part("draws"),
        part("trends"),
        part("findings"),
        part("unmapped"),
        part("cell_points"),
        part("cell_fits"),
        part("cell_initial"),
        part("sufficiency"),
        person.sources,
        part("outcome_points"),
        part("outcome_effects"),
        part("draw_points"),
        part("dii_params"),
        part("crp"),
    )


def _person_frames(d: DashboardInputs, now: datetime, ids: list[str]) -> list[_PersonFrames]:
    splits = _split_tables(d)
    tables = {name: split.df for name, split in splits.items()}
    return [_frames(p, tables) for p in _person_rows(splits, ids, person_sources(d, now))]


def _summary(frames: _PersonFrames, stale_everywhere: frozenset[str]) -> PersonSummary:
    s = _summarise(*frames)
    # A whole stale source is a pipeline-wide warning; here only what is this person's own:
    # the source is current, but nothing new came in for them.
    s.warnings.extend(
        f"source {src['source']} has no recent data for this person: " + "; ".join(src["reasons"])
        for src in s.sources
        if src["stale"] and src["source"] not in stale_everywhere
    )
    return s


def build_summaries(d: DashboardInputs, now: datetime | None = None) -> list[PersonSummary]:
    """Per-person summaries from normalised inputs (see `normalise`)."""
    now = now or run_time(d.run_info)
    stale_everywhere = _stale_sources(d, now)
    return [_summary(frames, stale_everywhere) for frames in _person_frames(d, now, _person_ids(d))]
