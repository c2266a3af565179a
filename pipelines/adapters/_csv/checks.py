"""Checks that adapters run on a table's rows, and the split into loaded rows and rejects.

After reading, an adapter builds its checks (`pipelines.rules.Check`: a blank person id, surplus
fields, a cell that is not a number) and `split_rejects` applies them in order, each reject with
a stable reason and the offending cell in `value`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipelines.adapters._csv.table import EXTRA, LINE, RAW, CsvTable, cell, file_index_schema
from pipelines.adapters.base import FILE_INDEX, AdapterError
from pipelines.rules import Check, first_failing, reject_fields
from pipelines.schema import REJECT_SCHEMA, empty

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
