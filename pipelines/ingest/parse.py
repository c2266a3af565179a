"""The second step: new or changed files parsed in batches, checked, and added to `raw_<source>`.

`parsed_batches` runs a format's `parse_batch` on each batch, the next ones in threads while the
current one is stored; `ingest_batch` moves a parsed batch's implausible rows to the rejects,
writes rejects and `ingest_state` rows, and hands the rows that passed to the store, which writes
them straight into `raw_<source>`'s new parts (`store_writes.appending`: one part per shard for all
the batches, the rows written once). `plausible` applies the same rules to one file outside a run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from pipelines.adapters import FORMATS, AdapterError, ParseResult
from pipelines.adapters.base import FILE_INDEX, BatchResult
from pipelines.config import SourceConfig
from pipelines.ingest.tables import INGEST_STATE_SCHEMA, OWNERSHIP_KEY
from pipelines.schema import REJECT_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.transforms.plausibility import FUTURE_REASON, apply_plausibility
from pipelines.warehouse import ident, insert_frame

# Files parsed together: enough to spread the fixed cost of a parse over many small files, few
# enough that a batch of large exports stays far below the memory target. Memory follows the
# bytes (a parse holds about 15 times its batch's bytes), and up to PARSE_AHEAD + 1 batches are
# in memory at once, so a batch is cut at BATCH_BYTES or at BATCH_FILES, whichever comes first.
# At 8 MB the parse of 3,000 monthly exports (about 110 KB each) peaked 400 MB lower than at
# 24 MB, for about 8% more parse time (issue 19).
BATCH_FILES = 5000
BATCH_BYTES = 8 * 1024 * 1024
# A batch of many small files (a night's: a day's export of 4 KB per person who synced) is cut
# sooner, at SMALL_BATCH_BYTES once it holds SMALL_BATCH_FILES files: they spread a batch's fixed
# cost already, and the batches in memory then hold as much however many people synced. At 8 MB,
# the night of 10,000 people (37 MB) held three batches, 24 MB of files, where that of 2,000
# people held its 7 MB (issue 19). Monthly exports still go 8 MB at a time: cut at 2 MB, a first
# build's parse took 50% longer.
SMALL_BATCH_BYTES = 2 * 1024 * 1024
SMALL_BATCH_FILES = 256
# Batches being parsed at once, each in a thread of its own, while the one before is stored. A
# parse is part Python (decoding, splitting lines: holding the GIL) and part Polars (not holding
# it), so one parse alone leaves a core idle much of the time; two keep both cores busy.
PARSE_AHEAD = 2
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


def batches(listing: pl.DataFrame, max_files: int, max_bytes: int) -> Iterator[pl.DataFrame]:
    """The rows of `listing` (`LISTING_SCHEMA`) in order, cut into runs of at most `max_files`
    files and `max_bytes` bytes (a file larger than that on its own is a batch of one), and of
    at most SMALL_BATCH_BYTES once a run holds SMALL_BATCH_FILES files."""
    start = size = 0
    for end, file_bytes in enumerate(listing["size_bytes"]):
        files, over = end - start, size + file_bytes
        many_small = files >= SMALL_BATCH_FILES and over > SMALL_BATCH_BYTES
        if files and (files == max_files or over > max_bytes or many_small):
            yield listing.slice(start, end - start)
            start, size = end, 0
        size += file_bytes
    if listing.height > start:
        yield listing.slice(start)


def parsed_batches(
    source: SourceConfig, raw_dir: Path, batches: Iterable[pl.DataFrame]
) -> Generator[tuple[pl.DataFrame, BatchResult], None, None]:
    """Each of `batches` (listings of files under `raw_dir`) with what the source's format
    parsed of it, in order. Past the first batch, up to PARSE_AHEAD batches are parsed in threads
    while the caller stores the one before (parsing writes nothing, so the stored result is the
    same; memory holds at most PARSE_AHEAD + 1 parsed batches). A single batch (a night's) is
    parsed here, without threads."""

    def parse(batch: pl.DataFrame) -> BatchResult:
        return FORMATS[source.format].parse_batch([raw_dir / p for p in batch["path"]], source)

    todo = iter(batches)
    first = next(todo, None)
    if first is None:
        return
    second = next(todo, None)
    if second is None:
        yield first, parse(first)
        return
    pool = ThreadPoolExecutor(max_workers=PARSE_AHEAD, thread_name_prefix="parse")
    pending: deque[tuple[pl.DataFrame, Future[BatchResult]]] = deque()

    def submit(batch: pl.DataFrame) -> None:
        pending.append((batch, pool.submit(parse, batch)))

    try:
        submit(first)
        submit(second)
        while pending:
            batch, future = pending.popleft()
            parsed = future.result()
            upcoming = next(todo, None)
            if upcoming is not None:
                submit(upcoming)
            yield batch, parsed
    finally:
        # On an error (here or in the caller) the batches not started are dropped; the running
        # ones finish, and their results with them.
        pool.shutdown(wait=True, cancel_futures=True)


def ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    target: str,
    raw_dir: Path,
    batch: pl.DataFrame,
    parsed: BatchResult,
    fingerprint: str,
    today: date,
    store_rows: Callable[[pl.DataFrame], None],
    track: bool,
) -> None:
    """Apply the plausibility rules to `parsed` (the format's `parse_batch` of `batch`, a
    listing of files under `raw_dir`), store
    rejects and state, and give the rows that passed (`raw_<source>`'s columns) to `store_rows`.
    With `track`, their ownership keys go to `_affected` for `settle`."""
    schema = TARGET_SCHEMAS[target]
    file_ids = dict(enumerate(batch["file_id"]))
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

    paths = dict(enumerate(batch["path"]))
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
                "file_id": file_id,
                "fingerprint": fingerprint,
                "checked_on": today,
                "recheck": i in future,
                "rows_read": parsed.rows_read[i] if i not in parsed.errors else 0,
                "rows_rejected": rejected.get(i, 0) if i not in parsed.errors else 0,
                "error": (
                    error_message(raw_dir / path, source, parsed.errors[i])
                    if i in parsed.errors
                    else None
                ),
                "ingested_at": now,
            }
            for i, (file_id, path) in enumerate(batch.select("file_id", "path").iter_rows())
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
    expanded = implausible.with_columns(pl.int_ranges(0, n).alias("__nth")).explode(
        "__nth", empty_as_null=True
    )
    return expanded.with_columns(
        pl.when(pl.col("__nth") > 0)
        .then(pl.col("reason") + " (another input line of the same day)")
        .otherwise(pl.col("reason"))
        .alias("reason")
    ).drop("__nth", _LINES)
