"""A person's page (`render_person_page`): summary cards, the CRP and diet timeline, the daily
symptom and wearable panel on the same dates with its findings per outcome, the slots of the CRP
findings and the lag-window scan (filled by the person's section file, `pages.section`), logging
coverage and data quality. The values are prepared here; the structure and prose are in
templates/person.html.
"""

from __future__ import annotations

from datetime import date, timedelta

from markupsafe import Markup

from pipelines.reports import figures
from pipelines.reports.findings import _date_text, sufficiency_short
from pipelines.reports.html import (
    CAVEAT,
    card,
    dii_params_text,
    empty,
    esc,
    fmt_int,
    fmt_latest,
    fmt_pct,
    fmt_value,
    is_num,
    marker_label,
    marker_unit,
    page,
    table,
)
from pipelines.reports.inputs import COHORT, INDEX, DashboardInputs
from pipelines.reports.outcome_text import OutcomeSection, outcome_sections
from pipelines.reports.pages.common import (
    _category_html,
    _coverage_html,
    _fig,
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
from pipelines.reports.pages.section import section_slots
from pipelines.reports.summaries import (
    CATEGORY_MARKER,
    PersonSummary,
    _logged_median,
    logged_rule_text,
)


def _sufficiency_rows(s: PersonSummary) -> list[dict[str, str]]:
    """Per marker, how many more draws a before/after comparison needs, and on what basis."""
    rows = []
    for r in s.sufficiency:
        basis = (
            f"based on {fmt_int(r.get('n_chronic'))} chronic draws; within-person variation "
            + (
                f"from the {r['sd_source']} (too few draws to use your own yet)"
                if r.get("sd_source") and r.get("sd_source") != "observed"
                else "observed in your own draws"
            )
            + (
                f" (SD of log {marker_label(r.get('marker'))} {r['sd_log']:.2f})"
                if is_num(r.get("sd_log"))
                else ""
            )
        )
        rows.append(
            {
                "marker": marker_label(r.get("marker")),
                "advice": r.get("advice") or sufficiency_short(r),
                "basis": basis,
            }
        )
    return rows


def _summary_cards(s: PersonSummary, logged_rule: str) -> list[Markup]:
    """The cards atop the page; `logged_rule` is `logged_rule_text(s.diet)`."""
    t = s.trend
    baseline = t.get("baseline")
    change = t.get("latest_change_pct")
    if is_num(change):
        real = t.get("change_is_real")
        rcv = ""
        if is_num(t.get("rcv_up_pct")) and is_num(t.get("rcv_down_pct")):
            rcv = (
                f"a real change needs above {fmt_pct(t['rcv_up_pct'])} or below "
                f"{fmt_pct(-abs(float(t['rcv_down_pct'])))}"
            )
        verdict = (
            "larger than day-to-day biological variation"
            if real
            else "within normal day-to-day variation"
            if real is False
            else "cannot judge against biological variation"
        )
        change_html = card(
            "Latest change vs previous",
            esc(fmt_pct(change)),
            esc(verdict + (f"; {rcv}" if rcv else "")),
        )
    else:
        change_html = card(
            "Latest change vs previous",
            _piece("muted")("n/a"),
            esc("needs two chronic draws"),
        )
    return [
        card("Latest CRP", _latest_html(s), _category_html(s)),
        card(
            "Chronic baseline",
            _piece("mg_l")(fmt_value(baseline)) if is_num(baseline) else _piece("muted")("n/a"),
            esc(f"from {s.n_chronic} chronic draws (acute draws excluded)"),
        ),
        card("Chronic trend", _trend_html(s)),
        change_html,
        card(
            "Data coverage",
            _coverage_html(s),
            esc(f"How a day counts as logged: {logged_rule}"),
        ),
        card(
            "Findings",
            esc(f"{len(s.significant)} significant"),
            _piece("pairs_tested")(s.n_findings, CAVEAT),
        ),
        _sufficiency_card(s),
    ]


def _quality_checks(s: PersonSummary, logged_rule: str) -> Markup:
    """The data-quality checks of a person's data, as a table; `logged_rule` is
    `logged_rule_text(s.diet)`."""
    crp = s.crp
    # Rows where each condition holds (null counts as not); in Python, as a person has a few
    # draws and a query per count cost more than the rest of this table.
    reasons = crp.get_column("excluded_reason").to_list()
    below_lod = crp.get_column("below_lod").to_list()
    censored = crp.get_column("censored").to_list()
    counts = {
        "washout": reasons.count("post_acute_washout"),
        "merged": reasons.count("merged_into_visit"),
        "below_lod": sum(bool(b) or c == "<" for b, c in zip(below_lod, censored, strict=True)),
    }
    # (check, value): the check is text, the value escaped HTML.
    rows: list[tuple[str, Markup]] = [
        (
            "Days with a diet log",
            esc(f"{s.days_logged} of {s.days_in_range}" if s.days_in_range else "none"),
        ),
        ("How a day counts as logged", esc(logged_rule)),
        (
            "Diet date range",
            esc(f"{s.first_day} to {s.last_day}" if s.first_day else "none"),
        ),
        (
            "Longest gap without a log",
            esc(f"{s.longest_gap} days" if s.days_logged >= 2 else "n/a"),
        ),
        ("CRP draws", esc(f"{s.n_draws} total: {s.n_chronic} chronic, {s.n_acute} acute")),
        ("Excluded as post-acute washout", esc(counts["washout"])),
        ("Merged into a visit (draws ≤14 days apart averaged)", esc(counts["merged"])),
        ("Below the detection limit", esc(counts["below_lod"])),
    ]
    if "dii_params" in s.diet.columns and s.diet["dii_params"].dtype.is_numeric():
        med = _logged_median(s.diet, "dii_params")
        if med is not None:
            rows.append(("DII parameters available (median per day)", esc(f"{med:.0f} of 45")))
    if s.unmapped_share is not None:
        rows.append(
            (
                "Energy from foods without a category",
                esc(fmt_pct(100 * s.unmapped_share, signed=False)),
            )
        )
    return table(["Check", "Value"], [[esc(check), value] for check, value in rows])


def _other_markers(s: PersonSummary) -> Markup | None:
    """The markers besides the headline CRP, as a table; None when there are none."""
    rows = [t for t in s.trends if t.get("marker") != s.headline]
    if not rows:
        return None
    body = [
        [
            esc(marker_label(t.get("marker"))),
            esc(
                f"{fmt_latest(t.get('latest_value'), t.get('latest_censored'))} "
                f"{marker_unit(t.get('marker'))}"
            ),
            esc(_date_text(t.get("latest_at"))),
            esc(fmt_value(t.get("baseline"))),
            esc(
                f"{fmt_pct(t['slope_pct_per_year'])}/year (95% CI {fmt_pct(t.get('slope_ci_low'))} "
                f"to {fmt_pct(t.get('slope_ci_high'))})"
                if is_num(t.get("slope_pct_per_year"))
                else "not enough draws"
            ),
            esc(fmt_int(t.get("n_draws"))),
            esc(fmt_int(t.get("n_chronic"))),
        ]
        for t in rows
    ]
    return table(
        ["Marker", "Latest", "On", "Baseline", "Trend", "Draws", "Chronic"], body, num_cols=(5, 6)
    )


def _page_span(s: PersonSummary) -> list[str] | None:
    """The time axis' range shared by the CRP timeline and the daily outcomes panel: None
    without daily outcomes (the timeline then fits its own data, as it always has)."""
    if s.outcome_points.is_empty():
        return None
    weeks = s.weekly.get_column("week").to_list() if "week" in s.weekly.columns else []
    return figures.page_span(
        [x for x in s.crp["day"].to_list() if isinstance(x, date)],
        # A week's mean is plotted at its Monday and covers the six days after.
        [w for w in weeks if isinstance(w, date)],
        [w + timedelta(days=6) for w in weeks if isinstance(w, date)],
        s.outcome_points["day"].to_list(),
    )


def _outcomes(s: PersonSummary, span: list[str] | None) -> tuple[Markup, list[OutcomeSection]]:
    """The daily outcomes panel and, per measure, its findings and the question it can answer
    next; empty when the person has neither readings nor tests."""
    sections = outcome_sections(s.outcome_effects.to_dicts())
    fig = figures.outcome_panel(
        s.outcome_points,
        span,
        "Daily symptoms and wearable signals: the day's readings and their 7-day mean",
    )
    if fig is None:
        if not sections:
            return Markup(), sections
        return Markup(empty("No daily symptom or wearable readings for this person yet.")), sections
    # The figure's HTML, then the script that ties its time axis to the timeline's (a fixed
    # script from figures/outcomes.py, no data in it).
    panel = _fig(fig, "outcomes", "") + Markup(figures.axis_sync_script())
    return panel, sections


def render_person_page(s: PersonSummary, d: DashboardInputs, global_warnings: list[str]) -> str:
    pid = s.person_id
    details = []
    if s.sex:
        details.append(f"sex {s.sex}")
    if is_num(s.age):
        details.append(f"age {float(s.age):.0f}")
    crumbs = _piece("crumbs")([(INDEX, "← All people"), (COHORT, "Cohort")])
    heading = _heading(f"Person {pid}", crumbs, esc(", ".join(details)))

    span = _page_span(s)
    timeline = figures.crp_timeline(
        s.draw_points.to_dicts(),
        s.weekly,
        s.trend.get("baseline"),
        f"{marker_label(s.headline)} (log scale) and weekly intake",
        dii_params=dii_params_text(s.dii_params),
        bands=s.headline == CATEGORY_MARKER,
        x_range=span,
    )
    outcome_panel, outcome_sections_ = _outcomes(s, span)
    # The findings and the lag scan are in the section file beside the page.
    findings, lag_scan, section_script = section_slots(pid)
    draw_days = [x for x in s.crp["day"].to_list() if isinstance(x, date)]
    calendar = figures.coverage_calendar(
        s.diet, draw_days, "Days with a diet log (green) and blood draws (red)"
    )
    category_calendar = figures.category_calendar(
        s.diet, "Daily intake", dii_params=dii_params_text(s.dii_params)
    )
    # Shown on a card and in the data-quality table.
    logged_rule = logged_rule_text(s.diet)
    body = render(
        "person.html",
        cards=_summary_cards(s, logged_rule),
        marker=marker_label(s.headline),
        bands=s.headline == CATEGORY_MARKER,
        timeline=_fig(timeline, "timeline", "No CRP draws or diet log for this person yet."),
        outcome_panel=outcome_panel,
        outcomes=outcome_sections_,
        findings=findings,
        sufficiency=_sufficiency_rows(s),
        lag_scan=lag_scan,
        calendar=_fig(calendar, "calendar", "No diet log for this person yet."),
        category_calendar=_fig(
            category_calendar,
            "category-calendar",
            "No food-group intake logged for this person yet.",
        ),
        warnings=_warn_list(s.warnings),
        checks=_quality_checks(s, logged_rule),
        global_warnings=_warn_list(global_warnings) if global_warnings else None,
        index=INDEX,
        rejected=_rejected_table(d),
        sources=_freshness_table(s.sources, "Latest day of data") if s.sources else None,
        unmapped=_unmapped_table(s.unmapped) if s.unmapped.height else None,
        other_markers=_other_markers(s),
        section_script=section_script,
    )
    return page(f"gutsignal: {pid}", heading, body, _footer(d))


def _sufficiency_card(s: PersonSummary) -> Markup:
    if not s.sufficiency:
        return card("Enough data?", _piece("muted")("n/a"), esc("no chronic draws yet"))
    r = s.sufficiency[0]
    m50 = r.get("more_draws_50pct")
    value = (
        "enough for a 50% change"
        if m50 == 0
        else f"{fmt_int(m50)} more draws"
        if is_num(m50)
        else "n/a"
    )
    sub = _piece("sufficiency_sub")(f"{marker_label(r.get('marker'))}: {sufficiency_short(r)}")
    return card("Enough data?", esc(value), sub)
