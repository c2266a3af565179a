"""Dates and times from CSV cells, and refusing files whose dates swap day and month.

`parse_datetime` reads the configured formats and ISO 8601 (blank -> null, a bad cell is flagged,
never guessed), `date_reason` says why a cell did not parse, and `refuse_swapped_dates` refuses a
whole file whose dates disprove the configured day/month order before any of its rows load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import polars as pl

from pipelines.adapters._csv.table import LINE, CsvTable, per_distinct
from pipelines.adapters.base import FILE_INDEX, AdapterError

ISO_DATETIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
    r"(?:\s*(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?))?)?$"
)
# A UTC offset, only after a time (the "-07" of "2024-11-07" is the day).
_ISO_OFFSET = (
    r"([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)\s*(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_datetime(expr: pl.Expr, formats: Sequence[str]) -> pl.Expr:
    """Datetime("us") from text: the configured strptime `formats` first, then ISO 8601.

    ISO is always accepted because it cannot be misread; any other shape needs a configured format
    (day and month are never guessed). A UTC offset in an ISO value is dropped: the wall-clock time
    the lab printed is what lines up with the diary's days.
    """
    s = expr.str.strip_chars()
    candidates: list[pl.Expr] = []
    for fmt in formats:
        if "%z" in fmt or "%:z" in fmt or "%Z" in fmt:
            parsed = s.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False)
            candidates.append(parsed.dt.replace_time_zone(None))
        else:
            candidates.append(s.str.strptime(pl.Datetime("us"), fmt, strict=False))
    configured = pl.coalesce(candidates) if candidates else pl.lit(None, dtype=pl.Datetime("us"))
    # ISO only for the cells the configured formats could not read: the regex and replacements
    # then skip (as nulls) the usual column where every cell is read, which halves the cost.
    rest = pl.when(configured.is_null()).then(s)
    iso = (
        pl.when(rest.str.contains(ISO_DATETIME))
        .then(rest)
        .otherwise(None)
        .str.replace(_ISO_OFFSET, "${1}")
        .str.replace("T", " ", literal=True)
        .str.replace(",", ".", literal=True)
    )
    return pl.coalesce(
        [configured, *(iso.str.strptime(pl.Datetime("us"), f, strict=False) for f in _ISO_FORMATS)]
    )


def date_reason(expr: pl.Expr, date_format: str | None, datetime_format: str | None) -> pl.Expr:
    """Why a non-blank date cell did not parse, telling the user which setting to change: a
    stable reason per source (the cell goes in the reject's `value`)."""
    configured = [
        f"{key} {fmt!r}"
        for key, fmt in (("datetime_format", datetime_format), ("date_format", date_format))
        if fmt
    ]
    if configured:
        return pl.lit(
            f"not a date in the configured {' or '.join(configured)} (nor ISO 8601 YYYY-MM-DD); "
            "fix the setting in sources.yaml or the cell"
        )
    return (
        pl.when(expr.str.strip_chars().str.contains(ISO_DATETIME))
        .then(pl.lit("not a valid date"))
        .otherwise(
            pl.lit(
                "not an ISO 8601 date (YYYY-MM-DD, optionally with a time); set date_format "
                '(for example "%d/%m/%Y" or "%m/%d/%Y") or datetime_format for this source in '
                "sources.yaml, because day and month are never guessed"
            )
        )
    )


# Numeric dates with the year last: day and month are the first two numbers, in either order.
_YEAR_LAST = r"^\s*([0-9]{1,2})([./-])([0-9]{1,2})[./-]([0-9]{4}|[0-9]{2})(.*)$"
# The time after such a date, as written -> the strptime directives that read it.
_TIMES = (
    (r"^\s+[0-9]{1,2}:[0-9]{2}:[0-9]{2}\s*[AaPp][Mm]$", " %I:%M:%S %p"),
    (r"^\s+[0-9]{1,2}:[0-9]{2}\s*[AaPp][Mm]$", " %I:%M %p"),
    (r"^\s+[0-9]{1,2}:[0-9]{2}:[0-9]{2}$", " %H:%M:%S"),
    (r"^\s+[0-9]{1,2}:[0-9]{2}$", " %H:%M"),
    (r"^$", ""),
)
_ORDER_NAMES = {"dm": "day-first", "md": "month-first"}


# strptime directives for the day ("%d", "%-d", "%e") and the month ("%m", "%-m"), and the year.
_DAY = r"%[-_0]?[de]"
_MONTH = r"%[-_0]?m"
_YEAR = r"%[-_0]?[Yy]"


def _day_month_order(fmt: str) -> str | None:
    """The order of a numeric strptime format with the year last: "dm" for "%d/%m/%Y %H:%M",
    "md" for "%m/%d/%y"; None for anything else (ISO-like year-first formats and month names
    cannot be misread)."""
    day, month, year = (re.search(p, fmt) for p in (_DAY, _MONTH, _YEAR))
    if day is None or month is None or year is None or "%b" in fmt or "%B" in fmt:
        return None
    if year.start() < max(day.start(), month.start()):
        return None
    return "dm" if day.start() < month.start() else "md"


def refuse_swapped_dates(
    table: CsvTable,
    raw: pl.Expr,
    header: str,
    keys: Sequence[str] = ("datetime_format", "date_format"),
) -> None:
    """Raise an AdapterError when the file's dates prove the configured day/month order wrong.

    A configured `date_format` (or `datetime_format`) "%d/%m/%Y" on a month-first file would
    read 11/07/2024 as 11 July and reject 11/27/2024: part of the file loaded with day and month
    swapped. A date whose month, in the configured order, is 13 to 31 while its day is 1 to 12
    disproves the order, and then the whole file is refused (nothing of it loads), naming the
    line, the value, the order the file uses and the exact setting to write. A file whose dates
    are all ambiguous (every day <= 12) cannot be disproved and loads as configured, and so does
    a file where some date confirms the configured order (a day of 13 or more): there a date
    written the other way round is a typo, rejected on its own line. `keys` are the settings the
    adapter reads the column with.
    """
    source = table.source
    for key in keys:
        fmt = source.datetime_format if key == "datetime_format" else source.date_format
        order = _day_month_order(fmt) if fmt else None
        if fmt is None or order is None:
            continue
        # One file, or each file of a stack (whose AdapterError makes the batch read its files
        # one by one, so each gets its own message).
        per_file = [pl.col(FILE_INDEX)] if FILE_INDEX in table.frame.columns else []
        values = table.frame.select(raw.alias("value")).to_series()
        # A diary's dates repeat on every row of their day: each distinct one is read once.
        evidence = per_distinct(values, partial(_order_evidence, order=order))
        found = table.frame.select(
            pl.col(LINE),
            values,
            evidence.struct.field("against"),
            evidence.struct.field("for"),
            *per_file,
        )
        # Dates that only the configured order reads (a day of 13 or more) confirm it: then the
        # contradicting dates are typos, rejected one by one as not matching the format.
        if per_file:
            confirmed = pl.col("for").any().over(FILE_INDEX)
        else:
            confirmed = pl.col("for").any()
        against = found.filter(pl.col("against") & ~confirmed)
        if against.height == 0:
            continue
        line, value = against.row(0)[:2]
        where = f"{table.path}: column {header!r}"
        other = "md" if order == "dm" else "dm"
        suggested = _suggest_format(fmt, other, against["value"].head(50))
        raise AdapterError(
            f"{where} writes dates {_ORDER_NAMES[other]} (line {line}: {value!r} has no month "
            f"{_month_of(value, order)}), but {key} {fmt!r} of source {source.name!r} reads "
            f"them {_ORDER_NAMES[order]}, which would swap day and month. Nothing in this file "
            f'was loaded. Set  {key}: "{suggested}"  for source {source.name!r} in '
            "sources.yaml and run again."
        )


def _order_evidence(text: pl.Expr, order: str) -> pl.Expr:
    """{against, for}: whether a _YEAR_LAST date in `text` disproves, or only reads in, the
    configured day/month `order` ("dm" or "md"); both False for any other text."""
    parts = text.str.extract_groups(_YEAR_LAST)
    first = parts.struct.field("1").cast(pl.Int64)
    second = parts.struct.field("3").cast(pl.Int64)
    day, month = (first, second) if order == "dm" else (second, first)
    return pl.struct(
        (month.is_between(13, 31) & day.is_between(1, 12)).fill_null(False).alias("against"),
        (day.is_between(13, 31) & month.is_between(1, 12)).fill_null(False).alias("for"),
    )


def _month_of(value: str, order: str) -> int:
    """The number the configured `order` takes for the month in `value` (a _YEAR_LAST date)."""
    match = re.match(_YEAR_LAST, value)
    assert match is not None
    return int(match.group(3) if order == "dm" else match.group(1))


def _suggest_format(fmt: str, order: str, values: pl.Series) -> str:
    """The strptime format in `order` that reads every one of `values`: the configured `fmt` with
    day and month swapped, or the shape of the values themselves (their separator, a two- or
    four-digit year, their time with or without AM/PM) when that does not read them."""
    swapped = re.sub(
        f"{_DAY}|{_MONTH}",
        lambda m: m.group(0)[:-1] + ("d" if m.group(0)[-1] == "m" else "m"),
        fmt,
    )
    candidates = [swapped]
    match = re.match(_YEAR_LAST, str(values[0]))
    if match is not None:
        sep, year, rest = match.group(2), match.group(4), match.group(5)
        date_part = ("%d" + sep + "%m" if order == "dm" else "%m" + sep + "%d") + sep
        date_part += "%Y" if len(year) == 4 else "%y"
        candidates += [date_part + time for pattern, time in _TIMES if re.match(pattern, rest)]
    for candidate in candidates:
        parsed = values.str.strip_chars().str.strptime(pl.Datetime("us"), candidate, strict=False)
        if parsed.null_count() == 0:
            return candidate
    return swapped
