"""A person's page (`render_person_page`): summary cards, the CRP and diet timeline, findings, the
lag-window scan with the data behind its cells, logging coverage and data quality.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports import figures
from pipelines.reports.findings import (
    _date_text,
    _findings_block,
    _sentences,
    finding_sentence,
    sufficiency_short,
)
from pipelines.reports.html import (
    CAVEAT,
    card,
    caveat,
    dii_params_text,
    empty,
    esc,
    feature_label,
    fmt_int,
    fmt_latest,
    fmt_pct,
    fmt_value,
    is_num,
    marker_label,
    marker_unit,
    page,
    pesc,
    table,
)
from pipelines.reports.inputs import COHORT, INDEX, DashboardInputs
from pipelines.reports.pages.common import (
    _category_html,
    _coverage_html,
    _fig,
    _footer,
    _freshness_table,
    _heading,
    _latest_html,
    _rejected_table,
    _trend_html,
    _unmapped_table,
    _warn_list,
)
from pipelines.reports.summaries import (
    CATEGORY_MARKER,
    PersonSummary,
    _logged_median,
    _marker_order,
    logged_rule_text,
)


def _sufficiency_html(s: PersonSummary) -> str:
    if not s.sufficiency:
        return empty("No estimate yet: it needs at least one chronic draw.")
    parts = []
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
        parts.append(
            f'<div class="finding"><b>{esc(marker_label(r.get("marker")))}:</b> '
            f"{esc(r.get('advice') or sufficiency_short(r))} "
            f'<span class="muted">({esc(basis)})</span></div>'
        )
    parts.append(
        '<p class="muted">For a before/after comparison (for example months without and then '
        "months with a food), draws about a month apart, half before and half after the change: "
        "the number at which this pipeline's own analysis, with its false-discovery correction "
        "over every food and window it tests, finds the change in 80% of simulated people. Draws "
        "you already have count towards the before half only. A change smaller than this may be "
        "real but cannot be told apart from day-to-day variation.</p>"
    )
    return "".join(parts)


def _summary_cards(s: PersonSummary) -> str:
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
            Markup('<span class="muted">n/a</span>'),
            esc("needs two chronic draws"),
        )
    return (
        '<div class="cards">'
        + "".join(
            [
                card("Latest CRP", _latest_html(s), _category_html(s)),
                card(
                    "Chronic baseline",
                    Markup(
                        f"{esc(fmt_value(baseline))} mg/L"
                        if is_num(baseline)
                        else '<span class="muted">n/a</span>'
                    ),
                    esc(f"from {s.n_chronic} chronic draws (acute draws excluded)"),
                ),
                card("Chronic trend", _trend_html(s)),
                change_html,
                card(
                    "Data coverage",
                    _coverage_html(s),
                    esc(f"How a day counts as logged: {logged_rule_text(s.diet)}"),
                ),
                card(
                    "Findings",
                    esc(f"{len(s.significant)} significant"),
                    Markup(f"of {s.n_findings} pairs tested; {esc(CAVEAT)}"),
                ),
                _sufficiency_card(s),
            ]
        )
        + "</div>"
    )


def _person_quality(s: PersonSummary, d: DashboardInputs, global_warnings: list[str]) -> str:
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
        ("How a day counts as logged", esc(logged_rule_text(s.diet))),
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
    parts = [
        "<h3>Warnings for this person</h3>",
        _warn_list(s.warnings),
        table(["Check", "Value"], [[esc(check), value] for check, value in rows]),
    ]
    if global_warnings:
        parts.append(
            f"<h3>Pipeline-wide</h3>{_warn_list(global_warnings)}"
            '<p class="muted">Details per file and reason are on the '
            f'<a href="{INDEX}#quality">index page</a>.</p>'
        )
    parts.append("<h3>Rejected input rows by reason (all sources)</h3>")
    parts.append(_rejected_table(d))
    parts.append("<h3>Sources of this person's data</h3>")
    parts.append(
        _freshness_table(s.sources, "Latest day of data")
        if s.sources
        else empty("No per-person dates from any source yet.")
    )
    parts.append("<h3>Foods without a gut-food category</h3>")
    parts.append(
        _unmapped_table(s.unmapped)
        if s.unmapped.height
        else empty("None for this person (or the list is not split by person).")
    )
    return "".join(parts)


def _other_markers(s: PersonSummary) -> str:
    rows = [t for t in s.trends if t.get("marker") != s.headline]
    if not rows:
        return ""
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
    return Markup("<h2>Other markers</h2>") + table(
        ["Marker", "Latest", "On", "Baseline", "Trend", "Draws", "Chronic"], body, num_cols=(5, 6)
    )


def _cell_title(
    row: dict[str, Any], sentence: Callable[[dict[str, Any]], str] = finding_sentence
) -> str:
    """A heatmap cell's scatter title as Plotly text: the feature and window, then the finding."""
    w = row.get("window_days")
    when = f"previous {int(w)} days" if is_num(w) else "no window"
    return (
        f"<b>{pesc(feature_label(row.get('feature')))} · {when}</b><br>"
        f"<span style='font-size:12px'>{pesc(sentence(row))}</span>"
    )


def _lag_scan(s: PersonSummary, sentence: Callable[[dict[str, Any]], str]) -> tuple[str, str]:
    """The lag-window heatmaps of a person page, and the data behind their cells (its script)."""
    parts: list[str] = []
    markers = sorted(
        {str(r.get("marker")) for r in s.findings if r.get("marker")}, key=_marker_order
    )
    if not markers:
        parts.append(empty("No associations tested for this person yet."))
    cell_maps: dict[str, dict[str, Any]] = {}
    for k, m in enumerate(markers):
        rows = s.findings_df.filter(pl.col("marker") == m)
        fig = figures.lag_heatmap(rows, f"{marker_label(m)}: % change per unit, by exposure window")
        parts.append(_fig(fig, f"lag-{k}", f"No estimable associations for {marker_label(m)} yet."))
        if fig is None:
            continue
        cells = figures.cell_scatter_data(
            rows,
            s.windows,
            s.all_draws,
            m,
            marker_label(m),
            marker_unit(m),
            {
                figures.cell_key(r["feature"], r["window_days"]): _cell_title(r, sentence)
                for r in s.findings
                if r.get("marker") == m and r["feature"] is not None
            },
            f"scatter-{k}",
        )
        if cells is None:
            parts.append(
                empty(
                    f"No {marker_label(m)} draw has a complete window yet, so there are no "
                    "points to plot behind the cells."
                )
            )
            continue
        cell_maps[f"lag-{k}"] = cells
        parts.append(
            f'<div class="fig"><div id="scatter-{k}" class="plotly-graph-div cell-scatter" '
            f'style="height:{figures.SCATTER_LAYOUT["height"]}px;width:100%"></div></div>'
        )
    return "".join(parts), figures.cell_data_script(cell_maps)


def render_person_page(
    s: PersonSummary,
    d: DashboardInputs,
    global_warnings: list[str],
) -> str:
    """A person's page."""
    pid = s.person_id
    details = []
    if s.sex:
        details.append(f"sex {s.sex}")
    if is_num(s.age):
        details.append(f"age {float(s.age):.0f}")
    crumbs = Markup(f'<a href="{INDEX}">← All people</a> · <a href="{COHORT}">Cohort</a>')
    heading = _heading(f"Person {pid}", crumbs, esc(", ".join(details)))

    body = [_summary_cards(s)]
    body.append(f"<h2>{esc(marker_label(s.headline))} and diet over time</h2>")
    bands = (
        "Shaded bands are the hs-CRP cardiovascular-risk categories: green below 1 mg/L (low), "
        "yellow 1-3 (average), red above 3 (high). "
        if s.headline == CATEGORY_MARKER
        else "These are standard CRP results: a standard assay cannot tell the low ranges apart, "
        "so no cardiovascular-risk bands are drawn and a result below its detection limit is "
        "left out of the chronic analysis. "
    )
    body.append(
        f'<p class="lead">{bands}Red crosses are acute draws (above 10 mg/L, excluded from the '
        "chronic analysis), whichever CRP assay measured them: an infection starts the washout "
        "of both; open circles are below the detection limit; orange diamonds fall in the "
        "washout after an acute draw. The lower "
        "panel shows weekly means over logged days only; click legend entries to add other "
        "food groups.</p>"
    )
    fig = figures.crp_timeline(
        s.crp,
        s.diet,
        s.trend.get("baseline"),
        f"{marker_label(s.headline)} (log scale) and weekly intake",
        dii_params=dii_params_text(s.dii_params),
        bands=s.headline == CATEGORY_MARKER,
    )
    body.append(_fig(fig, "timeline", "No CRP draws or diet log for this person yet."))

    body.append(f"<h2>Findings {caveat()}</h2>")
    body.append(
        '<p class="lead">Each line is one food feature tested against later CRP within this '
        "person (log-linear model, adjusted for the core gut foods that co-vary with it, energy "
        "and a time trend; the crude estimate follows). q is the p-value adjusted for the number "
        "of foods tested, each once at its primary window (Holm unless settings say otherwise: "
        "at q <= 0.05 the chance of even one false finding among them is at most 5%); n counts "
        "the draws "
        "with a well-logged window. These are associations, not causation: use them to plan "
        "an experiment or a conversation with a clinician.</p>"
    )
    # Each finding's sentence is shown in the findings table and again as its cell's title;
    # worked out once, and only when there is a finding.
    sentences: list[Callable[[dict[str, Any]], str]] = []

    def sentence(row: dict[str, Any]) -> str:
        if not sentences:
            sentences.append(_sentences(s.findings, s.dii_params))
        return sentences[0](row)

    body.append(_findings_block(s.findings, "this person", sentence))
    body.append('<h3 id="sufficiency">Is there enough data?</h3>')
    body.append(_sufficiency_html(s))

    body.append("<h2>Lag-window scan</h2>")
    body.append(
        '<p class="lead">Rows are features, columns the number of days before each draw that '
        "were averaged; each cell shows the % change in the marker per unit and its n (draws "
        "with a complete window). Colour: blue lower, red higher; * and a black outline mark "
        "cells significant after the correction for testing many foods; – means not enough "
        "data. Each food is tested once, at its primary window (28 days unless settings say "
        "otherwise); the other columns show its lag shape and count as significant only when "
        "the food is. Every cell is adjusted for the core foods, energy and a time trend (see "
        "each finding). <b>Click a cell</b> to see its draws below, with the fitted line and "
        "its 95% CI; the most significant cell is shown first.</p>"
    )
    lag_html, cells_html = _lag_scan(s, sentence)
    body.append(lag_html)

    body.append("<h2>Logging coverage</h2>")
    body.append(
        '<p class="lead">Which days have a diet log (windows before a draw need 80% of their '
        "days logged), and below it one food group day by day: pick another in the dropdown. "
        "Blank days were not logged.</p>"
    )
    draw_days = [x for x in s.crp["day"].to_list() if isinstance(x, date)]
    fig = figures.coverage_calendar(
        s.diet, draw_days, "Days with a diet log (green) and blood draws (red)"
    )
    body.append(_fig(fig, "calendar", "No diet log for this person yet."))
    fig = figures.category_calendar(
        s.diet, "Daily intake", dii_params=dii_params_text(s.dii_params)
    )
    body.append(_fig(fig, "category-calendar", "No food-group intake logged for this person yet."))

    body.append('<h2 id="quality">Data quality</h2>')
    body.append(_person_quality(s, d, global_warnings))
    body.append(_other_markers(s))
    # The script that draws a cell's scatter goes last, after the elements it reads.
    body.append(cells_html)
    # Every piece of the body escapes its own text.
    return page(f"gutsignal: {pid}", heading, Markup("".join(body)), _footer(d))


def _sufficiency_card(s: PersonSummary) -> str:
    link = '<a href="#sufficiency">how many draws, and why</a>'
    if not s.sufficiency:
        return card(
            "Enough data?", Markup('<span class="muted">n/a</span>'), esc("no chronic draws yet")
        )
    r = s.sufficiency[0]
    m50 = r.get("more_draws_50pct")
    value = (
        "enough for a 50% change"
        if m50 == 0
        else f"{fmt_int(m50)} more draws"
        if is_num(m50)
        else "n/a"
    )
    advice = esc(f"{marker_label(r.get('marker'))}: {sufficiency_short(r)}")
    sub = Markup(f"{advice}; {link}")
    return card("Enough data?", esc(value), sub)
