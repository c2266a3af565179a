"""Robust CSV reading shared by the CSV-based adapters.

Real exports are messy: a UTF-8 BOM in front of the first header, CRLF line ends, Latin-1 or
UTF-16 files from spreadsheet programs, semicolons and decimal commas from European locales, food
names with commas in them, notes with line breaks inside quotes. `read_csv_table` turns all of that
into one frame of stripped strings (blank cell -> null) with, per row, the 1-based physical line
where it starts and the raw text of the row, so adapters can reject rows with a line number users
can find.

The file is parsed by Polars as plain strings. Only when a quoted field spans lines (so Polars rows
no longer map one-to-one onto physical lines) do we parse with Python's csv module, which reports
where each record starts.

Helpers for adapters: header matching that forgives case, spacing, `µ`/`u` and units in parentheses
(`CsvTable.find` / `CsvTable.require`), date parsing that returns null for blanks and flags bad
cells instead of guessing (`parse_datetime`; numbers are read by `pipelines.text.number`),
`refuse_swapped_dates`, which refuses a whole file whose dates disprove the configured day/month
order, and `split_rejects`, which applies an ordered list of checks (`pipelines.rules.Check`) and
splits the rows into loaded and rejected (each reject with a stable reason and the offending cell
in `value`).

Batches: `parse_csv_batch` reads many files with one adapter transform per group of files that share
headers and delimiter (`stack_tables`), because for a small file the fixed cost of building
expressions and running queries is far larger than the cost of its rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.adapters.base import FILE_INDEX, AdapterError, BatchResult
from pipelines.config import SourceConfig
from pipelines.rules import Check, first_failing, reject_fields
from pipelines.schema import REJECT_SCHEMA, empty

LINE = "__line"
RAW = "__raw"
EXTRA = "__extra"

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_DELIMITERS = (",", ";", "\t")

# The csv module refuses fields over 128 KiB by default ("field larger than field limit"), which
# would refuse a whole file for one long note pasted into a cell. Polars has no such limit, so the
# two readers would also disagree. 2**31 - 1 fits a C long everywhere (also on Windows).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def cell(index: int) -> str:
    """The frame column holding the cells of header position `index`."""
    return f"c{index}"


def header_key(name: str) -> str:
    """A header reduced to what identifies it: no case, no whitespace, `µ`/`μ`/`mcg` as `u`/`ug`."""
    key = name.replace("\ufeff", "").lower().replace("µ", "u").replace("μ", "u")
    key = re.sub(r"\s+", "", key)
    return key.replace("mcg", "ug")


def _base_key(name: str) -> str:
    """`header_key` without parenthesised parts, so `Result (mg/L)` matches `Result`."""
    return header_key(re.sub(r"\([^)]*\)", "", name))


@dataclass(frozen=True)
class CsvTable:
    """One CSV file read as strings.

    `frame` has one column per header position (`cell(i)`: stripped text, null when blank) plus
    LINE (1-based physical line where the row starts), RAW (the row's text as in the file) and
    EXTRA (text of fields beyond the header's width, null when there are none). Blank lines and
    rows whose cells are all blank are not in it: they are not data.

    A table made by `stack_tables` holds several files: `files` maps each FILE_INDEX value found in
    `frame` to its file, and `path` is the first of them.
    """

    path: Path
    source: SourceConfig
    headers: tuple[str, ...]
    delimiter: str
    frame: pl.DataFrame
    files: Mapping[int, Path] | None = None

    @property
    def rows_read(self) -> int:
        return self.frame.height

    def find(self, names: Sequence[str]) -> int | None:
        """The position of the first header matching one of `names`, or None.

        An exact match (ignoring case, spaces, `µ` vs `u`) on any name wins over a match that
        ignores parenthesised units, so `Result` finds `Result (mg/L)` only if there is no
        plain `Result`. Not for nutrient columns, where the unit in parentheses matters.
        """
        keys = [header_key(h) for h in self.headers]
        for name in names:
            if header_key(name) in keys:
                return keys.index(header_key(name))
        bases = [_base_key(h) for h in self.headers]
        for name in names:
            base = _base_key(name)
            if base and base in bases:
                return bases.index(base)
        return None

    def require(self, names: Sequence[str], hint: str) -> int:
        """Like `find`, but a missing column is an AdapterError naming the file and the column."""
        found = self.find(names)
        if found is None:
            wanted = " or ".join(repr(n) for n in names)
            have = ", ".join(repr(h) for h in self.headers) or "none"
            raise AdapterError(
                f"{self.path}: required column {wanted} not found (columns in the file: {have}). "
                f"{hint}"
            )
        return found


def read_csv_table(path: Path, source: SourceConfig) -> CsvTable:
    """Read `path` as configured by `source` (encoding, delimiter); see CsvTable."""
    return _cells_table(_split_lines(path, source))


@dataclass(frozen=True)
class _Lines:
    """A file decoded and split into lines, its header found: everything of a read but the
    cells. `spans` (first, last physical line of each record, header first) is set only when a
    quoted field may span lines; otherwise record i is the data line i."""

    path: Path
    source: SourceConfig
    headers: tuple[str, ...]
    delimiter: str
    lines: list[str]
    header_end: int  # index of the first data line in `lines`
    spans: list[tuple[int, int]] | None

    @property
    def data_lines(self) -> list[str]:
        return self.lines[self.header_end :]


def _split_lines(path: Path, source: SourceConfig) -> _Lines:
    text = _read_text(path, source)
    lines = text.split("\n")
    # Trailing blank lines are not data; dropping them keeps the Polars row count comparable.
    while lines and not lines[-1].strip():
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise AdapterError(
            f"{path}: the file is empty (no header line). Export it again, or remove it from "
            "data/raw/ if it is not meant to be loaded."
        )
    delimiter = source.delimiter or _sniff(lines[first])
    # Record i starts on physical line i + first + 2 unless a quoted field spans lines; only then
    # is the csv module asked where each record starts.
    spans = (
        _record_spans(path, lines, first, delimiter) if _has_multiline_fields(text, lines) else None
    )
    header_end = first + 1 if spans is None else spans[0][1]
    headers = _parse_header(lines[first:header_end], delimiter)
    return _Lines(path, source, headers, delimiter, lines, header_end, spans)


def _cells_table(read: _Lines) -> CsvTable:
    """The CsvTable of one split file."""
    lines, header_end, spans = read.lines, read.header_end, read.spans
    data_lines = read.data_lines
    if spans is None:
        line_numbers = pl.int_range(header_end + 1, len(lines) + 1, dtype=pl.Int64, eager=True)
        raws = data_lines
    else:
        line_numbers = pl.Series([start for start, _ in spans[1:]], dtype=pl.Int64)
        raws = ["\n".join(lines[start - 1 : end]) for start, end in spans[1:]]
    width = len(read.headers)
    cells = _polars_cells(data_lines, width, read.delimiter, len(raws))
    if cells is None:
        cells = _csv_cells(read.path, data_lines, header_end, width, read.delimiter, len(raws))
    frame = cells.with_columns(line_numbers.alias(LINE), pl.Series(RAW, raws, dtype=pl.String))
    return CsvTable(read.path, read.source, read.headers, read.delimiter, _clean(frame, width))


def _read_text(path: Path, source: SourceConfig) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be opened ({exc.strerror or exc}).") from exc
    try:
        configured = codecs.lookup(source.encoding).name
    except LookupError as exc:
        raise AdapterError(
            f"{path}: unknown encoding {source.encoding!r} (key 'encoding' of source "
            f"{source.name!r}); use for example utf-8, utf-16 or latin-1."
        ) from exc
    # A byte-order mark says what the file is; trusting it over the configuration is never a guess.
    if data.startswith(_UTF8_BOM):
        codec = "utf-8-sig"
    elif data.startswith(_UTF16_BOMS):
        codec = "utf-16"
    else:
        codec = configured
    if b"\x00" in data and "16" not in codec and "32" not in codec:
        raise AdapterError(
            f"{path}: contains NUL bytes, so it is probably UTF-16 without a byte-order mark. "
            f"Set 'encoding: utf-16' for source {source.name!r} in sources.yaml."
        )
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AdapterError(
            f"{path}: cannot be read as {source.encoding} (invalid byte at line {line}). "
            f"Set 'encoding' for source {source.name!r} in sources.yaml to the file's encoding, "
            "for example latin-1 (Windows/Excel exports) or utf-16."
        ) from exc
    text = text.removeprefix("\ufeff")
    # Universal newlines, as editors show them: CRLF, and a bare CR (old Mac files, or lines pasted
    # from one into another file), end a line. A bare CR left inside a line would make the csv
    # module refuse the whole file ("new-line character seen in unquoted field").
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sniff(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _SNIFF_DELIMITERS}
    best = max(_SNIFF_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _has_multiline_fields(text: str, lines: list[str]) -> bool:
    """Whether some quoted field may span lines: a line with an odd number of quote characters."""
    if '"' not in text:
        return False
    # Plain str.count: a Polars Series per file cost more than counting a small file's quotes.
    return any(line.count('"') % 2 for line in lines)


def _quoting_error(path: Path, line: int, exc: Exception) -> AdapterError:
    return AdapterError(
        f"{path}: line {line}: malformed quoting ({exc}). A quote character opens a field that "
        "never closes, or is followed by more text; fix the quotes in that row and load the file "
        "again."
    )


def _record_spans(
    path: Path, lines: list[str], first: int, delimiter: str
) -> list[tuple[int, int]]:
    """(first, last) physical line (1-based) of each record from index `first` on, blanks too."""
    reader = csv.reader(io.StringIO("\n".join(lines[first:])), delimiter=delimiter, strict=True)
    spans: list[tuple[int, int]] = []
    end = first
    try:
        for _ in reader:
            spans.append((end + 1, first + reader.line_num))
            end = first + reader.line_num
    except csv.Error as exc:
        raise _quoting_error(path, end + 1, exc) from exc
    return spans


def _parse_header(header_lines: list[str], delimiter: str) -> tuple[str, ...]:
    record = next(csv.reader(io.StringIO("\n".join(header_lines)), delimiter=delimiter), [])
    return tuple(h.strip() for h in record)


def _polars_cells(
    data_lines: list[str], width: int, delimiter: str, records: int
) -> pl.DataFrame | None:
    """Cells of the data lines parsed by Polars; None if it does not see `records` records."""
    # One column more than the header catches rows with extra fields (an unquoted delimiter).
    schema = {cell(i): pl.String for i in range(width + 1)}
    if not data_lines:
        frame = pl.DataFrame(schema=schema)
    else:
        try:
            frame = pl.read_csv(
                "\n".join(data_lines).encode("utf-8"),
                has_header=False,
                schema=schema,
                separator=delimiter,
                quote_char='"',
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
        except (pl.exceptions.PolarsError, ValueError):
            return None
    if frame.height != records:
        return None
    return frame.rename({cell(width): EXTRA})


def _csv_cells(
    path: Path, data_lines: list[str], offset: int, width: int, delimiter: str, records: int
) -> pl.DataFrame:
    """Cells parsed by the csv module, for files Polars cannot split the same way."""
    reader = csv.reader(io.StringIO("\n".join(data_lines)), delimiter=delimiter, strict=True)
    columns: list[list[str | None]] = [[] for _ in range(width)]
    extra: list[str | None] = []
    try:
        for record in reader:
            padded = record + [""] * (width - len(record))
            for column, value in zip(columns, padded, strict=False):
                column.append(value)
            overflow = [v for v in record[width:] if v.strip()]
            extra.append(delimiter.join(overflow) if overflow else None)
    except csv.Error as exc:
        raise _quoting_error(path, offset + reader.line_num + 1, exc) from exc
    if len(extra) != records:
        raise _quoting_error(path, offset + 1, ValueError("records could not be delimited"))
    return pl.DataFrame(
        {**{cell(i): values for i, values in enumerate(columns)}, EXTRA: extra},
        schema={**{cell(i): pl.String for i in range(width)}, EXTRA: pl.String},
    )


def _clean(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """Cells stripped (blank -> null) and rows with no cell left dropped; a stack's FILE_INDEX
    stays, last. Which columns get stripped does not change the result, only the cost: stripping
    a tidy cell leaves it as it is, so a stack strips what any of its files needs."""
    names = [cell(i) for i in range(width)] + [EXTRA]
    carried = [FILE_INDEX] if FILE_INDEX in frame.columns else []
    # Stripping allocates a new string per cell; most columns of most files need none of it.
    untidy = frame.select(
        [pl.col(n).str.contains(r"^\s|\s$|^$").any().alias(n) for n in names]
    ).row(0, named=True)
    stripped = frame.with_columns(
        [pl.col(n).str.strip_chars().replace("", None).alias(n) for n in names if untidy[n]]
    )
    return stripped.filter(pl.any_horizontal([pl.col(n).is_not_null() for n in names])).select(
        [*names, LINE, RAW, *carried]
    )


# ---- numbers -----------------------------------------------------------------------------------

_OTHER_CONVENTION = {".": r"^[+-]?[0-9]*,[0-9]+$", ",": r"^[+-]?[0-9]*\.[0-9]+$"}


NEGATIVE_REASON = "negative amount: amounts cannot be below zero"


def not_a_number_reason(
    decimal: str, prefix: str = "not a number", cell: pl.Expr | None = None
) -> pl.Expr:
    """`prefix` (a stable reason; the cell goes in the reject's `value`), plus a hint on the
    decimal separator when `cell` is a number written with the other one."""
    other = "," if decimal == "." else "."
    hinted = (
        f"{prefix} (the decimal separator configured for this source is '{decimal}'; if the "
        f"file uses '{other}', set decimal: '{other}' in sources.yaml)"
    )
    if cell is None:
        return pl.lit(prefix)
    return (
        pl.when(cell.str.strip_chars().str.contains(_OTHER_CONVENTION[decimal]))
        .then(pl.lit(hinted))
        .otherwise(pl.lit(prefix))
    )


# ---- dates -------------------------------------------------------------------------------------

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
    iso = (
        pl.when(s.str.contains(ISO_DATETIME))
        .then(s)
        .otherwise(None)
        .str.replace(_ISO_OFFSET, "${1}")
        .str.replace("T", " ", literal=True)
        .str.replace(",", ".", literal=True)
    )
    candidates.extend(iso.str.strptime(pl.Datetime("us"), f, strict=False) for f in _ISO_FORMATS)
    return pl.coalesce(candidates)


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
        parts = raw.str.extract_groups(_YEAR_LAST)
        first = parts.struct.field("1").cast(pl.Int64)
        second = parts.struct.field("3").cast(pl.Int64)
        day, month = (first, second) if order == "dm" else (second, first)
        # One file, or each file of a stack (whose AdapterError makes the batch read its files
        # one by one, so each gets its own message).
        per_file = [pl.col(FILE_INDEX)] if FILE_INDEX in table.frame.columns else []
        found = table.frame.select(
            pl.col(LINE),
            raw.alias("value"),
            (month.is_between(13, 31) & day.is_between(1, 12)).fill_null(False).alias("against"),
            (day.is_between(13, 31) & month.is_between(1, 12)).fill_null(False).alias("for"),
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


# ---- checks and rejects ------------------------------------------------------------------------


def extra_fields_check(table: CsvTable) -> Check:
    """Reject rows with more fields than the header: a value with an unquoted delimiter in it."""
    shown = "tab" if table.delimiter == "\t" else repr(table.delimiter)
    return Check(
        pl.col(EXTRA).is_not_null(),
        None,
        pl.lit(
            f"row has more fields than the header ({len(table.headers)}): a value probably "
            f"contains the delimiter {shown} without quotes; quote that value or fix the row"
        ),
        pl.col(EXTRA),
    )


def person_column_check(table: CsvTable) -> tuple[pl.Expr, Check | None]:
    """The person_id expression for `table`, and the check rejecting blank ids (if from a column).

    A person column that is configured but absent is an AdapterError: no row could be attributed.
    """
    spec = table.source.person
    fixed = spec.for_file(table.path)
    if fixed is not None:
        if table.files is None:
            return pl.lit(fixed, dtype=pl.String), None
        # In a stack each file keeps its own id (its folder, with from_folder).
        ids = {i: spec.for_file(path) for i, path in table.files.items()}
        return pl.col(FILE_INDEX).replace_strict(ids, return_dtype=pl.String), None
    if spec.column is None:
        raise AdapterError(
            f"{table.path}: source {table.source.name!r} does not say whose data this is; set "
            "'person' in sources.yaml (a fixed id, {column: <column>} or {from_folder: true})."
        )
    index = table.require(
        [spec.column],
        f"Source {table.source.name!r} takes the person id from this column (person: "
        "{column: ...} in sources.yaml); fix the column name there or in the file.",
    )
    col = pl.col(cell(index))
    check = Check(
        col.is_null(),
        table.headers[index],
        pl.lit(f"person id is blank in column '{table.headers[index]}'"),
    )
    return col, check


def split_rejects(
    frame: pl.DataFrame, checks: Sequence[Check]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows passing every check, rejects in REJECT_SCHEMA), with the first failing check's reason.

    `frame` needs LINE and RAW; the passing rows keep all of frame's columns. The rejects keep
    FILE_INDEX too when frame has it (a stack of files), so each reject stays with its file.
    """
    carried = file_index_schema(frame)
    if not checks or frame.height == 0:
        return frame, empty({**REJECT_SCHEMA, **carried})
    # Reasons refer to the materialised index column (see `pick`).
    marked = frame.with_columns(first_failing(checks).alias("__first"))
    column, reason, value = reject_fields(checks, pl.col("__first"))
    good = marked.filter(pl.col("__first").is_null()).drop("__first")
    rejects = marked.filter(pl.col("__first").is_not_null()).select(
        pl.col(LINE).cast(pl.Int64).alias("line"),
        column.alias("column"),
        reason.fill_null("invalid row").alias("reason"),
        value.alias("value"),
        pl.col(RAW).alias("raw"),
        *[pl.col(name) for name in carried],
    )
    return good, rejects


# ---- batches -----------------------------------------------------------------------------------

TableTransform = Callable[[CsvTable], tuple[pl.DataFrame, pl.DataFrame]]
"""An adapter's work after reading: a table (one file, or a stack) -> (rows, rejects). For a stack
both frames must end with FILE_INDEX (see `file_index_schema`)."""

# A Polars (Rust) panic is a BaseException; KeyboardInterrupt and SystemExit must still stop a run.
_FAILURES = (Exception, pl.exceptions.PanicException)


def file_index_schema(frame: pl.DataFrame) -> dict[str, pl.DataType | type[pl.DataType]]:
    """{FILE_INDEX: Int64} when `frame` stacks several files, else {}: what a transform adds to its
    output schemas so one code path serves a single file and a stack."""
    return {FILE_INDEX: pl.Int64} if FILE_INDEX in frame.columns else {}


def stack_tables(tables: Mapping[int, CsvTable]) -> CsvTable:
    """Several files as one table with FILE_INDEX (their key in `tables`) on each row, so a
    transform builds its expressions and runs its queries once for all of them. Headers and
    delimiter must match because a transform decides from them alone which column means what; an
    AdapterError raised on a stack names only its first file, which is why `parse_csv_batch`
    retries file by file."""
    first = next(iter(tables.values()))
    for table in tables.values():
        if (table.headers, table.delimiter) != (first.headers, first.delimiter):
            raise ValueError(f"stack_tables: {table.path} and {first.path} differ in layout")
        if table.files is not None:
            raise ValueError(f"stack_tables: {table.path} is already a stack")
    heights = [table.frame.height for table in tables.values()]
    index = np.repeat(np.fromiter(tables, dtype=np.int64, count=len(tables)), heights)
    # One chunk per column, as a single file's frame has: Polars has panicked on columns chunked
    # differently (see format_text), and the copy is small next to the transform's own work.
    frame = pl.concat([table.frame for table in tables.values()], how="vertical", rechunk=True)
    return CsvTable(
        first.path,
        first.source,
        first.headers,
        first.delimiter,
        frame.with_columns(pl.Series(FILE_INDEX, index, dtype=pl.Int64)),
        files={i: table.path for i, table in tables.items()},
    )


def parse_csv_batch(
    paths: Sequence[Path], source: SourceConfig, transform: TableTransform
) -> BatchResult:
    """A BatchResult equal to `parse_each` over `read_csv_table` + `transform`, with `transform` run
    once per group of files sharing headers and delimiter instead of once per file. Decoding and
    splitting lines stay per file (encodings, quoting and line numbers are per-file facts); the
    cells of a group's files are parsed in one Polars read where that is provably the same as one
    read per file (`_read_stack`). A stack that fails is split until the failure sits on its own
    file, so one bad file never costs the others their rows or takes their error message."""
    rows_read = [0] * len(paths)
    errors: dict[int, BaseException] = {}
    split: dict[tuple[tuple[str, ...], str], dict[int, _Lines]] = {}
    for i, path in enumerate(paths):
        try:
            read = _split_lines(path, source)
        except _FAILURES as exc:
            errors[i] = exc
            continue
        split.setdefault((read.headers, read.delimiter), {})[i] = read
    outputs: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    for layout in list(split):
        # Popped so each group's lines and tables can be freed once its output exists.
        tables, stack = _read_group(split.pop(layout), errors)
        for i, table in tables.items():
            rows_read[i] = table.rows_read
        outputs += _transform_group(tables, transform, errors, stack)
    for i in errors:
        rows_read[i] = 0
    if not outputs:
        return BatchResult(pl.DataFrame(), pl.DataFrame(), rows_read, errors)
    # Groups interleave in `paths`; a stable sort restores file order and each file's row order.
    rows = pl.concat([r for r, _ in outputs], how="vertical_relaxed")
    rejects = pl.concat([r for _, r in outputs], how="vertical_relaxed")
    if len(outputs) > 1:
        rows = rows.sort(FILE_INDEX, maintain_order=True)
        rejects = rejects.sort(FILE_INDEX, maintain_order=True)
    return BatchResult(rows, rejects, rows_read, errors)


def _read_group(
    group: dict[int, _Lines], errors: dict[int, BaseException]
) -> tuple[dict[int, CsvTable], CsvTable | None]:
    """Each file's table (as `read_csv_table` gives it) and, when all of them were read in one
    pass, their stack (as `stack_tables` would make it); failures go to `errors`."""
    simple = {i: read for i, read in group.items() if read.spans is None}
    stacked = None
    if len(simple) > 1:
        try:
            stacked = _read_stack(simple)
        except _FAILURES:
            # Whatever a file's data trips here, reading file by file gives it its own error.
            stacked = None
    tables: dict[int, CsvTable] = {}
    for i, read in group.items():
        if stacked is not None and i in stacked[0]:
            tables[i] = stacked[0][i]
            continue
        try:
            tables[i] = _cells_table(read)
        except _FAILURES as exc:
            errors[i] = exc
    if stacked is None or len(stacked[0]) != len(group):
        return tables, None
    return tables, stacked[1]


def _read_stack(group: dict[int, _Lines]) -> tuple[dict[int, CsvTable], CsvTable] | None:
    """The cells of files without multi-line fields and with the same layout, parsed by one Polars
    read of all their data lines: per file, the tables `_cells_table` gives, and their stack.

    For a small file the fixed cost of a read and of `_clean` (a few queries) is far more than its
    rows. One read gives the same cells as one read per file because no line break falls inside a
    field: no line has an odd number of quotes, and Polars must find exactly one record per line
    (otherwise None, and the caller reads file by file, as before). So each line is parsed on its
    own, whichever file it comes from."""
    reads = list(group.values())
    first = reads[0]
    width = len(first.headers)
    data_lines = [line for read in reads for line in read.data_lines]
    cells = _polars_cells(data_lines, width, first.delimiter, len(data_lines))
    if cells is None:
        return None
    counts = [len(read.lines) - read.header_end for read in reads]
    line_numbers = np.concatenate(
        [np.arange(read.header_end + 1, len(read.lines) + 1, dtype=np.int64) for read in reads]
    )
    index = np.repeat(np.fromiter(group, dtype=np.int64, count=len(group)), counts)
    frame = _clean(
        cells.with_columns(
            pl.Series(LINE, line_numbers, dtype=pl.Int64),
            pl.Series(RAW, data_lines, dtype=pl.String),
            pl.Series(FILE_INDEX, index, dtype=pl.Int64),
        ),
        width,
    ).rechunk()
    # Rows stay in file order through `_clean`, so each file is one contiguous slice.
    kept = dict(frame.group_by(FILE_INDEX).len().iter_rows())
    # Slices of one frame without the index: zero-copy, where dropping a column per file was not.
    plain = frame.drop(FILE_INDEX)
    tables: dict[int, CsvTable] = {}
    offset = 0
    for i, read in group.items():
        height = kept.get(i, 0)
        part = plain.slice(offset, height)
        tables[i] = CsvTable(read.path, read.source, read.headers, read.delimiter, part)
        offset += height
    stack = CsvTable(
        first.path,
        first.source,
        first.headers,
        first.delimiter,
        frame,
        files={i: read.path for i, read in group.items()},
    )
    return tables, stack


def _transform_group(
    tables: dict[int, CsvTable],
    transform: TableTransform,
    errors: dict[int, BaseException],
    stack: CsvTable | None = None,
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """(rows, rejects) with FILE_INDEX for the files of `tables` that parse, failures into `errors`:
    the whole stack first (`stack`, when already made), because that is the fast case, then
    smaller parts only when it fails."""
    if not tables:
        return []
    if len(tables) == 1:
        # A lone file goes through exactly what `parse` runs, so its result and its error are the
        # single-file ones by construction.
        [(i, table)] = tables.items()
        try:
            rows, rejects = transform(table)
        except _FAILURES as exc:
            errors[i] = exc
            return []
        index = pl.lit(i, dtype=pl.Int64).alias(FILE_INDEX)
        return [(rows.with_columns(index), rejects.with_columns(index))]
    try:
        return [transform(stack if stack is not None else stack_tables(tables))]
    except AdapterError:
        # About the shared headers, so every file fails alike and each needs its own message.
        parts = [{i: table} for i, table in tables.items()]
    except _FAILURES:
        # Likely one file's data: halving finds it in a few runs and keeps the rest batched.
        keys = list(tables)
        middle = len(keys) // 2
        parts = [{i: tables[i] for i in keys[:middle]}, {i: tables[i] for i in keys[middle:]}]
    return [out for part in parts for out in _transform_group(part, transform, errors)]
