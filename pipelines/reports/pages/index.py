"""The index page (`render_index`): one row per person with their latest CRP, category, trend,
coverage, data sufficiency and top findings, then the cohort-wide data quality. Written last, so
it never links to a page that does not exist yet. The page's structure and prose are in
templates/index.html (and the pieces' `top_findings` macro, one table cell).
"""

from __future__ import annotations

from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports.html import (
    CAVEAT,
    esc,
    page,
    table,
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


def render_index(
    summaries: list[PageSummary],
    d: DashboardInputs,
    global_warnings: list[str],
    sources: list[dict[str, Any]] | None = None,
) -> str:
    n = len(summaries)
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
    people_table = None
    if summaries:
        top_findings = _piece("top_findings")
        rows = [
            [
                _piece("person_link")(person_page_name(s.person_id), s.person_id),
                _latest_html(s),
                _category_html(s),
                _trend_html(s),
                _coverage_html(s),
                _sufficiency_cell(s),
                top_findings(s.top_findings, max(s.n_significant - TOP_FINDINGS, 0), s.n_findings),
                _warn_list(s.warnings),
            ]
            for s in summaries
        ]
        people_table = table(
            [
                "Person",
                "Latest CRP",
                "hs-CRP category",
                "Chronic trend",
                "Coverage",
                "Enough data?",
                "Top findings",
                "Warnings",
            ],
            rows,
        )
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
