"""Findings in words: the sentence for one association (`finding_sentence`, with its CI, q and n),
their order, the findings block and table every page shows, and the one-line data-sufficiency
advice. Plain text and small HTML pieces, shared by the person, index and cohort pages; it reads
rows as dicts and knows nothing of the pages around them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any

import polars as pl

from pipelines.reports.html import (
    DII_FEATURES,
    caveat,
    dii_params_text,
    empty,
    esc,
    esc_text,
    feature_label,
    feature_noun,
    feature_order,
    fmt_int,
    fmt_pct,
    fmt_q,
    is_num,
    marker_label,
    per_unit_phrase,
    status_badge,
    table,
)
from pipelines.schema import (
    BETWEEN_METHODS,
    UNWEIGHTED_FAMILY,
)

STATUS_ORDER = {
    "significant": 0,
    "explained": 1,
    "inconclusive": 2,
    "not_significant": 3,
    "insufficient_data": 4,
}


def _date_text(x: object) -> str:
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d")
    if isinstance(x, date):
        return x.isoformat()
    return "" if x is None else str(x)


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


# The findings table around its rows, as `table` writes it (cut open at the end of its body).
_TABLE_HEAD, _TABLE_TAIL = str(
    table(["Finding (95% CI, q, n)", "Status", "Method", "Note"], [])
).split("</tbody>")
_SIGNIFICANT_ROW = ' class="row-significant"'
_CAVEAT = caveat()


def _findings_table(
    ordered: list[dict[str, Any]], sentence: Callable[[dict[str, Any]], str]
) -> str:
    """Every finding, in `_sorted_findings` order, in a table with `table`'s markup. A page has
    about 150: each row is one string (a list of cells per row for `table` cost more than the
    sentences in them)."""
    # Methods and notes repeat from row to row: each distinct one is escaped once.
    esc_repeated = cache(esc_text)
    rows = "".join(
        f"<tr{_SIGNIFICANT_ROW if (status := r.get('status')) == 'significant' else ''}>"
        f"<td>{esc_text(sentence(r))} {_CAVEAT}</td><td>{status_badge(status)}</td>"
        f"<td>{esc_repeated(r.get('method') or '')}</td>"
        f"<td>{esc_repeated(r.get('note') or '')}</td></tr>"
        for r in ordered
    )
    return f"{_TABLE_HEAD}{rows}</tbody>{_TABLE_TAIL}"


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
        f"{_findings_table(ordered, sentence)}</details>"
    )
    return "".join(parts)


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


def _sentences(
    rows: list[dict[str, Any]], dii_params: tuple[int, int] | None = None
) -> Callable[[dict[str, Any]], str]:
    """`finding_sentence`, worked out once per row of `rows` (rows must outlive the function)."""
    known = {id(r): finding_sentence(r, dii_params) for r in rows}

    def sentence(row: dict[str, Any]) -> str:
        text = known.get(id(row))
        return finding_sentence(row, dii_params) if text is None else text

    return sentence
