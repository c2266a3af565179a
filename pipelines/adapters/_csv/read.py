"""Reading one CSV file: bytes decoded, data lines found, cells parsed, into a `CsvTable`.

The first step of every CSV adapter. The file is decoded (byte-order marks, the configured
encoding), its header found, its delimiter sniffed and its data lines cut out as one text
(`split_lines`); then its cells are parsed by Polars as plain strings, and each row's raw text by
a one-column Polars read of the same bytes (`raw_lines`), or by Python's csv module when a quoted
field spans lines and Polars rows no longer map one-to-one onto physical lines (`cells_table`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.adapters._csv.table import EXTRA, LINE, RAW, CsvTable, cell
from pipelines.adapters.base import FILE_INDEX, AdapterError, read_file_text
from pipelines.config import SourceConfig

_SNIFF_DELIMITERS = (",", ";", "\t")

# The csv module refuses fields over 128 KiB by default ("field larger than field limit"), which
# would refuse a whole file for one long note pasted into a cell. Polars has no such limit, so the
# two readers would also disagree. 2**31 - 1 fits a C long everywhere (also on Windows).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def read_csv_table(path: Path, source: SourceConfig) -> CsvTable:
    """Read `path` as configured by `source` (encoding, delimiter); see CsvTable."""
    return cells_table(split_lines(path, source))


@dataclass(frozen=True)
class Lines:
    """A file decoded, its header found and its data lines cut out: everything of a read but the
    cells. `data` is the data lines joined by line feeds (trailing blank lines dropped), `count`
    of them, the first one physical line `first_line` (1-based). `spans` (first, last physical
    line of each record, header first) and `lines` (every physical line) are set only when a
    quoted field may span lines; otherwise record i is data line i, on line `first_line + i`."""

    path: Path
    source: SourceConfig
    headers: tuple[str, ...]
    delimiter: str
    data: str
    count: int
    first_line: int
    spans: list[tuple[int, int]] | None = None
    lines: list[str] | None = None


def split_lines(path: Path, source: SourceConfig) -> Lines:
    text = _read_text(path, source)
    # Trailing blank lines are not data; dropping them keeps the Polars row count comparable. A
    # blank line is one of whitespace alone (as `str.strip` sees it), so the last line that is
    # not blank holds the last character that is not whitespace, and the header line the first:
    # found without splitting the text into lines (a Python string per line was a good part of a
    # read), nor copying it (as `rstrip` and `lstrip` would).
    kept = len(text)
    while kept and text[kept - 1].isspace():
        kept -= 1
    if kept == 0:
        raise AdapterError(
            f"{path}: the file is empty (no header line). Export it again, or remove it from "
            "data/raw/ if it is not meant to be loaded."
        )
    end = text.find("\n", kept)
    end = len(text) if end == -1 else end
    lead = 0
    while text[lead].isspace():
        lead += 1
    header_start = text.rfind("\n", 0, lead) + 1
    first = text.count("\n", 0, header_start)
    header_stop = text.find("\n", header_start, end)
    header_stop = end if header_stop == -1 else header_stop
    delimiter = source.delimiter or _sniff(text[header_start:header_stop])
    if not _has_multiline_fields(text):
        data = text[header_stop + 1 : end]
        count = data.count("\n") + 1 if header_stop < end else 0
        headers = _parse_header([text[header_start:header_stop]], delimiter)
        return Lines(path, source, headers, delimiter, data, count, first + 2)
    # Record i starts on physical line i + first + 2 unless a quoted field spans lines; only then
    # is the csv module asked where each record starts.
    lines = text[:end].split("\n")
    spans = _record_spans(path, lines, first, delimiter)
    header_end = spans[0][1]
    headers = _parse_header(lines[first:header_end], delimiter)
    data_lines = lines[header_end:]
    return Lines(
        path,
        source,
        headers,
        delimiter,
        "\n".join(data_lines),
        len(data_lines),
        header_end + 1,
        spans,
        lines,
    )


def cells_table(read: Lines) -> CsvTable:
    """The CsvTable of one split file."""
    width = len(read.headers)
    data = read.data.encode("utf-8")
    if read.spans is None or read.lines is None:
        line_numbers = pl.int_range(
            read.first_line, read.first_line + read.count, dtype=pl.Int64, eager=True
        )
        raws = raw_lines(read.data, data, read.count)
        records = read.count
    else:
        lines = read.lines
        line_numbers = pl.Series([start for start, _ in read.spans[1:]], dtype=pl.Int64)
        raws = pl.Series(
            RAW, ["\n".join(lines[start - 1 : end]) for start, end in read.spans[1:]], pl.String
        )
        records = len(raws)
    cells = polars_cells(data, width, read.delimiter, records)
    if cells is None:
        cells = _csv_cells(
            read.path, read.data, read.first_line - 1, width, read.delimiter, records
        )
    frame = cells.with_columns(line_numbers.alias(LINE), raws)
    return CsvTable(read.path, read.source, read.headers, read.delimiter, clean(frame, width))


def raw_lines(text: str, data: bytes, count: int) -> pl.Series:
    """RAW: the `count` lines of `text` (`data` is its UTF-8), as the file has them. Split by
    Polars (a read with one column and no quoting) where it sees exactly those lines, else by
    Python. Where Polars gives null (a blank line), the row has no cell and `clean` drops it."""
    if count and "\x00" not in text:
        try:
            lines = pl.read_csv(
                data,
                has_header=False,
                schema={RAW: pl.String},
                separator="\x00",
                quote_char=None,
                raise_if_empty=False,
            ).to_series()
        except (pl.exceptions.PolarsError, ValueError):
            lines = None
        if lines is not None and lines.len() == count:
            return lines
    return pl.Series(RAW, text.split("\n") if count else [], dtype=pl.String)


def _read_text(path: Path, source: SourceConfig) -> str:
    def no_nul_bytes(data: bytes, codec: str) -> None:
        if b"\x00" in data and "16" not in codec and "32" not in codec:
            raise AdapterError(
                f"{path}: contains NUL bytes, so it is probably UTF-16 without a byte-order mark. "
                f"Set 'encoding: utf-16' for source {source.name!r} in sources.yaml."
            )

    text = read_file_text(
        path,
        source,
        unknown_hint="use for example utf-8, utf-16 or latin-1.",
        invalid_hint=f"Set 'encoding' for source {source.name!r} in sources.yaml to the file's "
        "encoding, for example latin-1 (Windows/Excel exports) or utf-16.",
        check=no_nul_bytes,
    )
    # Universal newlines, as editors show them: CRLF, and a bare CR (old Mac files, or lines pasted
    # from one into another file), end a line. A bare CR left inside a line would make the csv
    # module refuse the whole file ("new-line character seen in unquoted field"). StringIO's
    # newline translation is exactly that, in one pass where two str.replace calls took two; a
    # text without a CR has nothing to translate, and finding that out is a memchr.
    if "\r" not in text:
        return text
    return io.StringIO(text, newline=None).getvalue()


def _sniff(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _SNIFF_DELIMITERS}
    best = max(_SNIFF_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


# Every byte but the quote and the line feed, for bytes.translate to delete.
_NOT_QUOTE_OR_NEWLINE = bytes(b for b in range(256) if b not in b'"\n')


def _has_multiline_fields(text: str) -> bool:
    """Whether some quoted field may span lines: a line with an odd number of quote characters.

    Without a loop over lines (a Python step per line was a tenth of reading a small lab file):
    once only quotes and line breaks are left, removing pairs of adjacent quotes leaves a quote
    exactly where a line had an odd number of them, since no pair spans a line break. Done on
    UTF-8 bytes, where bytes.translate deletes the rest at memory speed: no other character's
    encoding holds the byte of a quote or of a line feed."""
    if '"' not in text:
        return False
    kept = text.encode("utf-8", "surrogatepass").translate(None, _NOT_QUOTE_OR_NEWLINE)
    return b'"' in kept.replace(b'""', b"")


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


def polars_cells(
    data: bytes,
    width: int,
    delimiter: str,
    records: int,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame | None:
    """Cells of the data lines (`data`, UTF-8) parsed by Polars; None if it does not see
    `records` records.

    With `columns` (cell names), only those: Polars still splits every field, but builds the
    strings of these columns alone (and no EXTRA)."""
    # One column more than the header catches rows with extra fields (an unquoted delimiter).
    schema = {cell(i): pl.String for i in range(width + 1)}
    positions = None if columns is None else [i for i in range(width) if cell(i) in columns]
    if not data:
        frame = pl.DataFrame(schema=schema)
    else:
        try:
            frame = pl.read_csv(
                data,
                has_header=False,
                schema=schema,
                columns=positions,
                separator=delimiter,
                quote_char='"',
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
        except (pl.exceptions.PolarsError, ValueError):
            return None
    if frame.height != records:
        return None
    if positions is not None:
        return frame.select(cell(i) for i in positions)
    return frame.rename({cell(width): EXTRA})


def _csv_cells(
    path: Path, data: str, offset: int, width: int, delimiter: str, records: int
) -> pl.DataFrame:
    """Cells parsed by the csv module, for files Polars cannot split the same way."""
    reader = csv.reader(io.StringIO(data), delimiter=delimiter, strict=True)
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


def clean(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """Cells stripped (blank -> null) and rows with no cell left dropped; a stack's FILE_INDEX
    stays, last. Which columns get stripped does not change the result, only the cost: stripping
    a tidy cell leaves it as it is, so a stack strips what any of its files needs."""
    names = [cell(i) for i in range(width)] + [EXTRA]
    carried = [FILE_INDEX] if FILE_INDEX in frame.columns else []
    # Stripping allocates a new string per cell; most columns of most files need none of it.
    stripped = frame.with_columns([tidy(n) for n in names if _untidy(frame.get_column(n))])
    # Filtering copies every column; most frames have no blank row to drop, and asking is cheap.
    filled = pl.any_horizontal([pl.col(n).is_not_null() for n in names])
    if not stripped.select(filled.all()).item():
        stripped = stripped.filter(filled)
    return stripped.select([*names, LINE, RAW, *carried])


# The bytes a cell that `tidy` changes may start or end with: ASCII whitespace, and every byte of
# a character beyond ASCII (a few of them are whitespace; a false alarm costs only a strip).
_MAYBE_SPACE = np.zeros(256, dtype=bool)
_MAYBE_SPACE[[9, 10, 11, 12, 13, 32]] = True
_MAYBE_SPACE[0x80:] = True
_INLINE = 12  # an Arrow string view holds a string of up to 12 bytes itself


def _untidy(column: pl.Series) -> bool:
    """Whether `tidy` may change a cell of `column`: an empty one, or one whose first or last
    byte may be whitespace. Read off the column's Arrow string views with numpy, without a copy:
    each view holds its length and first bytes (all of a short string), and points into a data
    buffer for the rest. A regex per cell (`^\\s|\\s$|^$`) cost a third of `clean`."""
    if column.null_count() == column.len():
        return False
    views = column.to_arrow(compat_level=pl.CompatLevel.newest())
    buffers = views.buffers()
    # Each view: length, then 12 bytes inline, or a 4-byte prefix, buffer index and offset.
    words = np.frombuffer(buffers[1], dtype=np.int32).reshape(-1, 4)
    words = words[views.offset : views.offset + len(views)]
    if column.null_count():
        words = words[column.is_not_null().to_numpy()]
    lengths = words[:, 0]
    if not lengths.all():
        return True
    view_bytes = words.view(np.uint8)
    if _MAYBE_SPACE[view_bytes[:, 4]].any():
        return True
    inline = lengths <= _INLINE
    short = np.flatnonzero(inline)
    if _MAYBE_SPACE[view_bytes[short, 3 + lengths[short]]].any():
        return True
    long = words[~inline]
    if not len(long):
        return False
    data = [np.frombuffer(b, dtype=np.uint8) for b in buffers[2:]]
    starts = np.cumsum([0, *(len(d) for d in data[:-1])])
    last = starts[long[:, 2]] + long[:, 3] + long[:, 0] - 1
    return bool(_MAYBE_SPACE[np.concatenate(data)[last]].any())


def tidy(name: str) -> pl.Expr:
    """A column of cells stripped, a blank one null: what every cell of a CsvTable is."""
    return pl.col(name).str.strip_chars().replace("", None).alias(name)


def column_values(
    path: Path, source: SourceConfig, expr: Callable[[CsvTable], pl.Expr]
) -> pl.Series:
    """The distinct values `expr` (built from the file's headers, as a table transform builds
    it) takes on the rows of `path`, reading only the one column it names where it can: the file
    is decoded and split as `read_csv_table` does, then Polars parses that column alone (or,
    when a quoted field spans lines or Polars splits the records differently, every cell as
    `read_csv_table` does). A literal is its own value, rows or not. Raises AdapterError as
    `read_csv_table` and `expr` do."""
    read = split_lines(path, source)
    width = len(read.headers)
    values = expr(CsvTable(path, source, read.headers, read.delimiter, pl.DataFrame()))
    names = values.meta.root_names()
    if not names:
        return pl.select(values).to_series()
    cells = None
    if read.spans is None and len(names) == 1 and names[0] in {cell(i) for i in range(width)}:
        data = read.data.encode("utf-8")
        cells = polars_cells(data, width, read.delimiter, read.count, columns=names)
    frame = cells_table(read).frame if cells is None else cells.select(tidy(names[0]))
    return frame.select(values).to_series().unique()
