"""Write the offline HTML dashboards: index.html, one page per person, cohort.html, plotly.min.js.

Pure Python: Polars frames in, files out (no Dagster, no DuckDB), so the report can be rebuilt or
tested from any frames. Every frame may be empty or miss optional columns; the pages then say
what is missing instead of failing, because a nightly run that produces no page at all is worse
than a page that says "no data yet".

Privacy: pages load plotly.js from a sibling file (written once), embed no remote resource and
escape every piece of user text. Honesty: every effect is printed with its n, 95% CI, q and the
caveat "association, not causation".

Interactivity stays small and local: each person page carries one JSON blob with the points and
fits behind its lag-heatmap cells, and a short inline script redraws the cell's scatter on a
Plotly click (see `charts.CELL_SCRIPT`); the category calendar switches with Plotly's own
dropdown. Staleness (a source's newest file or latest day of data more than STALE_AFTER_DAYS
before the run) is judged against `run_info["run_at"]`, except for the sources in `demo_sources`
(`demo: true` in sources.yaml), whose data ends on a fixed day: they are labelled demo data.

Big cohorts render their person pages in spawned worker processes, a share of the people each
(see `write_dashboards`); every page is rendered by the same code either way, so the files do not
depend on where they were rendered.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import plotly
import polars as pl
from plotly.offline import get_plotlyjs

from pipelines.reports import charts
from pipelines.reports.freshness import STALE_AFTER_DAYS, source_freshness_status
from pipelines.reports.html import (
    CAVEAT,
    DII_FEATURES,
    atomic_write,
    card,
    category_badge,
    caveat,
    dii_params_text,
    empty,
    esc,
    feature_label,
    feature_noun,
    feature_order,
    fmt_int,
    fmt_latest,
    fmt_pct,
    fmt_q,
    fmt_value,
    footer,
    is_num,
    marker_label,
    marker_unit,
    page,
    per_unit_phrase,
    pesc,
    status_badge,
    table,
)
from pipelines.schema import (
    BETWEEN_METHODS,
    EXPOSURE_WINDOWS_SCHEMA,
    INGEST_FILES_SCHEMA,
    RESULT_SCHEMA,
    RULE_ENERGY,
    RULE_NOTHING,
    SUFFICIENCY_SCHEMA,
    TRENDS_SCHEMA,
    UNWEIGHTED_FAMILY,
)
from pipelines.transforms.diet import OVERRIDES_HOWTO, override_line

PLOTLY_JS = "plotly.min.js"
INDEX = "index.html"
COHORT = "cohort.html"
PERSON_PREFIX = "person_"
MAX_SMALL_MULTIPLES = 30

DType = pl.DataType | type[pl.DataType]

# The columns each page reads; missing ones are added as nulls so rendering code never branches
# on the presence of a column. Extra columns pass through untouched.
SCHEMAS: dict[str, dict[str, DType]] = {
    "persons": {"person_id": pl.String, "sex": pl.String, "age": pl.Float64},
    "diet_daily": {
        "person_id": pl.String,
        "day": pl.Date,
        "logged": pl.Boolean,
        "logged_rule": pl.String,
        "entries": pl.Int64,
        "energy_kcal": pl.Float64,
        "fiber_g": pl.Float64,
        "dii": pl.Float64,
        "dii_params": pl.Int64,
    },
    "marker_draws": {
        "person_id": pl.String,
        "marker": pl.String,
        "collected_at": pl.Datetime("us"),
        "day": pl.Date,
        "value": pl.Float64,
        "below_lod": pl.Boolean,
        "censored": pl.String,
        "acute": pl.Boolean,
        "excluded_reason": pl.String,
        "n_results": pl.Int64,
    },
    "marker_trends": TRENDS_SCHEMA,
    # Optional `per_unit`: how the feature unit reads ("extra 5 g/day of fibre") when the
    # analysis scales a feature; without it effects read "per extra 1 g/day".
    "associations": {**RESULT_SCHEMA, "per_unit": pl.String},
    "ingest_files": INGEST_FILES_SCHEMA,
    # One row per source, reason and column, with the first few rejects as text (see
    # pipelines/defs/reports.py).
    "rejected_summary": {
        "source": pl.String,
        "reason": pl.String,
        "column": pl.String,
        "n": pl.Int64,
        "examples": pl.String,
    },
    "unmapped_foods": {
        "person_id": pl.String,
        "food": pl.String,
        "entries": pl.Int64,
        "energy_kcal": pl.Float64,
        "energy_share": pl.Float64,
    },
    "exposure_windows": EXPOSURE_WINDOWS_SCHEMA,
    "data_sufficiency": SUFFICIENCY_SCHEMA,
    # One row per source and person: the newest file of the source (modification time, UTC) and
    # the person's latest day of data from it (null when the source has no dates or no person).
    "source_freshness": {
        "source": pl.String,
        "person_id": pl.String,
        "newest_file_at": pl.Datetime("us"),
        "latest_day": pl.Date,
    },
}


STATUS_ORDER = {
    "significant": 0,
    "explained": 1,
    "inconclusive": 2,
    "not_significant": 3,
    "insufficient_data": 4,
}


@dataclass
class DashboardInputs:
    """Everything the dashboards show; see SCHEMAS for the columns read from each frame."""

    persons: pl.DataFrame = field(default_factory=pl.DataFrame)
    diet_daily: pl.DataFrame = field(default_factory=pl.DataFrame)
    marker_draws: pl.DataFrame = field(default_factory=pl.DataFrame)
    marker_trends: pl.DataFrame = field(default_factory=pl.DataFrame)
    associations: pl.DataFrame = field(default_factory=pl.DataFrame)
    ingest_files: pl.DataFrame = field(default_factory=pl.DataFrame)
    rejected_summary: pl.DataFrame = field(default_factory=pl.DataFrame)
    unmapped_foods: pl.DataFrame = field(default_factory=pl.DataFrame)
    exposure_windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    data_sufficiency: pl.DataFrame = field(default_factory=pl.DataFrame)
    source_freshness: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Fewest and most DII parameters behind the DIIs of the between-person models (diet_summary).
    between_dii_params: tuple[int, int] | None = None
    run_info: dict[str, str] = field(default_factory=dict)
    # Show "Person 01", "Person 02", ... instead of ids on the cohort page (for sharing it).
    pseudonymise_cohort: bool = False
    # Sources marked `demo: true` in sources.yaml: a fixed sample, labelled as demo data and not
    # checked for freshness (it would be flagged stale on every run after its last day).
    demo_sources: frozenset[str] = frozenset()


# --------------------------------------------------------------------------------------------
# File names


_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HASHED_TAIL = re.compile(r"-[0-9a-f]{10}$")


def person_page_name(person_id: str) -> str:
    """A stable, filesystem-safe page name: person_<id>.html for simple lowercase ids.

    Anything else (upper case, spaces, slashes, markup, very long ids) becomes a readable slug
    plus a hash of the exact id, so "Alice" and "alice" never share a file on a case-insensitive
    disk and no id can escape the folder.
    """
    pid = str(person_id)
    if _SAFE_ID.match(pid) and not _HASHED_TAIL.search(pid):
        return f"{PERSON_PREFIX}{pid}.html"
    slug = re.sub(r"[^a-z0-9]+", "-", pid.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(pid.encode("utf-8")).hexdigest()[:10]
    return f"{PERSON_PREFIX}{slug}-{digest}.html" if slug else f"{PERSON_PREFIX}{digest}.html"


# --------------------------------------------------------------------------------------------
# Input normalisation


def _conform(df: pl.DataFrame | None, schema: dict[str, DType]) -> pl.DataFrame:
    """Add missing columns as typed nulls and coerce known ones; never raises on odd input."""
    if df is None or df.width == 0:
        return pl.DataFrame(schema=schema)
    exprs = []
    for name, dtype in schema.items():
        if name not in df.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        have = df.schema[name]
        if have.base_type() != dtype.base_type():
            exprs.append(pl.col(name).cast(dtype, strict=False))
    out = df.with_columns(exprs) if exprs else df
    return out


def _normalise(data: DashboardInputs) -> DashboardInputs:
    draws = _conform(data.marker_draws, SCHEMAS["marker_draws"]).with_columns(
        day=pl.coalesce(pl.col("day"), pl.col("collected_at").dt.date()),
        marker=pl.col("marker").str.to_lowercase(),
    )
    diet = _conform(data.diet_daily, SCHEMAS["diet_daily"])
    if data.diet_daily is None or "logged" not in data.diet_daily.columns:
        # Without the flag, a day with any entry or energy counts as logged.
        diet = diet.with_columns(
            logged=pl.col("entries").fill_null(0).gt(0) | pl.col("energy_kcal").is_not_null()
        )
    diet = diet.with_columns(pl.col("logged").fill_null(False))
    return DashboardInputs(
        persons=_conform(data.persons, SCHEMAS["persons"]),
        diet_daily=diet,
        marker_draws=draws,
        marker_trends=_conform(data.marker_trends, SCHEMAS["marker_trends"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        associations=_conform(data.associations, SCHEMAS["associations"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        ingest_files=_conform(data.ingest_files, SCHEMAS["ingest_files"]),
        rejected_summary=_conform(data.rejected_summary, SCHEMAS["rejected_summary"]),
        unmapped_foods=_conform(data.unmapped_foods, SCHEMAS["unmapped_foods"]),
        exposure_windows=_conform(data.exposure_windows, SCHEMAS["exposure_windows"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        data_sufficiency=_conform(data.data_sufficiency, SCHEMAS["data_sufficiency"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        source_freshness=_conform(data.source_freshness, SCHEMAS["source_freshness"]),
        between_dii_params=data.between_dii_params,
        run_info={str(k): "" if v is None else str(v) for k, v in (data.run_info or {}).items()},
        pseudonymise_cohort=data.pseudonymise_cohort,
        demo_sources=frozenset(data.demo_sources or ()),
    )


def _date_text(x: object) -> str:
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d")
    if isinstance(x, date):
        return x.isoformat()
    return "" if x is None else str(x)


# --------------------------------------------------------------------------------------------
# Sentences


def _stat(name: str, value: object) -> str:
    text = fmt_q(value)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def _is_between(row: dict[str, Any]) -> bool:
    return row.get("method") in BETWEEN_METHODS


def _primary_between() -> pl.Expr:
    """Between-person rows shown as results: design-based ones for a survey cohort (their note
    carries the unweighted estimate), plain OLS otherwise; never the unweighted companions."""
    return pl.col("method").is_in(BETWEEN_METHODS) & ~pl.col("family").fill_null("").str.ends_with(
        UNWEIGHTED_FAMILY
    )


def _when(row: dict[str, Any]) -> str:
    w = row.get("window_days")
    if is_num(w):
        return " over the previous day" if int(w) == 1 else f" over the previous {int(w)} days"
    return " between people" if _is_between(row) else ""


def finding_sentence(row: dict[str, Any], dii_params: tuple[int, int] | None = None) -> str:
    """One association in plain words, with its CI, q and n (plain text; escape when rendering).

    e.g. "CRP 24% lower per extra daily serving of fermented food over the previous 28 days,
    95% CI -38% to -7%, q = 0.03, 14 draws". A DII feature ends with the number of parameters
    its DIIs were computed from (`dii_params`: fewest and most), e.g. "; DII from 28 of 45
    parameters".
    """
    marker = marker_label(row.get("marker") or "crp")
    noun = feature_noun(row.get("feature"))
    when = _when(row)
    n = row.get("n")
    n_word = "people" if _is_between(row) else "draws"
    effect = row.get("effect_pct")
    if row.get("status") == "insufficient_data" or not is_num(effect):
        note = row.get("note")
        w = row.get("window_days")
        if note:
            missing = f"{note}" + (f" (n = {int(n)})" if is_num(n) else "")
        elif is_num(n) and is_num(w):
            missing = (
                f"only {int(n)} draws had enough of the {int(w)} days before them logged; "
                "more draws with the diet logged on most days before each one are needed"
            )
        elif is_num(n):
            missing = f"only {int(n)} usable {n_word}; more are needed for an estimate"
        else:
            missing = "too few draws with a logged diet before them"
        return f"Not enough data yet for {marker} and {noun}{when}: {missing}."
    eff = float(effect)
    size = fmt_pct(abs(eff), signed=False)
    per = per_unit_phrase(row.get("feature"), row.get("per_unit"))
    if size == "0%":
        head = f"{marker} essentially unchanged {per}{when}"
    else:
        head = f"{marker} {size} {'lower' if eff < 0 else 'higher'} {per}{when}"
    lo, hi = row.get("ci_low_pct"), row.get("ci_high_pct")
    ci = (
        f"95% CI {fmt_pct(lo)} to {fmt_pct(hi)}"
        if is_num(lo) and is_num(hi)
        else "95% CI not available"
    )
    if is_num(row.get("q")):
        stat = _stat("q", row.get("q"))
    elif is_num(row.get("p")):
        stat = _stat("p", row.get("p")) + " (no adjusted q)"
    else:
        stat = "q not available"
    n_text = f"{fmt_int(n)} {n_word}" if is_num(n) else f"{n_word}: unknown"
    used = dii_params_text(dii_params) if row.get("feature") in DII_FEATURES else ""
    return (
        f"{head}, {ci}, {stat}, {n_text}"
        + (f"; DII from {used}" if used else "")
        + adjustment_phrase(row)
    )


def adjustment_phrase(row: dict[str, Any]) -> str:
    """ "; adjusted for fermented, ..., energy (at the same energy: eaten instead of other
    foods) ...; crude -12%" for a row of the adjusted models (issue 16), else ""."""
    adjusted = row.get("adjusted_for")
    crude = row.get("crude_effect_pct")
    if not adjusted and not is_num(crude):
        return ""
    parts = []
    if adjusted:
        text = str(adjusted).replace(
            "energy (kcal)", "energy (at the same energy: eaten instead of other foods)"
        )
        parts.append(f"adjusted for {text}")
    else:
        parts.append("not adjusted for other foods (too few draws)")
    if is_num(crude):
        parts.append(f"crude {fmt_pct(crude)}")
    return "; " + "; ".join(parts)


def _is_primary(row: dict[str, Any]) -> bool:
    """The food's one test (rows from before windows had roles count as primary)."""
    return row.get("window_role") in (None, "primary")


def _lag_shape_phrase(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Which of the food's other windows are significant too (they describe its lag shape)."""
    also = sorted(
        int(r["window_days"])
        for r in rows
        if r.get("window_role") == "lag_shape"
        and r.get("status") == "significant"
        and r.get("feature") == row.get("feature")
        and r.get("marker") == row.get("marker")
        and r.get("person_id") == row.get("person_id")
        and is_num(r.get("window_days"))
    )
    if not also:
        return ""
    return "; lag shape: also significant at " + ", ".join(f"{w}" for w in also) + " days"


def _sorted_findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple[int, float, tuple[int, str], float]:
        q = r.get("q")
        return (
            STATUS_ORDER.get(str(r.get("status")), 4),
            float(q) if is_num(q) else 2.0,
            feature_order(str(r.get("feature") or "")),
            float(r["window_days"]) if is_num(r.get("window_days")) else 0.0,
        )

    return sorted(rows, key=key)


def _findings_table(
    rows: list[dict[str, Any]],
    with_person: bool = False,
    sentence: Callable[[dict[str, Any]], str] = finding_sentence,
    ordered: list[dict[str, Any]] | None = None,
) -> str:
    """Every row in a table; `ordered` is `_sorted_findings(rows)` when the caller has it."""
    body = []
    classes = []
    for r in _sorted_findings(rows) if ordered is None else ordered:
        cells = []
        if with_person:
            cells.append(esc(r.get("person_id") or "all"))
        cells += [
            f"{esc(sentence(r))} {caveat()}",
            status_badge(r.get("status")),
            esc(r.get("method") or ""),
            esc(r.get("note") or ""),
        ]
        body.append(cells)
        classes.append("row-significant" if r.get("status") == "significant" else "")
    headers = [
        *(["Person"] if with_person else []),
        "Finding (95% CI, q, n)",
        "Status",
        "Method",
        "Note",
    ]
    return table(headers, body, row_classes=classes)


def _findings_block(
    rows: list[dict[str, Any]],
    what: str,
    sentence: Callable[[dict[str, Any]], str] = finding_sentence,
) -> str:
    """Significant findings highlighted, then every tested pair in a table.

    `sentence` gives a row's `finding_sentence` (a page that shows it twice computes it once).
    """
    if not rows:
        return empty(f"No associations have been tested for {what} yet.")
    ordered = _sorted_findings(rows)
    # A food is one discovery: its primary window. Its other windows are its lag shape.
    sig = [r for r in ordered if r.get("status") == "significant" and _is_primary(r)]
    explained = [r for r in ordered if r.get("status") == "explained"]
    parts: list[str] = []
    if sig:
        parts.extend(
            f'<div class="finding">{esc(sentence(r))}{esc(_lag_shape_phrase(r, rows))} '
            f"{caveat()}</div>"
            for r in sig
        )
    else:
        parts.append(
            '<div class="notice">No finding passes the false-discovery check yet '
            f"({fmt_int(len(rows))} pairs tested). That is the honest answer with this much "
            "data, not a sign that nothing matters.</div>"
        )
    if explained:
        items = "".join(
            f"<li>{esc(feature_label(r.get('feature')))}: {esc(r.get('note') or '')}</li>"
            for r in explained
        )
        parts.append(
            '<div class="notice"><b>Explained by co-occurring foods</b> (not findings): their '
            "crude association disappears once the foods they are eaten with are held "
            f"constant.<ul>{items}</ul></div>"
        )
    n_insufficient = sum(r.get("status") == "insufficient_data" for r in rows)
    summary = f"All {fmt_int(len(rows))} tested pairs" + (
        f" ({fmt_int(n_insufficient)} without enough data)" if n_insufficient else ""
    )
    opened = " open" if len(rows) <= 40 else ""
    parts.append(
        f"<details{opened}><summary>{esc(summary)}</summary>"
        f"{_findings_table(rows, sentence=sentence, ordered=ordered)}</details>"
    )
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Per-person summary (shared by the index and the person page)


# hs-CRP and standard CRP are two markers, never pooled (pipelines/transforms/labs.py). A person's
# headline CRP series (cards, timeline, index) is their hs-CRP when they have any, else their
# standard CRP; the other one is listed with the other markers. Only hs-CRP gets a category.
CRP_MARKERS = ("hscrp", "crp")
CATEGORY_MARKER = "hscrp"


def _marker_order(marker: object) -> tuple[int, str]:
    """hs-CRP first, then standard CRP, then the other markers by name."""
    m = str(marker)
    return (CRP_MARKERS.index(m) if m in CRP_MARKERS else len(CRP_MARKERS), m)


@dataclass
class PersonSummary:
    person_id: str
    sex: str | None = None
    age: float | None = None
    # The headline CRP marker's draws, plus the other CRP marker's acute draws (an infection is
    # shown whichever assay saw it, and starts the washout of both).
    crp: pl.DataFrame = field(default_factory=pl.DataFrame)
    headline: str = CATEGORY_MARKER
    all_draws: pl.DataFrame = field(default_factory=pl.DataFrame)
    diet: pl.DataFrame = field(default_factory=pl.DataFrame)
    trends: list[dict[str, Any]] = field(default_factory=list)
    trend: dict[str, Any] = field(default_factory=dict)
    findings_df: pl.DataFrame = field(default_factory=pl.DataFrame)
    n_findings: int = 0
    # The significant findings, in `_sorted_findings` order (the index shows them).
    significant: list[dict[str, Any]] = field(default_factory=list)
    unmapped: pl.DataFrame = field(default_factory=pl.DataFrame)
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
    windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    sufficiency: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Each frame's schema and row hashes, fed to the page and section keys (`_hash_value`).
    row_hashes: dict[str, bytes] = field(default_factory=dict, repr=False)

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
    draws: pl.DataFrame | None,
    trends: pl.DataFrame | None,
    findings: pl.DataFrame | None,
    unmapped: pl.DataFrame | None,
    windows: pl.DataFrame | None = None,
    sufficiency: pl.DataFrame | None = None,
    freshness: list[dict[str, Any]] | None = None,
    crp: pl.DataFrame | None = None,
    row_hashes: dict[str, bytes] | None = None,
) -> PersonSummary:
    """One person's summary from their rows of each table. `crp` is their CRP draws in time
    order, when the caller has sorted everyone's at once; otherwise they are taken from `draws`.
    `row_hashes` are frames' hashes for the page key, when the caller hashed everyone's at once
    (`_split`); the others are hashed when a key needs them."""
    s = PersonSummary(person_id=pid, row_hashes=dict(row_hashes or {}))
    s.windows = windows if windows is not None else pl.DataFrame(schema=SCHEMAS["exposure_windows"])
    s.sufficiency = (
        sorted(sufficiency.to_dicts(), key=lambda r: _marker_order(r.get("marker")))
        if sufficiency is not None
        else []
    )
    s.sources = freshness or []
    if person is not None and not person.is_empty():
        row = person.row(0, named=True)
        s.sex, s.age = row.get("sex"), row.get("age")
    all_draws = draws if draws is not None else pl.DataFrame(schema=SCHEMAS["marker_draws"])
    s.all_draws = all_draws
    s.crp = crp if crp is not None else _crp_draws(all_draws)
    if s.crp.height and not (s.crp.get_column("marker") == CATEGORY_MARKER).any():
        s.headline = "crp"
    s.diet = diet if diet is not None else pl.DataFrame(schema=SCHEMAS["diet_daily"])
    s.trends = trends.to_dicts() if trends is not None else []
    s.trend = next((t for t in s.trends if t.get("marker") == s.headline), {})
    s.findings_df = (
        findings if findings is not None else pl.DataFrame(schema=SCHEMAS["associations"])
    )
    s.n_findings = s.findings_df.height
    if s.n_findings and "status" in s.findings_df.columns:
        significant = s.findings_df.get_column("status") == "significant"
        if significant.any():
            # Sorting is stable: sorting the significant rows alone gives their order among all.
            s.significant = _sorted_findings(s.findings_df.filter(significant).to_dicts())
    s.unmapped = unmapped if unmapped is not None else pl.DataFrame()

    # Counts and the latest value are the headline marker's (the other CRP's acute draws are in
    # `s.crp` for the timeline only).
    crp = s.crp.filter(pl.col("marker") == s.headline) if s.crp.height else s.crp
    s.n_draws = crp.height
    # Counts of rows where a condition holds (null counts as not); a person has a few draws.
    reasons = crp.get_column("excluded_reason").to_list()
    acute = crp.get_column("acute").to_list()
    counts = {
        "chronic": sum(r is None and not a for r, a in zip(reasons, acute, strict=True)),
        "acute": sum(bool(a) or r == "acute" for r, a in zip(reasons, acute, strict=True)),
    }
    s.n_chronic = (
        int(s.trend["n_chronic"]) if is_num(s.trend.get("n_chronic")) else counts["chronic"]
    )
    s.n_acute = counts["acute"]
    if is_num(s.trend.get("latest_value")):
        s.latest_value = float(s.trend["latest_value"])
        s.latest_at = _date_text(s.trend.get("latest_at"))
        s.latest_acute = bool(s.trend.get("latest_acute"))
        s.latest_censored = s.trend.get("latest_censored")
    elif crp.height:
        last = crp.filter(pl.col("value").is_not_null()).tail(1).to_dicts()
        if last:
            s.latest_value = last[0]["value"]
            s.latest_at = _date_text(last[0].get("collected_at") or last[0].get("day"))
            s.latest_acute = bool(last[0].get("acute")) or last[0].get("excluded_reason") == "acute"
    if s.headline == CATEGORY_MARKER:
        s.category = s.trend.get("category") or _category_of(s.trend.get("baseline"))

    coverage = _diet_coverage(s.diet)
    if coverage is not None:
        s.first_day, s.last_day, s.days_logged, widest = coverage
        s.days_in_range = (s.last_day - s.first_day).days + 1
        if s.days_logged >= 2:
            s.longest_gap = max(0, widest - 1)
    s.dii_params = _dii_params_range(s.diet)
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


def _dii_params_range(diet: pl.DataFrame) -> tuple[int, int] | None:
    """Fewest and most DII parameters over the logged days that have a DII (None if none)."""
    if "dii_params" not in diet.columns or not diet["dii_params"].dtype.is_numeric():
        return None
    has_dii = ~np.isnan(diet.get_column("dii").cast(pl.Float64).to_numpy())
    counts = diet.get_column("dii_params").cast(pl.Float64).to_numpy()
    counts = counts[_flags(diet.get_column("logged")) & has_dii]
    counts = counts[~np.isnan(counts)]
    return (int(counts.min()), int(counts.max())) if counts.size else None


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


def _flags(flags: pl.Series) -> np.ndarray:
    """A Boolean column as a numpy bool array, null as False (filled only when there is a null:
    filling runs a query, and `_normalise` leaves the diet's `logged` flags without nulls)."""
    if flags.null_count():
        flags = flags.fill_null(False)
    return flags.to_numpy().astype(bool, copy=False)


def _diet_coverage(diet: pl.DataFrame) -> tuple[date, date, int, int] | None:
    """(first day, last day, days with a log, widest step in days between logged days) of a
    person's diet days; None without a day. In numpy for Date days, as a query otherwise."""
    numbers = charts._date_numbers(diet.get_column("day"))
    logged = diet.get_column("logged")
    if numbers is not None and isinstance(logged.dtype, pl.Boolean):
        day_numbers, has_day = numbers
        if not has_day.any():
            return None
        days = day_numbers[has_day]
        on_log = np.unique(days[_flags(logged)[has_day]])
        widest = int(np.diff(on_log).max()) if on_log.size >= 2 else 0
        first, last = (
            date.fromordinal(charts._EPOCH_ORDINAL + int(x)) for x in (days.min(), days.max())
        )
        return first, last, int(on_log.size), widest
    d = diet.select("day", "logged").filter(pl.col("day").is_not_null())
    lo_day, hi_day = (d["day"].min(), d["day"].max()) if d.height else (None, None)
    if not isinstance(lo_day, date) or not isinstance(hi_day, date):
        return None
    logged_days = pl.col("day").filter(pl.col("logged")).unique().sort()
    n_logged, widest = d.select(
        logged_days.len().alias("n"),
        logged_days.diff().dt.total_days().drop_nulls().max().alias("widest"),
    ).row(0)
    return lo_day, hi_day, n_logged, int(widest) if is_num(widest) else 0


# --------------------------------------------------------------------------------------------
# Data sufficiency and stale sources


def sufficiency_short(row: dict[str, Any]) -> str:
    """One line: how many more draws before a 50% (and a 20%) change could be detected."""
    m20, m50 = row.get("more_draws_20pct"), row.get("more_draws_50pct")
    if is_num(m50) and not is_num(m20) and row.get("advice"):
        # The 20% change needs more draws than the lookup table goes to (see sufficiency.py).
        return f"about {int(m50)} more draws to detect a 50% change (a 20% change is out of reach)"
    if not is_num(m20) or not is_num(m50):
        return str(row.get("advice") or "no estimate yet")
    if m20 == 0:
        return "enough draws to detect a 20% change"
    if m50 == 0:
        return f"enough to detect a 50% change; about {int(m20)} more draws for a 20% change"
    return f"about {int(m50)} more draws to detect a 50% change ({int(m20)} for a 20% change)"


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


def run_time(run_info: dict[str, str]) -> datetime:
    """The run's time as naive UTC (from run_info["run_at"]; now when missing or unreadable)."""
    text = (run_info.get("run_at") or "").strip()
    for fmt in ("%Y-%m-%d %H:%M UTC", "%Y-%m-%d %H:%M:%S UTC"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        at = datetime.fromisoformat(text.removesuffix(" UTC").replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC).replace(tzinfo=None)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _freshness_frame(d: DashboardInputs) -> pl.DataFrame:
    """source_freshness, with the newest file per source filled in from ingest_files."""
    files = (
        d.ingest_files.filter(pl.col("source").is_not_null())
        .group_by("source")
        .agg(pl.col("modified_at").max().alias("_file_at"))
    )
    fresh = d.source_freshness.filter(pl.col("source").is_not_null())
    # Sources known only from their files (no dated rows) are still checked by file age.
    files_only = files.join(fresh.select("source").unique(), on="source", how="anti").select(
        "source",
        pl.lit(None, pl.String).alias("person_id"),
        pl.col("_file_at").alias("newest_file_at"),
        pl.lit(None, pl.Date).alias("latest_day"),
    )
    dated = (
        fresh.join(files, on="source", how="left")
        .with_columns(newest_file_at=pl.coalesce(pl.col("newest_file_at"), pl.col("_file_at")))
        .select(files_only.columns)
    )
    return pl.concat([dated, files_only])


def source_status(d: DashboardInputs, now: datetime) -> list[dict[str, Any]]:
    """Freshness of every source (newest file, latest data day), stale ones first."""
    fresh = _freshness_frame(d)
    if fresh.is_empty():
        return []
    per_source = (
        fresh.group_by("source")
        .agg(pl.col("newest_file_at").max(), pl.col("latest_day").max())
        .sort("source")
    )
    out = [
        source_freshness_status(
            r["newest_file_at"],
            r["latest_day"],
            now,
            str(r["source"]),
            str(r["source"]) in d.demo_sources,
        )
        for r in per_source.to_dicts()
    ]
    return sorted(out, key=lambda r: (not r["stale"], r["source"]))


def _person_sources(d: DashboardInputs, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per person, the freshness of each source that holds their data."""
    fresh = _freshness_frame(d).filter(pl.col("person_id").is_not_null())
    out: dict[str, list[dict[str, Any]]] = {}
    if fresh.is_empty():
        return out
    per = fresh.group_by("person_id", "source").agg(
        pl.col("newest_file_at").max(), pl.col("latest_day").max()
    )
    for r in per.sort("person_id", "source").to_dicts():
        source = str(r["source"])
        out.setdefault(str(r["person_id"]), []).append(
            source_freshness_status(
                r["newest_file_at"], r["latest_day"], now, source, source in d.demo_sources
            )
        )
    return out


def _freshness_table(rows: list[dict[str, Any]], day_label: str) -> str:
    if not rows:
        return empty("No source has been read yet.")
    body = []
    classes = []
    for r in rows:
        file_txt = (
            f"{r['newest_file_at']:%Y-%m-%d} ({r['file_age']} days before this run)"
            if r["newest_file_at"] is not None
            else "unknown"
        )
        day_txt = (
            f"{r['latest_day']} ({r['data_age']} days before this run)"
            if r["latest_day"] is not None
            else "no dated data"
        )
        if r.get("demo"):
            ends = f" (ends {r['latest_day']})" if r["latest_day"] is not None else ""
            status = esc(f"demo data{ends}, not checked for freshness")
        elif r["stale"]:
            status = '<span class="badge c-high">stale</span> ' + esc("; ".join(r["reasons"]))
        else:
            status = '<span class="badge c-low">up to date</span>'
        body.append([esc(r["source"]), esc(file_txt), esc(day_txt), status])
        classes.append("")
    return table(["Source", "Newest file", day_label, "Freshness"], body) + (
        f'<p class="muted">A source is stale when its newest file, or its latest day of data, is '
        f"more than {STALE_AFTER_DAYS} days older than this run: drop a newer export into "
        "data/raw/ (or remove the source from sources.yaml when it has ended). Sources marked "
        "<code>demo: true</code> in sources.yaml are a fixed sample and are not checked.</p>"
    )


def _trend_html(s: PersonSummary) -> str:
    t = s.trend
    slope = t.get("slope_pct_per_year")
    if is_num(slope):
        return (
            f"{esc(fmt_pct(slope))}/year "
            f'<span class="muted">(95% CI {esc(fmt_pct(t.get("slope_ci_low")))} to '
            f"{esc(fmt_pct(t.get('slope_ci_high')))}, {s.n_chronic} chronic draws)</span>"
        )
    return f'<span class="muted">not enough draws ({s.n_chronic} chronic)</span>'


def _latest_html(s: PersonSummary) -> str:
    if s.latest_value is None:
        return '<span class="muted">no CRP yet</span>'
    return (
        f"{esc(marker_label(s.headline))} {esc(fmt_latest(s.latest_value, s.latest_censored))} "
        "mg/L "
        f'<span class="muted">on {esc(s.latest_at)}</span>'
        + (" " + category_badge(None, acute=True) if s.latest_acute else "")
    )


def _category_html(s: PersonSummary) -> str:
    """The hs-CRP risk category; a standard CRP says why it has none."""
    if s.headline != CATEGORY_MARKER:
        return (
            '<span class="muted">standard CRP: no cardiovascular risk category (the categories '
            "need a high-sensitivity assay)</span>"
        )
    return category_badge(s.category) + " hs-CRP risk category"


def logged_rule_text(diet: pl.DataFrame) -> str:
    """How each day's logged status was decided (diet_daily.logged_rule), with the days logged
    under each rule, so "0 days logged" says why: e.g. "daily total (energy at least 800 kcal):
    0 of 29 days"."""
    if "logged_rule" not in diet.columns or diet.is_empty():
        return "n/a"
    rules = diet.get_column("logged_rule").to_list()
    logged = _flags(diet.get_column("logged")).tolist()
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


def _coverage_html(s: PersonSummary) -> str:
    if s.days_in_range:
        pct = 100 * s.days_logged / s.days_in_range
        diet = f"{s.days_logged} / {s.days_in_range} days logged ({pct:.0f}%)"
    else:
        diet = "no diet log"
    return (
        f"{esc(diet)}<br>{s.n_draws} {esc(marker_label(s.headline))} draws "
        f"({s.n_chronic} chronic, {s.n_acute} acute)"
    )


# --------------------------------------------------------------------------------------------
# Shared page pieces


def _global_quality(d: DashboardInputs, sources: list[dict[str, Any]] | None = None) -> list[str]:
    """Pipeline-wide data-quality warnings (plain text)."""
    out = [
        f"source {r['source']} looks stale: {'; '.join(r['reasons'])}"
        for r in (sources or [])
        if r["stale"]
    ]
    rej = d.rejected_summary
    total = int(rej["n"].sum() or 0) if rej.height else 0
    if total:
        out.append(f"{total:,} input rows were rejected (reasons under Data quality on the index)")
    files = d.ingest_files
    bad = files.filter((pl.col("status") == "error") | pl.col("error").is_not_null()).height
    if bad:
        out.append(f"{bad} input file(s) failed to load")
    dup = int(files["rows_duplicate"].sum() or 0) if files.height else 0
    if dup:
        out.append(f"{dup:,} duplicate rows were skipped")
    n_unmapped = d.unmapped_foods["food"].n_unique() if d.unmapped_foods.height else 0
    if n_unmapped:
        out.append(f"{n_unmapped:,} food names have no gut-food category yet")
    return out


def _warn_list(items: list[str]) -> str:
    if not items:
        return '<span class="ok">none</span>'
    return '<ul class="warnlist">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _unmapped_table(unmapped: pl.DataFrame, limit: int = 25) -> str:
    if unmapped.is_empty():
        return empty("No foods without a category reported.")
    top = unmapped.sort(["energy_share", "entries"], descending=True, nulls_last=True).head(limit)
    rows = [
        [
            esc(r["food"]) if r["food"] else '<span class="muted">(no food name)</span>',
            fmt_int(r["entries"]),
            esc(f"{r['energy_kcal']:,.0f}") if is_num(r["energy_kcal"]) else "n/a",
            esc(fmt_pct(100 * r["energy_share"], signed=False))
            if is_num(r["energy_share"])
            else "n/a",
            f"<code>{esc(override_line(r['food']))}</code>" if r["food"] else "",
        ]
        for r in top.to_dicts()
    ]
    more = (
        f'<p class="muted">Showing the top {limit} of {unmapped.height:,} by energy.</p>'
        if unmapped.height > limit
        else ""
    )
    return (
        table(
            ["Food (no category yet)", "Entries", "kcal", "Share of energy", "Line to add"],
            rows,
            num_cols=(1, 2, 3),
        )
        + more
    )


def _data_window(d: DashboardInputs) -> str | None:
    days = [
        x
        for x in (
            d.diet_daily["day"].min(),
            d.diet_daily["day"].max(),
            d.marker_draws["day"].min(),
            d.marker_draws["day"].max(),
        )
        if isinstance(x, date)
    ]
    if not days:
        return None
    return f"{min(days).isoformat()} to {max(days).isoformat()}"


def _footer(d: DashboardInputs) -> str:
    window = d.run_info.get("data_window")
    return footer(d.run_info, window if window else _data_window(d))


def _heading(title: str, crumbs: str, meta: str = "") -> str:
    meta_html = f'<div class="meta">{meta}</div>' if meta else ""
    return f'<div class="crumbs">{crumbs}</div><h1>{esc(title)}</h1>{meta_html}'


def _fig(fig: Any, div_id: str, missing: str) -> str:
    if fig is None:
        return empty(missing)
    return f'<div class="fig">{charts.figure_html(fig, div_id)}</div>'


# --------------------------------------------------------------------------------------------
# Person page


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
            "Latest change vs previous", '<span class="muted">n/a</span>', "needs two chronic draws"
        )
    return (
        '<div class="cards">'
        + "".join(
            [
                card("Latest CRP", _latest_html(s), _category_html(s)),
                card(
                    "Chronic baseline",
                    f"{esc(fmt_value(baseline))} mg/L"
                    if is_num(baseline)
                    else '<span class="muted">n/a</span>',
                    f"from {s.n_chronic} chronic draws (acute draws excluded)",
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
                    f"{len(s.significant)} significant",
                    f"of {s.n_findings} pairs tested; {esc(CAVEAT)}",
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
    rows = [
        [
            "Days with a diet log",
            esc(f"{s.days_logged} of {s.days_in_range}") if s.days_in_range else "none",
        ],
        ["How a day counts as logged", esc(logged_rule_text(s.diet))],
        [
            "Diet date range",
            esc(f"{s.first_day} to {s.last_day}") if s.first_day else "none",
        ],
        [
            "Longest gap without a log",
            esc(f"{s.longest_gap} days") if s.days_logged >= 2 else "n/a",
        ],
        ["CRP draws", esc(f"{s.n_draws} total: {s.n_chronic} chronic, {s.n_acute} acute")],
        ["Excluded as post-acute washout", str(counts["washout"])],
        ["Merged into a visit (draws ≤14 days apart averaged)", str(counts["merged"])],
        ["Below the detection limit", str(counts["below_lod"])],
    ]
    if "dii_params" in s.diet.columns and s.diet["dii_params"].dtype.is_numeric():
        med = _logged_median(s.diet, "dii_params")
        if med is not None:
            rows.append(["DII parameters available (median per day)", esc(f"{med:.0f} of 45")])
    if s.unmapped_share is not None:
        rows.append(
            [
                "Energy from foods without a category",
                esc(fmt_pct(100 * s.unmapped_share, signed=False)),
            ]
        )
    parts = [
        "<h3>Warnings for this person</h3>",
        _warn_list(s.warnings),
        table(["Check", "Value"], rows),
    ]
    if global_warnings:
        parts.append(
            "<h3>Pipeline-wide</h3>"
            + _warn_list(global_warnings)
            + '<p class="muted">Details per file and reason are on the '
            + f'<a href="{INDEX}#quality">index page</a>.</p>'
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


def _logged_median(diet: pl.DataFrame, column: str) -> float | None:
    """The median of a numeric column over the logged days (nulls left out); None if none."""
    logged = _flags(diet.get_column("logged"))
    values = diet.get_column(column).cast(pl.Float64).to_numpy()[logged]
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None


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
            fmt_int(t.get("n_draws")),
            fmt_int(t.get("n_chronic")),
        ]
        for t in rows
    ]
    return "<h2>Other markers</h2>" + table(
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


def _sentences(
    rows: list[dict[str, Any]], dii_params: tuple[int, int] | None = None
) -> Callable[[dict[str, Any]], str]:
    """`finding_sentence`, worked out once per row of `rows` (rows must outlive the function)."""
    known = {id(r): finding_sentence(r, dii_params) for r in rows}

    def sentence(row: dict[str, Any]) -> str:
        text = known.get(id(row))
        return finding_sentence(row, dii_params) if text is None else text

    return sentence


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
        fig = charts.lag_heatmap(rows, f"{marker_label(m)}: % change per unit, by exposure window")
        parts.append(_fig(fig, f"lag-{k}", f"No estimable associations for {marker_label(m)} yet."))
        if fig is None:
            continue
        cells = charts.cell_scatter_data(
            rows,
            s.windows,
            s.all_draws,
            m,
            marker_label(m),
            marker_unit(m),
            {
                charts.cell_key(r["feature"], r["window_days"]): _cell_title(r, sentence)
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
            f'style="height:{charts.SCATTER_LAYOUT["height"]}px;width:100%"></div></div>'
        )
    return "".join(parts), charts.cell_data_script(cell_maps)


# Sections of a person page that are copied from the page's previous version when what they show
# is unchanged: the findings and the lag scan, about half of a page's rendering, depend on the
# person's draws and associations only, so a night that adds a diet day keeps them. Each is
# wrapped in comments naming it and the key of its inputs; user text is escaped and JSON has "<"
# as \u003c, so the end comment cannot occur inside a section.
_SECTION_START = "<!--gs:"
_SECTION_HEAD = re.compile(r"([a-z]+) ([0-9a-f]{64})")


def _section(name: str, key: str, html: str) -> str:
    return f"{_SECTION_START}{name} {key}-->{html}<!--/gs:{name}-->"


def page_sections(html: str) -> dict[str, tuple[str, str]]:
    """The kept sections of a written person page: name -> (key, html).

    Found with str.find: a regular expression over a page of a few hundred kB took longer.
    """
    out: dict[str, tuple[str, str]] = {}
    at = html.find(_SECTION_START)
    while at >= 0:
        head_end = html.find("-->", at)
        head = _SECTION_HEAD.fullmatch(html, at + len(_SECTION_START), max(head_end, 0))
        if head is None:
            break
        close = f"<!--/gs:{head.group(1)}-->"
        end = html.find(close, head_end)
        if end < 0:
            break
        out[head.group(1)] = (head.group(2), html[head_end + 3 : end])
        at = html.find(_SECTION_START, end + len(close))
    return out


def _kept(
    kept: dict[str, tuple[str, str]], names: tuple[str, ...], key: str
) -> tuple[str, ...] | None:
    """The named sections' html from the previous page when all have this key, else None."""
    found = [kept.get(n) for n in names]
    if all(f is not None and f[0] == key for f in found):
        return tuple(f[1] for f in found if f is not None)
    return None


def _section_key(s: PersonSummary, names: tuple[str, ...]) -> str:
    """A hash of the named summary fields, this code and the Polars version (see
    `person_page_key`); unique when a field cannot be hashed, so the section is built."""
    digest = hashlib.sha256(reports_code_fingerprint().encode())
    try:
        for name in names:
            _hash_value(digest, s, name, getattr(s, name))
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return hashlib.sha256(str(time.time_ns()).encode()).hexdigest()
    return digest.hexdigest()


def render_person_page(
    s: PersonSummary,
    d: DashboardInputs,
    global_warnings: list[str],
    kept: dict[str, tuple[str, str]] | None = None,
) -> str:
    """A person's page. `kept` holds the sections of the page's previous version (see
    `page_sections`): a section whose inputs hash to the same key is copied, not built again."""
    pid = s.person_id
    details = []
    if s.sex:
        details.append(f"sex {s.sex}")
    if is_num(s.age):
        details.append(f"age {float(s.age):.0f}")
    crumbs = f'<a href="{INDEX}">← All people</a> · <a href="{COHORT}">Cohort</a>'
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
    fig = charts.crp_timeline(
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
    kept = kept or {}
    # Each finding's sentence is shown in the findings table and again as its cell's title;
    # worked out once, and only when one of those sections is built.
    sentences: list[Callable[[dict[str, Any]], str]] = []

    def sentence(row: dict[str, Any]) -> str:
        if not sentences:
            sentences.append(_sentences(s.findings, s.dii_params))
        return sentences[0](row)

    findings_key = _section_key(s, ("findings_df", "sufficiency", "dii_params"))
    findings_html = _kept(kept, ("findings",), findings_key) or (
        _findings_block(s.findings, "this person", sentence)
        + '<h3 id="sufficiency">Is there enough data?</h3>'
        + _sufficiency_html(s),
    )
    body.append(_section("findings", findings_key, findings_html[0]))

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
    # The lag scan and the data behind its cells need the findings, the windows and the draws
    # only: a new diet day after the last draw leaves them as they were.
    lag_key = _section_key(s, ("findings_df", "windows", "all_draws", "dii_params"))
    lag_html, cells_html = _kept(kept, ("lag", "cells"), lag_key) or _lag_scan(s, sentence)
    body.append(_section("lag", lag_key, lag_html))

    body.append("<h2>Logging coverage</h2>")
    body.append(
        '<p class="lead">Which days have a diet log (windows before a draw need 80% of their '
        "days logged), and below it one food group day by day: pick another in the dropdown. "
        "Blank days were not logged.</p>"
    )
    draw_days = [x for x in s.crp["day"].to_list() if isinstance(x, date)]
    fig = charts.coverage_calendar(
        s.diet, draw_days, "Days with a diet log (green) and blood draws (red)"
    )
    body.append(_fig(fig, "calendar", "No diet log for this person yet."))
    fig = charts.category_calendar(s.diet, "Daily intake", dii_params=dii_params_text(s.dii_params))
    body.append(_fig(fig, "category-calendar", "No food-group intake logged for this person yet."))

    body.append('<h2 id="quality">Data quality</h2>')
    body.append(_person_quality(s, d, global_warnings))
    body.append(_other_markers(s))
    # The script that draws a cell's scatter goes last, after the elements it reads.
    body.append(_section("cells", lag_key, cells_html))
    return page(f"gutsignal: {pid}", heading, "".join(body), _footer(d))


# --------------------------------------------------------------------------------------------
# Index page


def _sufficiency_card(s: PersonSummary) -> str:
    link = '<a href="#sufficiency">how many draws, and why</a>'
    if not s.sufficiency:
        return card("Enough data?", '<span class="muted">n/a</span>', "no chronic draws yet")
    r = s.sufficiency[0]
    m50 = r.get("more_draws_50pct")
    value = (
        "enough for a 50% change"
        if m50 == 0
        else f"{fmt_int(m50)} more draws"
        if is_num(m50)
        else "n/a"
    )
    sub = esc(f"{marker_label(r.get('marker'))}: {sufficiency_short(r)}") + "; " + link
    return card("Enough data?", esc(value), sub)


def _sufficiency_cell(s: PersonSummary) -> str:
    if not s.sufficiency:
        return '<span class="muted">no chronic draws yet</span>'
    r = s.sufficiency[0]
    return esc(f"{marker_label(r.get('marker'))}: {sufficiency_short(r)}")


def _between_n(d: DashboardInputs) -> int:
    """People in the between-person models: cross-sectional cohorts (one draw per person, e.g.
    NHANES) have no person pages, so they are counted by the largest model's n."""
    n = d.associations.filter(_primary_between())["n"].max()
    return int(n) if is_num(n) else 0


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
        f'<a href="{COHORT}">Cohort view →</a>',
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
            '<div class="notice"><b>Data-quality warnings</b>'
            + _warn_list(global_warnings)
            + "</div>"
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
                    f'<a href="{esc(person_page_name(s.person_id))}">{esc(s.person_id)}</a>',
                    _latest_html(s),
                    _category_html(s),
                    _trend_html(s),
                    _coverage_html(s),
                    _sufficiency_cell(s),
                    top,
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
    return page("gutsignal dashboards", heading, "".join(body), _footer(d))


def _rejected_table(d: DashboardInputs) -> str:
    rej = d.rejected_summary
    if rej.is_empty():
        return empty("No rows were rejected.")
    # Grouped by source, reason and column: one bad setting is one line with its count, and
    # the example lines say where to look.
    return table(
        ["Source", "Reason", "Column", "Rows", "Example lines"],
        [
            [
                esc(r["source"]),
                esc(r["reason"]),
                esc(r["column"] or "-"),
                fmt_int(r["n"]),
                esc(r["examples"] or ""),
            ]
            for r in rej.sort("n", descending=True, nulls_last=True, maintain_order=True).to_dicts()
        ],
        num_cols=(3,),
    )


def _files_section(d: DashboardInputs) -> str:
    files = d.ingest_files
    if files.is_empty():
        return "<h3>Input files</h3>" + empty("No input files have been read yet.")
    files = files.with_columns(
        _bad=((pl.col("status") == "error") | pl.col("error").is_not_null()).fill_null(False)
    ).sort(["_bad", "source", "path"], descending=[True, False, False], nulls_last=True)
    rows = []
    classes = []
    for r in files.to_dicts():
        status = esc(r["status"] or "unknown")
        if r["_bad"]:
            status = f'<span class="badge c-high">{status}</span>'
        rows.append(
            [
                esc(r["source"]),
                f"<code>{esc(r['path'])}</code>",
                fmt_int(r["rows_read"]),
                fmt_int(r["rows_loaded"]),
                fmt_int(r["rows_rejected"]),
                fmt_int(r["rows_duplicate"]),
                status,
                esc(r["error"] or ""),
            ]
        )
        classes.append("")
    return "<h3>Input files</h3>" + table(
        ["Source", "File", "Read", "Loaded", "Rejected", "Duplicate", "Status", "Error"],
        rows,
        num_cols=(2, 3, 4, 5),
        row_classes=classes,
    )


# --------------------------------------------------------------------------------------------
# Cohort page


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
) -> str:
    """Per marker, a forest plot of each feature's best window and every row in a table. DII
    features carry the number of parameters behind the DIIs (`dii_params`: fewest and most)."""
    parts = []
    used = dii_params_text(dii_params)
    markers = sorted({str(r.get("marker")) for r in rows}, key=_marker_order)
    for k, m in enumerate(markers):
        mrows = [dict(r) for r in rows if str(r.get("marker")) == m]
        best = _best_window(mrows, used)
        fig = charts.forest_plot(
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
    return "".join(parts)


POOLED_COLUMNS = ["pooled_effect_pct", "pooled_ci_low_pct", "pooled_ci_high_pct"]


def _partial_pooling_section(assoc: pl.DataFrame, pseudonymise: bool) -> str:
    """Per significant pooled food (primary window): each person's own estimate beside the one
    partially pooled toward the cohort."""
    if not set(POOLED_COLUMNS) <= set(assoc.columns) or "window_role" not in assoc.columns:
        return ""
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
        return ""
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
    return (
        f"<h3>Each person's estimate, partially pooled {caveat()}</h3>"
        '<p class="lead">For the pooled findings: each person\'s own estimate (few draws, wide '
        "CI) and the same estimate shrunk toward the cohort's as far as the spread between "
        "people allows (empirical Bayes): the better guess for one person.</p>"
        + table(["Person", "Food", "Own estimate (95% CI)", "Partially pooled (95% CI)"], body)
    )


def _cohort_dii_params(summaries: list[PersonSummary]) -> tuple[int, int] | None:
    """Fewest and most DII parameters over everyone's logged days with a DII."""
    ranges = [s.dii_params for s in summaries if s.dii_params is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def render_cohort(
    summaries: list[PersonSummary], d: DashboardInputs, global_warnings: list[str]
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
    heading = _heading("Cohort view", f'<a href="{INDEX}">← All people</a>', esc(meta))
    pooled = assoc.filter(
        (pl.col("scope") == "cohort") & ~pl.col("method").fill_null("").is_in(BETWEEN_METHODS)
    ).to_dicts()
    draws = _crp_draws(d.marker_draws, "person_id")
    with_crp = [s for s in summaries if s.n_draws]
    body = [
        '<div class="cards">'
        + card(
            "People followed over time", fmt_int(len(summaries)), f"{len(with_crp)} with CRP draws"
        )
        + (
            card(
                "People in between-person models",
                fmt_int(between_n),
                "cross-sectional cohort: the largest model's n (one draw per person)",
            )
            if between_n
            else ""
        )
        + card(
            "CRP draws of people followed",
            fmt_int(draws.height),
            esc(
                f"{sum(s.n_chronic for s in summaries):,} chronic, "
                f"{sum(s.n_acute for s in summaries):,} acute"
            ),
        )
        + card(
            "Days with a diet log",
            fmt_int(sum(s.days_logged for s in summaries)),
            esc(f"of {sum(s.days_in_range for s in summaries):,} person-days in range"),
        )
        + card(
            "Pooled findings",
            fmt_int(sum(r.get("status") == "significant" for r in pooled + between)),
            esc(f"significant of {len(pooled) + len(between)} tested; {CAVEAT}"),
        )
        + "</div>",
        '<div class="notice">Pooled estimates combine everyone\'s data; results are '
        f"<b>{esc(CAVEAT)}</b>, "
        "and a pooled effect need not hold for any one person.</div>",
    ]
    if global_warnings:
        body.append(
            '<div class="notice"><b>Data-quality warnings</b>'
            + _warn_list(global_warnings)
            + f' See the <a href="{INDEX}#quality">index page</a>.</div>'
        )

    body.append(f"<h2>Pooled within-person estimates {caveat()}</h2>")
    body.append(
        '<p class="lead">For each food the forest plot shows its primary window (its one test; '
        "its label says which). Each estimate is adjusted for the core gut foods, energy and a "
        "time trend (each finding lists what), and foods explained by what they are eaten with "
        "are listed apart. The table lists every window: the others describe the lag "
        "shape.</p>"
    )
    body.append(
        _forest_section(pooled, "pooled estimates", "forest", "n", _cohort_dii_params(summaries))
        if pooled
        else empty(
            "No pooled (cohort) estimates yet: they need several people with repeated draws."
        )
    )
    body.append(_partial_pooling_section(assoc, d.pseudonymise_cohort))
    if between:
        body.append(f"<h2>Between-person (cross-sectional) estimates {caveat()}</h2>")
        body.append(
            '<p class="lead">People with more of a feature compared with people with less, with '
            "covariates (one draw per person, e.g. NHANES). These describe differences between "
            "people, not what changes within one person.</p>"
        )
        if any(r.get("method") == "survey_wls" for r in between):
            body.append(
                '<p class="lead">Design-based: weighted by the survey weights, with variances '
                "over the survey's strata and PSUs (Taylor linearisation), so they describe the "
                "population the survey represents. Each row's note gives the unweighted estimate "
                "on the same people.</p>"
            )
        body.append(
            _forest_section(
                between, "between-person estimates", "between", "people", d.between_dii_params
            )
        )

    body.append("<h2>CRP over time, per person</h2>")
    repeated = sorted(
        (s for s in with_crp if s.n_draws >= 2), key=lambda s: (-s.n_draws, s.person_id)
    )
    shown = repeated[:MAX_SMALL_MULTIPLES]
    if len(repeated) > len(shown):
        body.append(
            f'<p class="muted">Showing the {len(shown)} people with the most draws '
            f"of {len(repeated)}; "
            "every person has their own page.</p>"
        )
    if d.pseudonymise_cohort:
        ordered = sorted(s.person_id for s in summaries)
        alias = {pid: f"Person {i + 1:02d}" for i, pid in enumerate(ordered)}
        draws = draws.with_columns(pl.col("person_id").replace_strict(alias, default="Person ?"))
        shown_ids = [alias[s.person_id] for s in shown]
    else:
        shown_ids = [s.person_id for s in shown]
    fig = charts.crp_small_multiples(draws, shown_ids, "CRP (mg/L, log scale)")
    body.append(_fig(fig, "small-multiples", "No one has two or more CRP draws yet."))
    if d.pseudonymise_cohort:
        body.append('<p class="muted">Person ids are pseudonymised on this page.</p>')
    elif summaries:
        links = " · ".join(
            f'<a href="{esc(person_page_name(s.person_id))}">{esc(s.person_id)}</a>'
            for s in summaries
        )
        body.append(f'<p class="muted">Person pages: {links}</p>')
    return page("gutsignal: cohort", heading, "".join(body), _footer(d))


# --------------------------------------------------------------------------------------------
# Writing


def _write_plotly_js(out_dir: Path) -> Path:
    """One shared copy of plotly.js; rewritten only when the bundled version changes."""
    path = out_dir / PLOTLY_JS
    payload = get_plotlyjs().encode("utf-8")
    try:
        if path.stat().st_size == len(payload) and path.read_bytes() == payload:
            return path
    except OSError:
        pass
    atomic_write(path, payload)
    return path


def _clean_out_dir(out_dir: Path, keep: set[str]) -> None:
    """Drop pages of people no longer in the data, and temp files left by a crashed run.

    Only names this module writes are touched, so other files in the folder are safe. Temp files
    younger than an hour may belong to a concurrent run and are left alone.
    """
    for old in out_dir.glob(f"{PERSON_PREFIX}*.html"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    cutoff = time.time() - 3600
    for tmp in out_dir.glob(".*.tmp"):
        base = tmp.name[1:].split(".tmp")[0]
        ours = base.startswith((PERSON_PREFIX, INDEX, COHORT, PLOTLY_JS))
        try:
            if ours and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def _person_ids(d: DashboardInputs) -> list[str]:
    ids: set[str] = set()
    for df in (d.persons, d.diet_daily, d.marker_draws, d.marker_trends):
        ids.update(str(x) for x in df["person_id"].drop_nulls().unique().to_list())
    ids.update(
        str(x)
        for x in d.associations.filter(pl.col("scope") == "person")["person_id"]
        .drop_nulls()
        .unique()
        .to_list()
    )
    return sorted(ids, key=lambda x: (x.casefold(), x))


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
    list[dict[str, Any]] | None,
    pl.DataFrame | None,
    dict[str, bytes] | None,
]


def _page_diet_columns(columns: list[str]) -> list[str]:
    """The diet columns a person page reads: the day and its logging, the food-group servings,
    fibre and the DII. Nutrients are on no page: left out, a change in them renders nothing and
    each person's share of the table is half the size to hash and to send to a worker."""
    shown = {"person_id", "day", "logged", "logged_rule", "entries", "fiber_g", "dii", "dii_params"}
    return [c for c in columns if c in shown or c.endswith("_servings")]


def diet_columns_shown(columns: list[str]) -> list[str]:
    """The diet_daily columns any page reads: a person page's, and energy (the index's total, and
    `_normalise`'s `logged` for a table without one). The loader reads only these."""
    return [c for c in columns if c == "energy_kcal" or _page_diet_columns([c])]


@dataclass(frozen=True)
class _Split:
    """A table sorted by person, each person's rows in it (first row, number of rows), and the
    rows' hashes when page keys hash the table (see `_hash_value`)."""

    df: pl.DataFrame
    rows: dict[str, tuple[int, int]]
    hashes: np.ndarray | None


def _split(df: pl.DataFrame, hashed: bool = False) -> _Split:
    """Split by person once (filtering per person would be quadratic for big cohorts).

    Rows without a person are dropped; each person's rows keep their order. The frames come
    sorted by person, so a person's rows are a run of one id (partition_by ran one query per
    person to name its part). With `hashed`, the rows are hashed for everyone at once (hashing
    each person's part on its own cost half a millisecond a page): a row's hash depends on that
    row only, so a slice of the table's hashes is the part's.
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
    hashes = df.hash_rows().to_numpy() if hashed and rows else None
    return _Split(df, rows, hashes)


# The person-split tables, in `_summarise`'s argument order (its `freshness` goes between
# "sufficiency" and "crp"), each with the PersonSummary field whose page-key hash it gives.
_TABLE_FIELDS: dict[str, str | None] = {
    "persons": None,
    "diet": "diet",
    "draws": "all_draws",
    "trends": None,
    "findings": "findings_df",
    "unmapped": "unmapped",
    "windows": "windows",
    "sufficiency": None,
    "crp": None,  # derived from draws
}


def _split_tables(d: DashboardInputs) -> dict[str, _Split]:
    tables = {
        "persons": d.persons,
        "diet": d.diet_daily.select(_page_diet_columns(d.diet_daily.columns)),
        "draws": d.marker_draws,
        "trends": d.marker_trends,
        # Partially pooled estimates move with everyone's data: on a person's page they would
        # rewrite every page whenever anyone logs a day. The cohort page shows them instead.
        "findings": d.associations.filter(pl.col("scope") == "person").drop(
            POOLED_COLUMNS, strict=False
        ),
        "unmapped": d.unmapped_foods,
        "windows": d.exposure_windows.filter(pl.col("complete").fill_null(False)),
        "sufficiency": d.data_sufficiency,
        # Everyone's CRP draws in time order at once (`_crp_draws` per person was a query each).
        "crp": _crp_draws(d.marker_draws, "person_id"),
    }
    return {name: _split(df, hashed=_TABLE_FIELDS[name] is not None) for name, df in tables.items()}


@dataclass(frozen=True)
class _PersonRows:
    """Where a person's frames are in the split tables, and what is theirs besides: small
    enough to send to a page worker, which slices the tables it has mapped (`_mapped_table`)."""

    person_id: str
    rows: dict[str, tuple[int, int]]
    sources: list[dict[str, Any]] | None
    row_hashes: dict[str, bytes]


def _person_rows(
    splits: dict[str, _Split], ids: list[str], sources: dict[str, list[dict[str, Any]]]
) -> list[_PersonRows]:
    schemas = {name: repr(split.df.schema).encode() for name, split in splits.items()}
    people = []
    for pid in ids:
        rows = {name: split.rows[pid] for name, split in splits.items() if pid in split.rows}
        row_hashes = {}
        for name, (start, length) in rows.items():
            field_name, hashes = _TABLE_FIELDS[name], splits[name].hashes
            if field_name is not None and hashes is not None:
                row_hashes[field_name] = schemas[name] + hashes[start : start + length].tobytes()
        people.append(_PersonRows(pid, rows, sources.get(pid), row_hashes))
    return people


def _frames(person: _PersonRows, tables: dict[str, pl.DataFrame]) -> _PersonFrames:
    """A person's frames, sliced from the split tables (in memory, or mapped in a worker)."""

    def part(name: str) -> pl.DataFrame | None:
        at = person.rows.get(name)
        return None if at is None else tables[name].slice(*at)

    return (
        person.person_id,
        part("persons"),
        part("diet"),
        part("draws"),
        part("trends"),
        part("findings"),
        part("unmapped"),
        part("windows"),
        part("sufficiency"),
        person.sources,
        part("crp"),
        person.row_hashes,
    )


def _person_frames(d: DashboardInputs, now: datetime, ids: list[str]) -> list[_PersonFrames]:
    splits = _split_tables(d)
    tables = {name: split.df for name, split in splits.items()}
    return [_frames(p, tables) for p in _person_rows(splits, ids, _person_sources(d, now))]


def _stale_sources(d: DashboardInputs, now: datetime) -> frozenset[str]:
    return frozenset(r["source"] for r in source_status(d, now) if r["stale"])


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
    """Per-person summaries from normalised inputs (see `_normalise`)."""
    now = now or run_time(d.run_info)
    stale_everywhere = _stale_sources(d, now)
    return [_summary(frames, stale_everywhere) for frames in _person_frames(d, now, _person_ids(d))]


PAGES_MANIFEST = ".pages.json"  # person page -> person_page_key of its current content
# Dates and day counts in freshness texts move with the clock and with other people's data.
_CLOCK_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d+ days\b")
# Source-wide facts on a person page that change whenever anyone syncs, or every day.
_CLOCK_FIELDS = ("file_age", "data_age", "newest_file_at")


def _unclocked(text: str) -> str:
    return _CLOCK_TEXT.sub("#", text)


# Summary fields worked out from other fields (n_findings and significant from findings_df, trend
# from trends, crp from all_draws, row_hashes from the frames): hashing those covers them.
_DERIVED_FIELDS = frozenset({"trend", "crp", "n_findings", "significant", "row_hashes"})


def person_page_key(s: PersonSummary, d: DashboardInputs, global_warnings: list[str]) -> str:
    """A hash of what a person page shows, leaving out what moves with the clock.

    Included: the person's summary (frames row by row, everything else as JSON), the stale flags
    of their sources, the warnings, the rejected-row table, the footer's code version and the
    version of this code and of Polars (whose row hashes are stable only within a version).
    Left out: the run's time and data window, source ages, the source-wide newest file, and the
    dates and day counts inside freshness warnings. A page kept from an earlier run therefore
    shows those as of the run that wrote it (its footer says which), and it is rendered again when
    anything of the person's own changes or a source turns stale or fresh. Anything that cannot be
    hashed makes the key unique, so the page is rendered: when in doubt, render.
    """
    digest = hashlib.sha256(reports_code_fingerprint().encode())
    try:
        for f in fields(s):
            if f.name in _DERIVED_FIELDS:
                continue
            value = getattr(s, f.name)
            if f.name == "sources":
                value = [
                    {
                        **{k: v for k, v in r.items() if k not in _CLOCK_FIELDS},
                        "reasons": [_unclocked(x) for x in r["reasons"]],
                    }
                    for r in value
                ]
            if f.name == "warnings":
                value = [_unclocked(w) for w in value]
            _hash_value(digest, s, f.name, value)
        rejected = d.rejected_summary
        digest.update(repr(rejected.schema).encode())
        if rejected.height:
            digest.update(rejected.hash_rows().to_numpy().tobytes())
    except (TypeError, ValueError, KeyError, pl.exceptions.PolarsError):
        return f"unhashable-{time.time_ns()}"
    digest.update(json.dumps([_unclocked(w) for w in global_warnings]).encode())
    footer_info = {k: v for k, v in d.run_info.items() if k not in ("run_at", "data_window")}
    digest.update(json.dumps(footer_info, sort_keys=True).encode())
    return digest.hexdigest()


def _hash_value(digest: Any, s: PersonSummary, name: str, value: object) -> None:
    """Feed a field of `s` to a hash: a frame row by row (with its schema), else as JSON.

    A frame's row hashes are kept on `s`: the page key and the section keys share them.
    """
    digest.update(name.encode() + b"\0")
    if isinstance(value, pl.DataFrame):
        known = s.row_hashes
        if name not in known:
            rows = value.hash_rows().to_numpy().tobytes() if value.height else b""
            known[name] = repr(value.schema).encode() + rows
        digest.update(known[name])
    else:
        digest.update(json.dumps(value, default=str, sort_keys=True).encode())


@cache
def reports_code_fingerprint() -> str:
    here = Path(__file__).resolve().parent
    # The libraries whose output is in the pages: Polars (row hashes), plotly (its HTML around
    # each figure) and orjson (the figures' JSON).
    versions = [pl.__version__, plotly.__version__, orjson.__version__, charts._json_engine()]
    digest = hashlib.sha256(" ".join(versions).encode())
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no manifest (or a damaged one): every page is rendered
    return loaded if isinstance(loaded, dict) else {}


# Pages are written without an fsync each and synced together, where the OS offers a sync of
# everything (not on Windows: there each page is synced as it is written).
SYNC_ONCE = hasattr(os, "sync")
# Person pages are rendered in worker processes when there are at least this many people (and
# more than one CPU): below it, starting the workers costs more than it saves.
PARALLEL_MIN_PEOPLE = 50
# People per task sent to a worker: small enough to share the work out evenly, large enough
# that sending a task costs little next to rendering it.
PEOPLE_PER_TASK = 20


@dataclass(frozen=True)
class _PageJob:
    """What every person page shares, besides the person's own frames."""

    out_dir: Path
    run_info: dict[str, str]
    rejected_summary: pl.DataFrame
    global_warnings: list[str]
    stale_everywhere: frozenset[str]


@dataclass(frozen=True)
class _PageResult:
    summary: PersonSummary  # without its frames: the index and cohort pages read none
    name: str
    key: str
    written: bool


def _person_pages(
    people: list[_PersonFrames], job: _PageJob, previous: dict[str, str]
) -> list[_PageResult]:
    """Summarise each person, and render their page unless the manifest has it (`previous`).

    Runs in the writing process or in a worker; either way the page comes out the same.
    """
    # Person pages read only the run info and the rejected rows of the whole run.
    d = DashboardInputs(rejected_summary=job.rejected_summary, run_info=job.run_info)
    out = []
    for frames in people:
        s = _summary(frames, job.stale_everywhere)
        path = job.out_dir / person_page_name(s.person_id)
        key = person_page_key(s, d, job.global_warnings)
        render = previous.get(path.name) != key or not path.exists()
        if render:
            # Synced once for all pages before the manifest names them (`write_dashboards`).
            page_html = render_person_page(s, d, job.global_warnings, _old_sections(path))
            atomic_write(path, page_html, durable=not SYNC_ONCE)
        light = PersonSummary(
            **{f.name: getattr(s, f.name) for f in fields(s) if f.name not in _FRAME_FIELDS}
        )
        out.append(_PageResult(light, path.name, key, render))
    return out


def _old_sections(path: Path) -> dict[str, tuple[str, str]]:
    try:
        return page_sections(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}  # no page yet, or an unreadable one: every section is built


# Only person pages read these; dropping them keeps what returns from a worker small.
_FRAME_FIELDS = frozenset(
    {"crp", "all_draws", "diet", "findings_df", "unmapped", "windows", "row_hashes"}
)


def _pool_size(n_people: int, workers: int | None) -> int:
    """Worker processes for person pages; 0 renders them in this process."""
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on every platform
            workers = os.cpu_count() or 1
    if workers < 2 or n_people < PARALLEL_MIN_PEOPLE or multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a multiprocessing pool worker) may not start processes.
        return 0
    return min(workers, -(-n_people // PEOPLE_PER_TASK))


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _warm() -> None:
    """A no-op task: unpickling it imports this module in a new worker."""


@contextmanager
def _page_pool(size: int) -> Iterator[ProcessPoolExecutor | None]:
    if not size:
        yield None
        return
    # Spawned, not forked: a forked copy of a process that has run Polars can deadlock.
    pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"))
    try:
        # The workers fill the CPUs, so each runs Polars on one thread: with a thread pool per
        # worker they ran a third slower. A spawned worker reads the variable from the
        # environment it starts with, and each submit here starts one.
        with _environ(POLARS_MAX_THREADS="1"):
            for _ in range(size):
                pool.submit(_warm)  # starts the workers now, while this process gathers the data
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _share_tables(tables: dict[str, pl.DataFrame], directory: Path) -> dict[str, str]:
    """Write the split tables as uncompressed Arrow files for the page workers to map.

    Pickling each person's frames to a worker cost more CPU than rendering their page (ten small
    frames a person, 200 kB); a mapped file is read by both workers without a copy."""
    files = {}
    for name, df in tables.items():
        path = directory / f"{name}.arrow"
        df.write_ipc(path, compression="uncompressed")
        files[name] = str(path)
    return files


@lru_cache(maxsize=32)
def _mapped_table(path: str) -> pl.DataFrame:
    return pl.read_ipc(path, memory_map=True)


def _mapped_person_pages(
    files: dict[str, str], people: list[_PersonRows], job: _PageJob, previous: dict[str, str]
) -> list[_PageResult]:
    """`_person_pages` in a worker: the people's frames sliced from the mapped tables."""
    tables = {name: _mapped_table(path) for name, path in files.items()}
    return _person_pages([_frames(p, tables) for p in people], job, previous)


def _render_people(
    pool: ProcessPoolExecutor | None,
    workers: int,
    people: list[_PersonRows],
    tables: dict[str, pl.DataFrame],
    job: _PageJob,
    previous: dict[str, str],
    shared_dir: Path,
) -> list[_PageResult]:
    if pool is None:
        return _person_pages([_frames(p, tables) for p in people], job, previous)
    files = _share_tables(tables, shared_dir)
    results: list[_PageResult] = []
    pending: deque[Future[list[_PageResult]]] = deque()
    # A few tasks in flight per worker keep them busy without queueing every task at once.
    max_pending = 2 * workers
    for start in range(0, len(people), PEOPLE_PER_TASK):
        task = people[start : start + PEOPLE_PER_TASK]
        names = [person_page_name(p.person_id) for p in task]
        if len(pending) >= max_pending:
            results.extend(pending.popleft().result())
        pending.append(
            pool.submit(
                _mapped_person_pages,
                files,
                task,
                job,
                {n: previous[n] for n in names if n in previous},
            )
        )
    while pending:
        results.extend(pending.popleft().result())
    return results


def write_dashboards(
    out_dir: Path, data: DashboardInputs, workers: int | None = None
) -> list[Path]:
    """Write index.html, one person page per person (person_<safe id>.html), cohort.html and the
    shared plotly.min.js into out_dir; return the written paths.

    Each file is written atomically. The index is written last so it never links to a page that
    does not exist yet. A person page is rendered only when something on it changed besides the
    run's date (`person_page_key`), so a nightly run re-renders the people with new data, plus
    everyone when a source turns stale or a pipeline-wide warning changes. A page kept from an
    earlier run is a consistent snapshot: its "N days before this run" count from the run time in
    its own footer.

    With PARALLEL_MIN_PEOPLE people or more, person pages are rendered by `workers` processes
    (default: one per CPU; 1 renders here); the files are the same either way. The processes
    are spawned, so a script calling this needs the usual `if __name__ == "__main__":` guard.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = _normalise(data)
    if not d.run_info.get("data_window"):
        # Computed once: every page's footer shows it.
        d.run_info["data_window"] = _data_window(d) or "unknown"
    now = run_time(d.run_info)
    ids = _person_ids(d)
    pool_size = _pool_size(len(ids), workers)
    # The tables the page workers map go to the system's temp folder (RAM where it is a tmpfs,
    # as the pickled frames were; the OS clears what a killed run leaves). The workers are shut
    # down, and their mapped tables closed, before the folder goes.
    with (
        tempfile.TemporaryDirectory(prefix="gutsignal-pages-", ignore_cleanup_errors=True) as tmp,
        _page_pool(pool_size) as pool,
    ):
        written = [_write_plotly_js(out_dir)]
        sources = source_status(d, now)
        global_warnings = _global_quality(d, sources)
        manifest_path = out_dir / PAGES_MANIFEST
        previous = _read_manifest(manifest_path)
        job = _PageJob(
            out_dir,
            d.run_info,
            d.rejected_summary,
            global_warnings,
            frozenset(r["source"] for r in sources if r["stale"]),
        )
        splits = _split_tables(d)
        people = _person_rows(splits, ids, _person_sources(d, now))
        tables = {name: split.df for name, split in splits.items()}
        results = _render_people(pool, pool_size, people, tables, job, previous, Path(tmp))
    summaries = [r.summary for r in results]
    written.extend(out_dir / r.name for r in results if r.written)
    names = {r.name for r in results}
    if SYNC_ONCE and any(r.written for r in results):
        # One sync for every page instead of one per page (each stalled its renderer). A crash
        # before it leaves the old manifest, whose keys make the next run render the pages again.
        os.sync()
    atomic_write(manifest_path, json.dumps({r.name: r.key for r in results}, sort_keys=True))
    cohort = out_dir / COHORT
    atomic_write(cohort, render_cohort(summaries, d, global_warnings))
    written.append(cohort)
    index = out_dir / INDEX
    atomic_write(index, render_index(summaries, d, global_warnings, sources))
    written.append(index)
    _clean_out_dir(out_dir, names)
    return written
