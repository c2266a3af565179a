"""What the index and the cohort page show of each person (`PageSummary`): a few numbers and
short texts from their `PersonSummary`, without its frames. Worked out where the person's page is
(`workers`), and kept as a row per person (`summaries_frame`, the store table `page_summaries`
written by the person-page step), so the index and the cohort page are rendered from these rows
without reading or summarising anyone's tables again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipelines.reports.findings import finding_sentence, sufficiency_short
from pipelines.reports.html import marker_label
from pipelines.reports.summaries import CATEGORY_MARKER, PersonSummary

# The significant findings the index lists per person; the rest are counted.
TOP_FINDINGS = 3
# The keys of the headline trend the index's trend cell reads.
TREND_SHOWN = ("slope_pct_per_year", "slope_ci_low", "slope_ci_high")


@dataclass(frozen=True)
class PageSummary:
    """A person's index row and their share of the cohort page. Field names are those of
    `PersonSummary`, so the cells both pages share (`pages.common`) read either."""

    person_id: str
    headline: str = CATEGORY_MARKER
    latest_value: float | None = None
    latest_at: str = ""
    latest_acute: bool = False
    latest_censored: str | None = None
    category: str | None = None
    # The headline trend's slope and its CI (TREND_SHOWN), None where it has none.
    trend: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(TREND_SHOWN))
    n_draws: int = 0
    n_chronic: int = 0
    n_acute: int = 0
    days_logged: int = 0
    days_in_range: int = 0
    dii_params: tuple[int, int] | None = None
    # The index's "Enough data?" cell: the first marker's sufficiency in one line.
    sufficiency_line: str | None = None
    # The first TOP_FINDINGS significant findings in plain words, and how many there are.
    top_findings: list[str] = field(default_factory=list)
    n_significant: int = 0
    n_findings: int = 0
    warnings: list[str] = field(default_factory=list)


def page_summary(s: PersonSummary) -> PageSummary:
    """What the index and the cohort page read of `s`."""
    first = s.sufficiency[0] if s.sufficiency else None
    return PageSummary(
        person_id=s.person_id,
        headline=s.headline,
        latest_value=s.latest_value,
        latest_at=s.latest_at,
        latest_acute=s.latest_acute,
        latest_censored=s.latest_censored,
        category=s.category,
        trend={k: s.trend.get(k) for k in TREND_SHOWN},
        n_draws=s.n_draws,
        n_chronic=s.n_chronic,
        n_acute=s.n_acute,
        days_logged=s.days_logged,
        days_in_range=s.days_in_range,
        dii_params=s.dii_params,
        sufficiency_line=(
            None
            if first is None
            else f"{marker_label(first.get('marker'))}: {sufficiency_short(first)}"
        ),
        top_findings=[finding_sentence(r, s.dii_params) for r in s.significant[:TOP_FINDINGS]],
        n_significant=len(s.significant),
        n_findings=s.n_findings,
        warnings=list(s.warnings),
    )


# The columns of `page_summaries`: one row per person with a page.
SUMMARY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "headline": pl.String,
    "latest_value": pl.Float64,
    "latest_at": pl.String,
    "latest_acute": pl.Boolean,
    "latest_censored": pl.String,
    "category": pl.String,
    **dict.fromkeys(TREND_SHOWN, pl.Float64),
    "n_draws": pl.Int64,
    "n_chronic": pl.Int64,
    "n_acute": pl.Int64,
    "days_logged": pl.Int64,
    "days_in_range": pl.Int64,
    "dii_params_low": pl.Int64,
    "dii_params_high": pl.Int64,
    "sufficiency_line": pl.String,
    "top_findings": pl.List(pl.String),
    "n_significant": pl.Int64,
    "n_findings": pl.Int64,
    "warnings": pl.List(pl.String),
}


def summaries_frame(summaries: list[PageSummary]) -> pl.DataFrame:
    """`summaries` as rows of SUMMARY_SCHEMA."""
    rows = []
    for s in summaries:
        row = {k: getattr(s, k) for k in SUMMARY_SCHEMA if hasattr(s, k)}
        row.update({k: s.trend.get(k) for k in TREND_SHOWN})
        low, high = s.dii_params if s.dii_params is not None else (None, None)
        row.update(dii_params_low=low, dii_params_high=high)
        rows.append(row)
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def summaries_from(frame: pl.DataFrame) -> list[PageSummary]:
    """The rows of `summaries_frame` as PageSummary, in the frame's order."""
    out = []
    for row in frame.iter_rows(named=True):
        low, high = row.pop("dii_params_low"), row.pop("dii_params_high")
        trend = {k: row.pop(k) for k in TREND_SHOWN}
        out.append(
            PageSummary(
                **row,
                trend=trend,
                dii_params=None if low is None or high is None else (low, high),
            )
        )
    return out
