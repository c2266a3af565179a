"""The index page (`render_index`): one row per person with their latest CRP, category, trend,
coverage, data sufficiency and top findings, then the cohort-wide data quality. Written last, so
it never links to a page that does not exist yet.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports.findings import finding_sentence, sufficiency_short
from pipelines.reports.html import (
    CAVEAT,
    caveat,
    empty,
    esc,
    marker_label,
    page,
    table,
)
from pipelines.reports.inputs import COHORT, DashboardInputs, person_page_name
from pipelines.reports.pages.common import (
    _between_n,
    _category_html,
    _coverage_html,
    _files_section,
    _footer,
    _freshness_table,
    _heading,
    _latest_html,
    _rejected_table,
    _trend_html,
    _unmapped_table,
    _warn_list,
)
from pipelines.reports.summaries import PersonSummary
from pipelines.transforms.food_categories import OVERRIDES_HOWTO


def _sufficiency_cell(s: PersonSummary) -> Markup:
    if not s.sufficiency:
        return Markup('<span class="muted">no chronic draws yet</span>')
    r = s.sufficiency[0]
    return esc(f"{marker_label(r.get('marker'))}: {sufficiency_short(r)}")


def render_index(
    summaries: list[PersonSummary],
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
        Markup(f'<a href="{COHORT}">Cohort view →</a>'),
        meta,
    )
    body = [
        '<div class="notice">Each person\'s CRP is split into acute draws (above 10 mg/L, '
        "usually an infection, excluded) and chronic draws, which are tested against the foods "
        "eaten in the days before. Every number carries its n and 95% CI; results are "
        f"<b>{esc(CAVEAT)}</b>.</div>"
    ]
    if global_warnings:
        body.append(
            f'<div class="notice"><b>Data-quality warnings</b>{_warn_list(global_warnings)}</div>'
        )
    body.append(
        f'<h2>People</h2><p class="lead"><a href="{COHORT}">Open the cohort view</a> for '
        "pooled estimates and everyone's CRP side by side.</p>"
    )
    if not summaries and between_n:
        body.append(
            '<div class="notice">Nobody here is followed over time, so there are no person '
            f"pages. {between_n:,} people of a cross-sectional cohort (one draw each) are in the "
            f'between-person models: <a href="{COHORT}">open the cohort view</a>.</div>'
        )
    elif not summaries:
        body.append(
            empty(
                "No data yet: drop diet exports and lab results into data/raw/ "
                "and run the pipeline."
            )
        )
    else:
        rows = []
        for s in summaries:
            sig = s.significant
            if sig:
                top = "".join(
                    f"<div>{esc(finding_sentence(r, s.dii_params))} {caveat()}</div>"
                    for r in sig[:3]
                )
                if len(sig) > 3:
                    top += f'<div class="muted">+{len(sig) - 3} more</div>'
            elif s.n_findings:
                top = (
                    '<span class="muted">no finding passes the false-discovery check yet '
                    f"({s.n_findings} pairs tested)</span>"
                )
            else:
                top = '<span class="muted">no associations tested yet</span>'
            rows.append(
                [
                    Markup(
                        f'<a href="{esc(person_page_name(s.person_id))}">{esc(s.person_id)}</a>'
                    ),
                    _latest_html(s),
                    _category_html(s),
                    _trend_html(s),
                    _coverage_html(s),
                    _sufficiency_cell(s),
                    Markup(top),  # built from escaped sentences above
                    _warn_list(s.warnings),
                ]
            )
        body.append(
            table(
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
        )
        body.append(
            '<p class="muted">hs-CRP cardiovascular-risk category (AHA/CDC): below 1 mg/L low, '
            "1-3 average, above 3 high. Acute draws (above 10 mg/L) are not categorised.</p>"
        )
    body.append('<h2 id="quality">Data quality</h2>')
    body.append("<h3>Source freshness</h3>")
    body.append(_freshness_table(sources or [], "Latest day of data (anyone)"))
    body.append(_files_section(d))
    body.append("<h3>Rejected rows by reason</h3>")
    body.append(_rejected_table(d))
    body.append("<h3>Foods without a gut-food category</h3>")
    unm = d.unmapped_foods
    if unm.height and unm["person_id"].drop_nulls().len():
        # Per-person shares do not add up across people: recompute against everyone's energy.
        total = d.diet_daily["energy_kcal"].sum() if d.diet_daily.height else 0.0
        unm = unm.group_by("food").agg(pl.col("entries").sum(), pl.col("energy_kcal").sum())
        unm = unm.with_columns(
            energy_share=pl.col("energy_kcal") / total if total else pl.lit(None, pl.Float64)
        )
    body.append(_unmapped_table(unm))
    if unm.height:
        body.append(f'<p class="muted">{esc(OVERRIDES_HOWTO)}</p>')
    # Every piece of the body escapes its own text.
    return page("gutsignal dashboards", heading, Markup("".join(body)), _footer(d))
