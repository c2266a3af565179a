"""Many CSV files parsed with one adapter transform per group of files that share a layout.

`parse_csv_batch` is what a CSV format's `parse_batch` runs: files are read one by one (`read`),
grouped by headers and delimiter, their cells parsed in one Polars read where that is provably the
same as one read per file, and each group stacked (`stack_tables`) so the transform runs once;
a failing stack is split until the failure sits on its own file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.adapters._csv.read import (
    Lines,
    cells_table,
    clean,
    polars_cells,
    raw_lines,
    split_lines,
)
from pipelines.adapters._csv.table import LINE, CsvTable
from pipelines.adapters.base import FILE_INDEX, AdapterError, BatchResult
from pipelines.config import SourceConfig

TableTransform = Callable[[CsvTable], tuple[pl.DataFrame, pl.DataFrame]]
"""An adapter's work after reading: a table (one file, or a stack) -> (rows, rejects). For a stack
both frames must end with FILE_INDEX (see `file_index_schema`)."""

# A Polars (Rust) panic is a BaseException; KeyboardInterrupt and SystemExit must still stop a run.
_FAILURES = (Exception, pl.exceptions.PanicException)


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
    split: dict[tuple[tuple[str, ...], str], dict[int, Lines]] = {}
    for i, path in enumerate(paths):
        try:
            read = split_lines(path, source)
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
    group: dict[int, Lines], errors: dict[int, BaseException]
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
            tables[i] = cells_table(read)
        except _FAILURES as exc:
            errors[i] = exc
    if stacked is None or len(stacked[0]) != len(group):
        return tables, None
    return tables, stacked[1]


def _read_stack(group: dict[int, Lines]) -> tuple[dict[int, CsvTable], CsvTable] | None:
    """The cells of files without multi-line fields and with the same layout, parsed by one Polars
    read of all their data lines: per file, the tables `cells_table` gives, and their stack.

    For a small file the fixed cost of a read and of `clean` (a few queries) is far more than its
    rows. One read gives the same cells as one read per file because no line break falls inside a
    field: no line has an odd number of quotes, and Polars must find exactly one record per line
    (otherwise None, and the caller reads file by file, as before). So each line is parsed on its
    own, whichever file it comes from."""
    reads = list(group.values())
    first = reads[0]
    width = len(first.headers)
    text = "\n".join(read.data for read in reads if read.count)
    data = text.encode("utf-8")
    counts = [read.count for read in reads]
    cells = polars_cells(data, width, first.delimiter, sum(counts))
    if cells is None:
        return None
    line_numbers = np.concatenate(
        [np.arange(read.first_line, read.first_line + read.count, dtype=np.int64) for read in reads]
    )
    index = np.repeat(np.fromiter(group, dtype=np.int64, count=len(group)), counts)
    frame = clean(
        cells.with_columns(
            pl.Series(LINE, line_numbers, dtype=pl.Int64),
            raw_lines(text, data, sum(counts)),
            pl.Series(FILE_INDEX, index, dtype=pl.Int64),
        ),
        width,
    ).rechunk()
    # Rows stay in file order through `clean`, so each file is one contiguous slice.
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
