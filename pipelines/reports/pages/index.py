"""The index page (`index_parts`): one row per person with their latest CRP, category, trend,
coverage, data sufficiency and top findings, then the cohort-wide data quality. Written last, so
it never links to a page that does not exist yet. The page's structure and prose are in
templates/index.html (and the pieces' `top_findings` macro, one table cell).

The people's rows are rendered and written a part at a time (`ROWS_PER_PART` people): at 10,000
people they are 6.5 MB of HTML, which as one text was held several times over (the table, the
template's output, the page, its bytes), the largest memory of a night with nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports.html import (
    CAVEAT,
    esc,
    page,
    table_around,
    table_rows,
)
from pipelines.reports.inputs import COHORT, DashboardInputs, person_page_name
from pipelines.reports.page_summary import TOP_FINDINGS, PageSummary
from pipelines.reports.pages.common import (
    _between_n,
    _category_html,
    _coverage_html,
    _files_table,
    _footer,
    _freshness_table,
    _heading,
    _latest_html,
    _piece,
    _rejected_table,
    _trend_html,
    _unmapped_table,
    _warn_list,
)
from pipelines.reports.pages.render import render
from pipelines.transforms.food_categories import OVERRIDES_HOWTO


def _sufficiency_cell(s: PageSummary) -> Markup:
    if s.sufficiency_line is None:
        return _piece("muted")("no chronic draws yet")
    return esc(s.sufficiency_line)


_HEADERS = [
    "Person",
    "Latest CRP",
    "hs-CRP category",
    "Chronic trend",
    "Coverage",
    "Enough data?",
    "Top findings",
    "Warnings",
]
# Where the people's rows go in the page's text; no escaped value can hold it.
_ROWS = "<!-- gutsignal: the people's rows -->"
ROWS_PER_PART = 500


def _person_row(s: PageSummary) -> list[Markup]:
    return [
        _piece("person_link")(person_page_name(s.person_id), s.person_id),
        _latest_html(s),
        _category_html(s),
        _trend_html(s),
        _coverage_html(s),
        _sufficiency_cell(s),
        _piece("top_findings")(
            s.top_findings, max(s.n_significant - TOP_FINDINGS, 0), s.n_findings
        ),
        _warn_list(s.warnings),
    ]


def index_parts(
    summaries: list[PageSummary],
    d: DashboardInputs,
    global_warnings: list[str],
    sources: list[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """The index page's text in consecutive parts: the page up to the people's rows, their rows
    `ROWS_PER_PART` people at a time, then the rest."""
    people_rows = Markup(_ROWS) if summaries else None
    before, *after = _page(len(summaries), d, global_warnings, sources, people_rows).split(_ROWS)
    yield before
    for start in range(0, len(summaries) if after else 0, ROWS_PER_PART):
        yield table_rows(_person_row(s) for s in summaries[start : start + ROWS_PER_PART])
    yield from after


def _page(
    n: int,
    d: DashboardInputs,
    global_warnings: list[str],
    sources: list[dict[str, Any]] | None,
    people_rows: Markup | None,
) -> str:
    """The page of `n` people, with `people_rows` as the people table's rows (None: no table)."""
    run_at = d.run_info.get("run_at")
    between_n = _between_n(d)
    meta = esc(
        f"{n} {'person' if n == 1 else 'people'}"
        + (f" followed over time · {between_n:,} in between-person models" if between_n else "")
        + (f" · updated {run_at}" if run_at else "")
    )
    heading = _heading(
        "gutsignal: gut foods and chronic inflammation",
        _piece("crumbs")([(COHORT, "Cohort view →")]),
        meta,
    )
    people_table = None if people_rows is None else table_around(_HEADERS, people_rows)
    unm = d.unmapped_foods
    if unm.height and unm["person_id"].drop_nulls().len():
        # Per-person shares do not add up across people: recompute against everyone's energy.
        # Read as a sum when the diet is read a group of people at a time.
        total = d.energy_kcal_total
        if total is None:
            total = float(d.diet_daily["energy_kcal"].sum()) if d.diet_daily.height else 0.0
        unm = unm.group_by("food").agg(pl.col("entries").sum(), pl.col("energy_kcal").sum())
        unm = unm.with_columns(
            energy_share=pl.col("energy_kcal") / total if total else pl.lit(None, pl.Float64)
        )
    body = render(
        "index.html",
        caveat_text=CAVEAT,
        cohort=COHORT,
        global_warnings=_warn_list(global_warnings) if global_warnings else None,
        people_table=people_table,
        between_n=f"{between_n:,}" if between_n else None,
        freshness=_freshness_table(sources or [], "Latest day of data (anyone)"),
        files=_files_table(d, frozenset(r["source"] for r in sources or [] if r["stale"])),
        rejected=_rejected_table(d),
        unmapped=_unmapped_table(unm),
        overrides_howto=OVERRIDES_HOWTO if unm.height else None,
    )
    return page("gutsignal dashboards", heading, body, _footer(d))
