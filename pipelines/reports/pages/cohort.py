"""The cohort page (`render_cohort`): pooled within-person estimates as forest plots and tables,
each person's estimate partially pooled, between-person (cross-sectional) estimates and everyone's
CRP as small multiples; person ids are pseudonymised when `pseudonymise_cohort` is set. The
page's structure and prose are in templates/cohort.html.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports import figures
from pipelines.reports.findings import (
    _findings_block,
    _is_primary,
    _primary_between,
    finding_sentence,
)
from pipelines.reports.html import (
    CAVEAT,
    DII_FEATURES,
    card,
    dii_params_text,
    esc,
    feature_label,
    feature_order,
    fmt_int,
    fmt_pct,
    is_num,
    marker_label,
    page,
    table,
)
from pipelines.reports.inputs import (
    INDEX,
    MAX_SMALL_MULTIPLES,
    POOLED_COLUMNS,
    DashboardInputs,
    person_page_name,
)
from pipelines.reports.page_summary import PageSummary
from pipelines.reports.pages.common import (
    _between_n,
    _fig,
    _footer,
    _heading,
    _piece,
    _warn_list,
)
from pipelines.reports.pages.render import render
from pipelines.reports.summaries import _crp_draws, _marker_order
from pipelines.schema import BETWEEN_METHODS


def _best_window(rows: list[dict[str, Any]], dii_params: str = "") -> list[dict[str, Any]]:
    """Per (marker, feature) the estimable row of the primary window (else the smallest q, then
    p, then largest n), labelled with the feature, the DII's parameter count (`dii_params`) and
    the window."""
    best: dict[tuple[str, str], dict[str, Any]] = {}

    def key(r: dict[str, Any]) -> tuple[float, float, float, float]:
        return (
            # The food's primary window is its one test; the forest plot shows that one.
            0.0 if _is_primary(r) else 1.0,
            float(r["q"]) if is_num(r.get("q")) else 2.0,
            float(r["p"]) if is_num(r.get("p")) else 2.0,
            -float(r["n"]) if is_num(r.get("n")) else 0.0,
        )

    for r in rows:
        if not is_num(r.get("effect_pct")) or r.get("status") == "insufficient_data":
            continue
        k = (str(r.get("marker")), str(r.get("feature")))
        if k not in best or key(r) < key(best[k]):
            best[k] = r
    out = sorted(best.values(), key=lambda r: feature_order(str(r.get("feature") or "")))
    for r in out:
        w = r.get("window_days")
        used = f" ({dii_params})" if dii_params and r.get("feature") in DII_FEATURES else ""
        r["label"] = (
            feature_label(r.get("feature")) + used + (f" · {int(w)} d" if is_num(w) else "")
        )
    return out


def _forest_section(
    rows: list[dict[str, Any]],
    kind: str,
    div_prefix: str,
    n_word: str,
    dii_params: tuple[int, int] | None = None,
) -> Markup:
    """Per marker, a forest plot of each feature's best window and every row in a table. DII
    features carry the number of parameters behind the DIIs (`dii_params`: fewest and most)."""
    parts: list[str] = []
    used = dii_params_text(dii_params)
    markers = sorted({str(r.get("marker")) for r in rows}, key=_marker_order)
    for k, m in enumerate(markers):
        mrows = [dict(r) for r in rows if str(r.get("marker")) == m]
        best = _best_window(mrows, used)
        fig = figures.forest_plot(
            best, f"{marker_label(m)}: {kind} (% change per unit, 95% CI)", n_word
        )
        parts.append(
            _fig(fig, f"{div_prefix}-{k}", f"No estimable {kind} for {marker_label(m)} yet.")
        )
        parts.append(
            _findings_block(
                mrows,
                f"{marker_label(m)} ({kind})",
                lambda row: finding_sentence(row, dii_params),
            )
        )
    # Figure slots and findings blocks: HTML built (and escaped) by their helpers.
    return Markup("".join(parts))


def _partial_pooling_table(assoc: pl.DataFrame, pseudonymise: bool) -> Markup | None:
    """Per significant pooled food (primary window): each person's own estimate beside the one
    partially pooled toward the cohort; None when there is none."""
    if not set(POOLED_COLUMNS) <= set(assoc.columns) or "window_role" not in assoc.columns:
        return None
    keys = ["marker", "feature", "window_days"]
    found = assoc.filter(
        (pl.col("scope") == "cohort")
        & (pl.col("status") == "significant")
        & (pl.col("window_role") == "primary")
    ).select(keys)
    rows = (
        assoc.filter((pl.col("scope") == "person") & pl.col("pooled_effect_pct").is_not_null())
        .join(found, on=keys, how="semi")
        .sort("marker", "feature", "person_id")
    )
    if rows.is_empty():
        return None
    names = {p: f"Person {i:02d}" for i, p in enumerate(sorted(set(rows["person_id"])), 1)}
    body = [
        [
            esc(names[r["person_id"]] if pseudonymise else r["person_id"]),
            esc(f"{feature_label(r['feature'])} · {r['window_days']} d"),
            esc(
                f"{fmt_pct(r['effect_pct'])} ({fmt_pct(r['ci_low_pct'])} to "
                f"{fmt_pct(r['ci_high_pct'])})"
            ),
            esc(
                f"{fmt_pct(r['pooled_effect_pct'])} ({fmt_pct(r['pooled_ci_low_pct'])} to "
                f"{fmt_pct(r['pooled_ci_high_pct'])})"
            ),
        ]
        for r in rows.iter_rows(named=True)
    ]
    return table(["Person", "Food", "Own estimate (95% CI)", "Partially pooled (95% CI)"], body)


def _cohort_dii_params(summaries: list[PageSummary]) -> tuple[int, int] | None:
    """Fewest and most DII parameters over everyone's logged days with a DII."""
    ranges = [s.dii_params for s in summaries if s.dii_params is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def render_cohort(
    summaries: list[PageSummary], d: DashboardInputs, global_warnings: list[str]
) -> str:
    assoc = d.associations
    if d.pseudonymise_cohort and global_warnings:
        # Warnings name sources and files, which often carry a person's name.
        global_warnings = [f"{len(global_warnings)} data-quality warning(s): see the index page"]
    between = assoc.filter(_primary_between()).to_dicts()
    between_n = _between_n(d)
    followed = (
        f"{len(summaries):,} {'person' if len(summaries) == 1 else 'people'} followed over time"
    )
    meta = followed
    if between_n:
        meta += f" · {between_n:,} people in the between-person models (largest model n)"
    heading = _heading("Cohort view", _piece("crumbs")([(INDEX, "← All people")]), esc(meta))
    pooled = assoc.filter(
        (pl.col("scope") == "cohort") & ~pl.col("method").fill_null("").is_in(BETWEEN_METHODS)
    ).to_dicts()
    draws = _crp_draws(d.marker_draws, "person_id")
    with_crp = [s for s in summaries if s.n_draws]
    cards = [
        card(
            "People followed over time",
            esc(fmt_int(len(summaries))),
            esc(f"{len(with_crp)} with CRP draws"),
        )
    ]
    if between_n:
        cards.append(
            card(
                "People in between-person models",
                esc(fmt_int(between_n)),
                # Raw, as it always was: esc would write the apostrophe as &#x27;.
                Markup("cross-sectional cohort: the largest model's n (one draw per person)"),
            )
        )
    cards += [
        card(
            "CRP draws of people followed",
            esc(fmt_int(draws.height)),
            esc(
                f"{sum(s.n_chronic for s in summaries):,} chronic, "
                f"{sum(s.n_acute for s in summaries):,} acute"
            ),
        ),
        card(
            "Days with a diet log",
            esc(fmt_int(sum(s.days_logged for s in summaries))),
            esc(f"of {sum(s.days_in_range for s in summaries):,} person-days in range"),
        ),
        card(
            "Pooled findings",
            esc(fmt_int(sum(r.get("status") == "significant" for r in pooled + between))),
            esc(f"significant of {len(pooled) + len(between)} tested; {CAVEAT}"),
        ),
    ]
    repeated = sorted(
        (s for s in with_crp if s.n_draws >= 2), key=lambda s: (-s.n_draws, s.person_id)
    )
    shown = repeated[:MAX_SMALL_MULTIPLES]
    if d.pseudonymise_cohort:
        ordered = sorted(s.person_id for s in summaries)
        alias = {pid: f"Person {i + 1:02d}" for i, pid in enumerate(ordered)}
        draws = draws.with_columns(pl.col("person_id").replace_strict(alias, default="Person ?"))
        shown_ids = [alias[s.person_id] for s in shown]
    else:
        shown_ids = [s.person_id for s in shown]
    fig = figures.crp_small_multiples(draws, shown_ids, "CRP (mg/L, log scale)")
    body = render(
        "cohort.html",
        cards=cards,
        caveat_text=CAVEAT,
        index=INDEX,
        global_warnings=_warn_list(global_warnings) if global_warnings else None,
        pooled=(
            _forest_section(
                pooled, "pooled estimates", "forest", "n", _cohort_dii_params(summaries)
            )
            if pooled
            else None
        ),
        partial_pooling=_partial_pooling_table(assoc, d.pseudonymise_cohort),
        between=(
            _forest_section(
                between, "between-person estimates", "between", "people", d.between_dii_params
            )
            if between
            else None
        ),
        survey=any(r.get("method") == "survey_wls" for r in between),
        n_repeated=len(repeated),
        n_shown=len(shown),
        small_multiples=_fig(fig, "small-multiples", "No one has two or more CRP draws yet."),
        pseudonymised=d.pseudonymise_cohort,
        person_links=[(person_page_name(s.person_id), s.person_id) for s in summaries],
    )
    return page("gutsignal: cohort", heading, body, _footer(d))
