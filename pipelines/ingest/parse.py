"""The second step: new or changed files parsed in batches, checked, and added to `raw_<source>`.

`ingest_batch` runs a format's `parse_batch` on a batch, moves implausible rows to the rejects,
writes rejects and `ingest_state` rows, and hands the rows that passed to the store, which writes
them straight into `raw_<source>`'s new parts (`store_writes.appending`: one part per shard for all
the batches, the rows written once). `plausible` applies the same rules to one file outside a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from pipelines.adapters import FORMATS, AdapterError, ParseResult
from pipelines.adapters.base import FILE_INDEX
from pipelines.config import SourceConfig
from pipelines.ingest.files import FileInfo
from pipelines.ingest.tables import INGEST_STATE_SCHEMA, OWNERSHIP_KEY
from pipelines.schema import REJECT_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.transforms.plausibility import FUTURE_REASON, apply_plausibility
from pipelines.warehouse import ident, insert_frame

# Files parsed together: enough to spread the fixed cost of a parse over many small files, few
# enough that a batch of large exports stays far below the memory target. Memory follows the
# bytes, so a batch is cut at BATCH_BYTES (200 monthly exports, as batches of 200 files were) or
# at BATCH_FILES, whichever comes first: a night's one small file per person (2,000 files, 10 MB)
# is one batch, where 200 files at a time made it ten.
BATCH_FILES = 5000
BATCH_BYTES = 24 * 1024 * 1024
# A row's `input_lines` carried through the plausibility rules onto its rejects.
_LINES = "__input_lines"


def plausible(target: str, result: ParseResult, today: date) -> ParseResult:
    """`result` with the rows that break a plausibility rule moved to its rejects (same counts).

    For one file outside a run (`gutsignal validate`); a run applies the rules per batch.
    """
    rows = result.rows
    if "input_lines" in rows.columns:
        rows = rows.with_columns(pl.col("input_lines").alias(_LINES))
    kept, implausible = apply_plausibility(target, rows, today)
    kept = kept.drop(_LINES, strict=False)
    if implausible.height == 0:
        return result
    implausible = conform(_one_reject_per_line(implausible), REJECT_SCHEMA)
    rejects = pl.concat([conform(result.rejects, REJECT_SCHEMA), implausible], how="vertical").sort(
        "line", maintain_order=True
    )
    return ParseResult(rows=kept, rejects=rejects, rows_read=result.rows_read)


def error_message(path: Path, source: SourceConfig, exc: BaseException) -> str:
    """What a user reads for a file that could not be loaded."""
    if isinstance(exc, AdapterError):
        return str(exc)
    return (
        f"{path}: unexpected error while reading it as format {source.format!r} "
        f"({type(exc).__name__}: {exc}). This is a bug in gutsignal: every file should load or "
        "be rejected with a reason; please report it. The source's other files were loaded."
    )


def batches(items: list[FileInfo], max_files: int, max_bytes: int) -> Iterator[list[FileInfo]]:
    """`items` in order, cut into runs of at most `max_files` files and `max_bytes` bytes (a file
    larger than that on its own is a batch of one)."""
    batch: list[FileInfo] = []
    size = 0
    for info in items:
        if batch and (len(batch) == max_files or size + info.size_bytes > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += info.size_bytes
    if batch:
        yield batch


def ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    target: str,
    batch: list[FileInfo],
    fingerprint: str,
    today: date,
    store_rows: Callable[[pl.DataFrame], None],
    track: bool,
) -> None:
    """Parse `batch`, apply the plausibility rules, store rejects and state, and give the rows
    that passed (`raw_<source>`'s columns) to `store_rows`. With `track`, their ownership keys go
    to `_affected` for `settle`."""
    schema = TARGET_SCHEMAS[target]
    parsed = FORMATS[source.format].parse_batch([i.path for i in batch], source)
    file_ids = {i: info.file_id for i, info in enumerate(batch)}
    frame_schema = {**schema, FILE_INDEX: pl.Int64}
    rows = (
        conform(parsed.rows, frame_schema)
        if parsed.rows.width
        else pl.DataFrame(schema=frame_schema)
    )
    if "input_lines" in rows.columns:
        rows = rows.with_columns(pl.col("input_lines").alias(_LINES))
    kept, implausible = apply_plausibility(target, rows, today)

    reject_schema = {**REJECT_SCHEMA, FILE_INDEX: pl.Int64}
    implausible = conform(_one_reject_per_line(implausible), reject_schema)
    adapter_rejects = (
        conform(parsed.rejects, reject_schema)
        if parsed.rejects.width
        else pl.DataFrame(schema=reject_schema)
    )
    rejects = pl.concat([adapter_rejects, implausible])
    rejected = dict(rejects.group_by(FILE_INDEX).len().iter_rows())
    future = set(
        implausible.filter(pl.col("reason").str.starts_with(FUTURE_REASON))[FILE_INDEX].to_list()
    )

    to_id = pl.col(FILE_INDEX).replace_strict(file_ids, return_dtype=pl.String)
    stored = kept.select(
        *schema, to_id.alias("file_id"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row")
    )
    if stored.height:
        store_rows(stored)
        if track:
            keys = ", ".join(ident(k) for k in OWNERSHIP_KEY[target])
            # Distinct first: DuckDB keeps a frame registered in a transaction until it ends.
            batch_keys = stored.select(OWNERSHIP_KEY[target]).unique()
            conn.register("_batch_keys", batch_keys.to_arrow())
            try:
                conn.execute(f"INSERT INTO _affected SELECT hash({keys}), {keys} FROM _batch_keys")
            finally:
                conn.unregister("_batch_keys")

    paths = {i: info.rel_path for i, info in enumerate(batch)}
    insert_frame(
        conn,
        "rejected_rows",
        rejects.sort(FILE_INDEX, "line", maintain_order=True).select(
            to_id.alias("file_id"),
            pl.lit(source.name).alias("source"),
            pl.col(FILE_INDEX).replace_strict(paths, return_dtype=pl.String).alias("path"),
            *REJECT_SCHEMA,
        ),
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    state = pl.DataFrame(
        [
            {
                "source": source.name,
                "file_id": info.file_id,
                "fingerprint": fingerprint,
                "checked_on": today,
                "recheck": i in future,
                "rows_read": parsed.rows_read[i] if i not in parsed.errors else 0,
                "rows_rejected": rejected.get(i, 0) if i not in parsed.errors else 0,
                "error": (
                    error_message(info.path, source, parsed.errors[i])
                    if i in parsed.errors
                    else None
                ),
                "ingested_at": now,
            }
            for i, info in enumerate(batch)
        ],
        schema=INGEST_STATE_SCHEMA,
    )
    insert_frame(conn, "ingest_state", state)


def _one_reject_per_line(implausible: pl.DataFrame) -> pl.DataFrame:
    """Implausible rows that stand for several input lines (a day summed from meal rows) as one
    reject per line, so rows_rejected and rejected_rows count input lines like every other count.
    The adapter keeps only the day's first line, so the others repeat it, and their reason says
    so with a fixed suffix (a reason stays a stable category)."""
    if _LINES not in implausible.columns:
        return implausible
    n = pl.col(_LINES).fill_null(1).clip(lower_bound=1)
    expanded = implausible.with_columns(pl.int_ranges(0, n).alias("__nth")).explode("__nth")
    return expanded.with_columns(
        pl.when(pl.col("__nth") > 0)
        .then(pl.col("reason") + " (another input line of the same day)")
        .otherwise(pl.col("reason"))
        .alias("reason")
    ).drop("__nth", _LINES)
