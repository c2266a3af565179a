"""`sync_source`, the entry point: the ingest steps in order, in the caller's transaction.

List and hash the files (`files`), forget the rows of changed and removed files, parse and store
the new ones (`parse`), settle ownership (`settle`), count rows per file (`accounting`).
`ingest_source` runs the same against a private DuckDB and returns frames (tests, tools).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Collection
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from pipelines import store, store_writes
from pipelines.config import SourceConfig
from pipelines.ingest.accounting import (
    FilesSummary,
    file_records,
    files_summary,
    files_to_recount,
    record_files,
    recorded_files,
    recorded_listing,
)
from pipelines.ingest.files import HashMemo, first_copies, list_files
from pipelines.ingest.fingerprints import source_fingerprint
from pipelines.ingest.parse import (
    BATCH_BYTES,
    BATCH_FILES,
    batches,
    ingest_batch,
    parsed_batches,
)
from pipelines.ingest.scope import run_scope, scoped_selection
from pipelines.ingest.settle import settle, staging_copy
from pipelines.ingest.tables import (
    LINES_TO_CHECK,
    OWNERSHIP_KEY,
    REJECTED_ROWS_SCHEMA,
    ensure_tables,
    raw_schema,
    raw_table,
    staging_table,
    target_table,
)
from pipelines.schema import TARGET_SCHEMAS, conform
from pipelines.warehouse import ident, table_exists

# DuckDB's own working memory while settling ownership over the whole history; beyond it, it
# spills to disk (`<warehouse>.tmp`) rather than growing.
DUCKDB_MEMORY_LIMIT = "1GB"


@dataclass
class SyncResult:
    """What one `sync_source` call did."""

    summary: FilesSummary  # the files matched now, as `ingest_files` records them
    rows_loaded: int  # rows in the staging table
    rows_rejected: int
    files_parsed: int  # files read this time (the others were already in the warehouse)
    keys_settled: int | None  # ownership keys settled again; None when all were (a full rebuild)
    files_deferred: int = 0  # new, changed or removed files left for a run of their shards
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SourceIngest:
    """Everything one source contributes to the warehouse, as frames (see `ingest_source`)."""

    rows: pl.DataFrame  # canonical rows of the kind, plus file_id and source
    files: pl.DataFrame  # INGEST_FILES_SCHEMA
    rejects: pl.DataFrame  # REJECTED_ROWS_SCHEMA
    files_parsed: int = 0  # files actually parsed this time


def sync_source(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    raw_dir: Path,
    *,
    memo_path: Path | None = None,
    today: date | None = None,
    paths: list[str] | None = None,
    shards: Collection[int] | None = None,
) -> SyncResult:
    """Bring `raw_<source>`, `stg_<source>`, `ingest_state`, `ingest_files` and `rejected_rows`
    up to date with the source's files, and list in `lines_to_check` the files whose staging rows
    changed; see the module docstring. `today` (default: the current date) is the reference for
    the rule on future dates. `paths` are the source's files when the caller has listed them
    already (`SourceConfig.files`, relative to `raw_dir`): listing tens of thousands of files is
    a good part of a nightly run's ingest. `shards`: a run of some person shards handles only
    the files of their people (`pipelines.ingest.scope`); None, or every shard, handles all."""
    today = today or date.today()
    clock = _Clock()
    target = target_table(source)
    schema = TARGET_SCHEMAS[target]
    fingerprint = source_fingerprint(source)
    raw = ident(raw_table(source.name))
    conn.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    ensure_tables(conn, source.name, schema)
    raw_columns = raw_schema(schema)

    with clock("list and hash files"):
        memo = HashMemo(memo_path)
        listing = list_files(source, raw_dir, memo, paths)
        # Saved and let go now, not at the end: it describes the files, whatever becomes of the
        # run, and its rows were held through the night's parse (issue 19).
        memo.save()
        del memo

    # Each stored file, and whether its rows can be kept: read by this parser, and not due to be
    # read again today (a row that was in the future). A frame, not a tuple per file: a night
    # reads the states of the whole history.
    states = conn.execute(
        "SELECT file_id, coalesce(fingerprint = ? AND checked_on <= ? "
        "AND NOT (coalesce(recheck, false) AND checked_on < ?), false) AS reusable "
        "FROM ingest_state WHERE source = ?",
        [fingerprint, today, today, source.name],
    ).pl()
    reusable = states.filter("reusable")["file_id"]
    as_stored: frozenset[str] = frozenset()
    deferred = 0
    scope = run_scope(conn, shards)
    if scope:
        with clock("select the shards' files"):
            chosen = scoped_selection(
                conn, source, raw_dir, listing, set(states["file_id"]), set(reusable), scope
            )
        listing, as_stored, deferred = chosen.listing, chosen.kept, chosen.deferred
    # A file left for a run of its shards keeps its rows as stored, whatever its state says.
    keepable = pl.concat([reusable, pl.Series("file_id", sorted(as_stored), dtype=pl.String)])
    firsts = first_copies(listing).with_columns(
        pl.col("file_id").is_in(keepable.implode()).alias("keep")
    )
    to_parse = firsts.filter(~pl.col("keep"))
    any_current = bool(firsts["keep"].any())
    full = not any_current or not table_exists(conn, staging_table(source.name))

    order = firsts.select("file_id", pl.col("order").alias("ord"), "path", "keep")
    conn.register("_order_frame", order.to_arrow())
    conn.execute("CREATE OR REPLACE TEMP TABLE _order AS SELECT * FROM _order_frame")
    conn.unregister("_order_frame")
    # What the recount at the end needs of the listing: after a full run every file; else the
    # files parsed and those listed otherwise than recorded (any other file the settle moves
    # keys of is listed as `ingest_files` records it). The rest is let go before the parse: it
    # was held through the parse and the settle, 26 MB at 181,000 files (issue 19).
    if full:
        relisted, counted = None, listing
    else:
        with clock("compare the listing with the records"):
            relisted = files_to_recount(conn, source.name, listing, to_parse["file_id"])
            counted = listing.filter(pl.col("file_id").is_in(relisted.implode()))
    del listing, firsts, order, states, reusable, keepable
    keys = ", ".join(ident(k) for k in OWNERSHIP_KEY[target])
    # The keys to settle again, as hashes (to match rows) and as values (to narrow the scans).
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE _affected AS SELECT hash({keys}) AS h, {keys} "
        f"FROM {raw} LIMIT 0"
    )
    # Rows of files that are gone, changed, or were read with an older parser.
    gone = "file_id NOT IN (SELECT file_id FROM _order WHERE keep)"

    with clock("forget changed and removed files"):
        # Every file with rows in raw_<source> has its ingest_state row (both are written and
        # deleted together), so when no state row is gone, no raw row is: most nights, and then
        # the scans of the whole history below are skipped. Without a current file, every raw
        # row is gone.
        row = conn.execute(
            f"SELECT count(*) FROM ingest_state WHERE source = ? AND {gone}", [source.name]
        ).fetchone()
        forgotten = bool(row and row[0])
        if not any_current:
            store.replace_all(conn, raw_table(source.name), pl.DataFrame(schema=raw_columns))
        elif forgotten:
            if not full:
                conn.execute(
                    f"INSERT INTO _affected SELECT DISTINCT hash({keys}), {keys} FROM {raw} "
                    f"WHERE {gone}"
                )
            store_writes.forget(conn, raw_table(source.name), f"t.{gone}")
        # A gone file's staging rows go with its keys (they are in _affected), so there is
        # nothing of it left to check; a null file_id (all files) is never "gone".
        for table in ("rejected_rows", "ingest_state", LINES_TO_CHECK):
            conn.execute(f"DELETE FROM {table} WHERE source = ? AND {gone}", [source.name])

    # Without a current file, raw_<source> is written whole, and its staging rows are mostly
    # the raw rows as they are: written beside them, so the settle need not read them back.
    copy = staging_copy(conn, source) if not any_current else None
    try:
        with (
            clock("parse, check and store new files"),
            store_writes.appending(
                conn,
                raw_table(source.name),
                copy,
                max_frames=None if full else store_writes.INCREMENTAL_FRAMES,
            ) as store_rows,
        ):
            cut = batches(to_parse, BATCH_FILES, BATCH_BYTES)
            # Closed at once on an error, so no batch is parsed for nothing after it.
            with closing(parsed_batches(source, raw_dir, cut)) as parsed_all:
                for batch, parsed in parsed_all:
                    ingest_batch(
                        conn,
                        source,
                        target,
                        raw_dir,
                        batch,
                        parsed,
                        fingerprint,
                        today,
                        store_rows,
                        track=not full,
                    )

        with clock("settle ownership"):
            settled = settle(conn, source, target, full, None if copy is None else copy.files)
    finally:
        if copy is not None:
            shutil.rmtree(copy.folder, ignore_errors=True)

    with clock("count rows per file"):
        if relisted is None or settled is None:
            recount = None
            record_files(conn, source.name, file_records(conn, source, counted), None)
        else:
            moved = settled.files.filter(~settled.files.is_in(relisted.implode()))
            recount = pl.concat([relisted, moved])
            counted = pl.concat([counted, recorded_listing(conn, source.name, moved.to_list())])
            counted = counted.sort("modified_at", "path", maintain_order=True)  # listing order
            record_files(conn, source.name, file_records(conn, source, counted), recount)
        if recount is None or not recount.is_empty():
            # A renamed file keeps its rows (same content); its rejects should show the new name.
            conn.execute(
                "UPDATE rejected_rows SET path = o.path FROM _order o "
                "WHERE rejected_rows.source = ? AND rejected_rows.file_id = o.file_id "
                "AND rejected_rows.path IS DISTINCT FROM o.path",
                [source.name],
            )
        summary = files_summary(conn, source.name)
    for temp in ("_order", "_affected"):
        conn.execute(f"DROP TABLE IF EXISTS {temp}")
    return SyncResult(
        summary=summary,
        rows_loaded=summary.rows_loaded,
        rows_rejected=summary.rows_rejected,
        files_parsed=to_parse.height,
        keys_settled=None if settled is None else settled.keys,
        files_deferred=deferred,
        seconds=clock.seconds,
    )


def ingest_source(
    source: SourceConfig, raw_dir: Path, cache_dir: Path | None = None, today: date | None = None
) -> SourceIngest:
    """`sync_source` into a private DuckDB, returned as frames in file order.

    Without `cache_dir` every file is read (an in-memory database); with it, the database and the
    hash memo live in `cache_dir`, so a second call reads only new or changed files, exactly as
    the nightly run does against the warehouse.
    """
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    database = ":memory:" if cache_dir is None else str(cache_dir / f"{source.name}.duckdb")
    memo = None if cache_dir is None else cache_dir / f"{source.name}.hashes.parquet"
    # The raw and staging tables live in a store (`pipelines.store`): beside the database, or a
    # temporary folder for an in-memory one.
    scratch = tempfile.TemporaryDirectory(prefix="gutsignal-store-") if cache_dir is None else None
    conn = duckdb.connect(database)
    try:
        store.attach(
            conn,
            Path(scratch.name) if scratch else store.beside(Path(database)),
            read_only=False,
        )
        conn.execute("BEGIN TRANSACTION")
        result = sync_source(conn, source, raw_dir, memo_path=memo, today=today)
        conn.execute("COMMIT")
        store.collect(conn)
        files = recorded_files(conn, source.name)
        order = files.filter(pl.col("status") == "loaded").select(
            "file_id", pl.int_range(pl.len()).alias("_ord")
        )
        conn.register("_files", order.to_arrow())
        rows = conn.sql(
            f"SELECT s.* EXCLUDE (_row) FROM {ident(staging_table(source.name))} s "
            "JOIN _files f USING (file_id) ORDER BY f._ord, s._row"
        ).pl()
        rejects = conn.sql(
            "SELECT r.* FROM rejected_rows r JOIN _files f USING (file_id) WHERE r.source = ? "
            "ORDER BY f._ord, r.line",
            params=[source.name],
        ).pl()
    finally:
        conn.close()
        if scratch:
            scratch.cleanup()
    return SourceIngest(
        rows=rows,
        files=files,
        rejects=conform(rejects, REJECTED_ROWS_SCHEMA),
        files_parsed=result.files_parsed,
    )


class _Clock:
    """Seconds per step, reported in the run's metadata and by the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> _Step:
        return _Step(self, name)


class _Step:
    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.clock.seconds[self.name] = self.clock.seconds.get(self.name, 0.0) + elapsed
