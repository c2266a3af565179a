"""Page pieces shared by the index, person and cohort pages: headings, footers, figure slots, the
summary cells (latest CRP, trend, coverage), the warnings list and the data-quality tables
(source freshness, input files, rejected rows, unmapped foods). Their markup is in
templates/pieces.html (macros, autoescaped); table cells are escaped with `esc`, as `table` takes
Markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from markupsafe import Markup

from pipelines.reports import figures
from pipelines.reports.findings import _primary_between
from pipelines.reports.freshness import STALE_AFTER_DAYS
from pipelines.reports.html import (
    NO_HTML,
    category_badge,
    empty,
    esc,
    fmt_int,
    fmt_latest,
    fmt_pct,
    footer,
    is_num,
    marker_label,
    table,
)
from pipelines.reports.inputs import DashboardInputs, _data_window
from pipelines.reports.page_summary import PageSummary
from pipelines.reports.pages.render import macro
from pipelines.reports.summaries import CATEGORY_MARKER, PersonSummary
from pipelines.transforms.food_categories import override_line

# The cells a person's page and their index row share read either summary.
Summary = PersonSummary | PageSummary


def _piece(name: str) -> Callable[..., Markup]:
    """A macro of templates/pieces.html, where these pieces' markup and prose live."""
    return macro("pieces.html", name)


def _freshness_table(rows: list[dict[str, Any]], day_label: str) -> Markup:
    if not rows:
        return Markup(empty("No source has been read yet."))
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
            status = _piece("stale")("; ".join(r["reasons"]))
        else:
            status = Markup('<span class="badge c-low">up to date</span>')
        body.append([esc(r["source"]), esc(file_txt), esc(day_txt), status])
        classes.append("")
    return table(["Source", "Newest file", day_label, "Freshness"], body) + _piece(
        "freshness_note"
    )(STALE_AFTER_DAYS)


def _trend_html(s: Summary) -> Markup:
    t = s.trend
    slope = t.get("slope_pct_per_year")
    return _piece("trend")(
        fmt_pct(slope) if is_num(slope) else None,
        fmt_pct(t.get("slope_ci_low")),
        fmt_pct(t.get("slope_ci_high")),
        s.n_chronic,
    )


def _latest_html(s: Summary) -> Markup:
    return _piece("latest")(
        marker_label(s.headline),
        None if s.latest_value is None else fmt_latest(s.latest_value, s.latest_censored),
        s.latest_at,
        category_badge(None, acute=True) if s.latest_acute else None,
    )


def _category_html(s: Summary) -> Markup:
    """The hs-CRP risk category; a standard CRP says why it has none."""
    return _piece("category")(category_badge(s.category) if s.headline == CATEGORY_MARKER else None)


def _coverage_html(s: Summary) -> Markup:
    if s.days_in_range:
        pct = 100 * s.days_logged / s.days_in_range
        diet = f"{s.days_logged} / {s.days_in_range} days logged ({pct:.0f}%)"
    else:
        diet = "no diet log"
    return _piece("coverage")(diet, s.n_draws, marker_label(s.headline), s.n_chronic, s.n_acute)


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


def _warn_list(items: list[str]) -> Markup:
    return _piece("warn_list")(items)


def _unmapped_table(unmapped: pl.DataFrame, limit: int = 25) -> Markup:
    if unmapped.is_empty():
        return Markup(empty("No foods without a category reported."))
    top = unmapped.sort(["energy_share", "entries"], descending=True, nulls_last=True).head(limit)
    rows = [
        [
            esc(r["food"]) if r["food"] else _piece("muted")("(no food name)"),
            esc(fmt_int(r["entries"])),
            esc(f"{r['energy_kcal']:,.0f}" if is_num(r["energy_kcal"]) else "n/a"),
            esc(
                fmt_pct(100 * r["energy_share"], signed=False)
                if is_num(r["energy_share"])
                else "n/a"
            ),
            _piece("code")(override_line(r["food"])) if r["food"] else NO_HTML,
        ]
        for r in top.to_dicts()
    ]
    more = _piece("top_note")(limit, f"{unmapped.height:,}") if unmapped.height > limit else NO_HTML
    return (
        table(
            ["Food (no category yet)", "Entries", "kcal", "Share of energy", "Line to add"],
            rows,
            num_cols=(1, 2, 3),
        )
        + more
    )


def _footer(d: DashboardInputs) -> Markup:
    window = d.run_info.get("data_window")
    return footer(d.run_info, window if window else _data_window(d))


def _heading(title: str, crumbs: Markup, meta: Markup = NO_HTML) -> Markup:
    """The page heading: the crumbs and the meta line are HTML, the title is text."""
    return _piece("heading")(title, crumbs, meta)


def _fig(fig: Any, div_id: str, missing: str) -> Markup:
    """A figure's slot: its HTML (from the figure helpers), or `missing` as an empty note."""
    if fig is None:
        return Markup(empty(missing))
    return _piece("fig")(Markup(figures.figure_html(fig, div_id)))


def _between_n(d: DashboardInputs) -> int:
    """People in the between-person models: cross-sectional cohorts (one draw per person, e.g.
    NHANES) have no person pages, so they are counted by the largest model's n."""
    n = d.associations.filter(_primary_between())["n"].max()
    return int(n) if is_num(n) else 0


def _rejected_table(d: DashboardInputs) -> Markup:
    rej = d.rejected_summary
    if rej.is_empty():
        return Markup(empty("No rows were rejected."))
    # Grouped by source, reason and column: one bad setting is one line with its count, and
    # the example lines say where to look.
    return table(
        ["Source", "Reason", "Column", "Rows", "Example lines"],
        [
            [
                esc(r["source"]),
                esc(r["reason"]),
                esc(r["column"] or "-"),
                esc(fmt_int(r["n"])),
                esc(r["examples"] or ""),
            ]
            for r in rej.sort("n", descending=True, nulls_last=True, maintain_order=True).to_dicts()
        ],
        num_cols=(3,),
    )


# The counts each input file reports; a file is accounted for when read = the other three.
_FILE_COUNTS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")


def _files_table(d: DashboardInputs, stale_sources: frozenset[str] = frozenset()) -> Markup:
    """Input files per source (files, and rows read = loaded + rejected + duplicate: "Adds up?"),
    then every file that needs attention: failed, rows rejected or duplicate, counts that do not
    add up, or the newest file of a stale source. The full per-file list stays in the warehouse
    (the note says how to query it): at scale it is tens of thousands of rows, megabytes of HTML
    nobody reads. A row with `files` above 1 stands for that many files with nothing to say
    (read so by `pipelines.steps.dashboards`): it counts in the totals and is never listed."""
    files = d.ingest_files
    if files.is_empty():
        return Markup(empty("No input files have been read yet."))
    read, loaded, rejected, dup = (pl.col(c).fill_null(0) for c in _FILE_COUNTS)
    # Sorted so that each source's last row is its newest file (by time, then path: files of a
    # copied folder can share their time, and a stale source gets one file listed, not all).
    files = files.sort(["source", "modified_at", "path"], nulls_last=False).with_columns(
        _failed=((pl.col("status") == "error") | pl.col("error").is_not_null()).fill_null(False),
        _unaccounted=read - loaded - rejected - dup,
        _newest_of_stale=pl.col("source").is_in(list(stale_sources)).fill_null(False)
        & pl.col("source").is_last_distinct(),
    )
    per_source = (
        files.group_by("source")
        .agg(
            pl.col("files").sum(),
            *(pl.col(c).sum() for c in _FILE_COUNTS),
            pl.col("_failed").sum().alias("failed"),
            pl.col("_unaccounted").sum().alias("unaccounted"),
        )
        .sort("source", nulls_last=True)
    )
    accounting = table(
        ["Source", "Files", "Read", "Loaded", "Rejected", "Duplicate", "Failed files", "Adds up?"],
        [
            [
                esc(r["source"] or "(no source)"),
                *(esc(fmt_int(r[c])) for c in ("files", *_FILE_COUNTS, "failed")),
                esc("yes")
                if r["unaccounted"] == 0
                else _piece("bad_status")(f"{r['unaccounted']:,} rows unaccounted for"),
            ]
            for r in per_source.to_dicts()
        ],
        num_cols=(1, 2, 3, 4, 5, 6),
    )
    attention = files.filter(
        pl.col("_failed")
        | (pl.col("rows_rejected") > 0).fill_null(False)
        | (pl.col("rows_duplicate") > 0).fill_null(False)
        | (pl.col("_unaccounted") != 0)
        | pl.col("_newest_of_stale")
    ).sort(["_failed", "source", "path"], descending=[True, False, False], nulls_last=True)
    rows = []
    for r in attention.to_dicts():
        status = esc(r["status"] or "unknown")
        if r["_failed"]:
            status = _piece("bad_status")(status)
        rows.append(
            [
                esc(r["source"]),
                _piece("code")(r["path"]),
                *(esc(fmt_int(r[c])) for c in _FILE_COUNTS),
                status,
                esc(_attention_reason(r)),
            ]
        )
    problems = (
        table(
            ["Source", "File", "Read", "Loaded", "Rejected", "Duplicate", "Status", "Why"],
            rows,
            num_cols=(2, 3, 4, 5),
        )
        if rows
        else Markup(empty("No input file needs attention."))
    )
    return _piece("files")(accounting, problems, f"{int(files['files'].sum()):,}")


def _attention_reason(r: dict[str, Any]) -> str:
    """Why a file is in the "needs attention" list, in words."""
    reasons = []
    if r["_failed"]:
        reasons.append(f"failed: {r['error']}" if r["error"] else "failed")
    if r["rows_rejected"]:
        reasons.append(f"{r['rows_rejected']:,} rows rejected")
    if r["rows_duplicate"]:
        reasons.append(f"{r['rows_duplicate']:,} duplicate rows skipped")
    if r["_unaccounted"]:
        reasons.append(f"{r['_unaccounted']:,} rows read but not accounted for")
    if r["_newest_of_stale"]:
        reasons.append("newest file of a stale source")
    return "; ".join(reasons)
