"""The last step: every input line accounted for, per file.

`file_records` counts each file's rows read, loaded, rejected and duplicate for `ingest_files`
(rows_read == rows_loaded + rows_rejected + rows_duplicate), and `record_files` writes the rows
that changed. A night counts again only the files whose rows can have changed
(`files_to_recount`). `files_summary` is what the ingest asset reports of the records, and
`recorded_files` all of them as a frame; `check_unique_lines` is the nightly check that no raw
file line loads twice, reading only the files listed in `lines_to_check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from pipelines.config import SourceConfig
from pipelines.ingest.files import LISTING_SCHEMA
from pipelines.ingest.tables import LINES_TO_CHECK, raw_table, staging_table, target_table
from pipelines.schema import INGEST_FILES_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.warehouse import ident, table_exists


def file_records(
    conn: duckdb.DuckDBPyConnection, source: SourceConfig, listing: pl.DataFrame
) -> pl.DataFrame:
    """One INGEST_FILES_SCHEMA row per file of `listing` (`LISTING_SCHEMA`), its counts from the
    stored rows and state. Every file of an identity (its copies) must be in `listing`: the
    oldest is the one read, the others its duplicates."""
    raw, stg = ident(raw_table(source.name)), ident(staging_table(source.name))
    # Counts are of input lines: a row standing for several (input_lines) counts each of them.
    lines = (
        "sum(coalesce(input_lines, 1))"
        if "input_lines" in TARGET_SCHEMAS[target_table(source)]
        else "count(*)"
    )
    # Every file's counts, a few MB, and only the listed ones kept by the joins below: picking
    # the listed files out of every row (a semi-join) took longer than counting them all.
    loaded = conn.sql(f"SELECT file_id, {lines} AS loaded FROM {stg} GROUP BY ALL").pl()
    stored = conn.sql(f"SELECT file_id, {lines} AS stored FROM {raw} GROUP BY ALL").pl()
    conn.register("_counted", listing.select("file_id").unique().to_arrow())
    try:
        state = conn.execute(
            "SELECT file_id, rows_read, rows_rejected, error, ingested_at, true AS has_state "
            "FROM ingest_state WHERE source = ? AND file_id IN (SELECT file_id FROM _counted)",
            [source.name],
        ).pl()
    finally:
        conn.unregister("_counted")
    rows = (
        listing.with_columns(
            pl.col("file_id").is_first_distinct().alias("first"),
            pl.col("path").first().over("file_id").alias("first_path"),
        )
        .join(state, on="file_id", how="left", maintain_order="left")
        .join(loaded, on="file_id", how="left", maintain_order="left")
        .join(stored, on="file_id", how="left", maintain_order="left")
    )
    stateless = rows.filter(pl.col("has_state").is_null())["path"]
    if stateless.len():
        raise RuntimeError(
            f"source {source.name!r}: no ingest_state row for {stateless.to_list()[:5]} "
            "(a bug in the ingest: every listed file is parsed or kept with its state)"
        )
    failed = pl.col("error").is_not_null()
    # Same bytes under another name: nothing new, every row is a duplicate.
    copy = ~pl.col("first")
    loaded_lines = pl.col("loaded").fill_null(0)
    records = rows.select(
        "file_id",
        pl.lit(source.name).alias("source"),
        "path",
        "sha256",
        "size_bytes",
        "modified_at",
        pl.when(failed).then(0).otherwise(pl.col("rows_read")).alias("rows_read"),
        pl.when(failed | copy).then(0).otherwise(loaded_lines).alias("rows_loaded"),
        pl.when(failed | copy).then(0).otherwise(pl.col("rows_rejected")).alias("rows_rejected"),
        pl.when(failed)
        .then(0)
        .when(copy)
        .then(pl.col("rows_read"))
        .otherwise(pl.col("stored").fill_null(0) - loaded_lines)
        .alias("rows_duplicate"),
        pl.when(failed)
        .then(pl.lit("error"))
        .when(copy)
        .then(pl.lit("duplicate_file"))
        .otherwise(pl.lit("loaded"))
        .alias("status"),
        pl.when(failed)
        .then(pl.col("error"))
        .when(copy)
        .then(pl.lit("same content as ") + pl.col("first_path"))
        .alias("error"),
        "ingested_at",
    )
    return conform(records, INGEST_FILES_SCHEMA)


def record_files(
    conn: duckdb.DuckDBPyConnection,
    source_name: str,
    records: pl.DataFrame,
    files: pl.Series | None,
) -> None:
    """Make the source's `ingest_files` rows of the identities `files` (file ids; None: every
    file of the source) be `records` (`file_records` of the listed ones), deleting and
    inserting only the rows that differ; the other files' rows stay as they are. Every row
    written again, a night that changed a thousand files' counts held all 82,000 rows in its
    transaction until commit (issue 19: 33 MB at 10,000 people, the night's ingest's peak).
    Rows are matched by a hash of all their values (nulls included), as `files_to_recount`
    compares listings: comparing the rows themselves held both sides' in DuckDB's hash tables,
    which cost more than the rewrite."""
    row = "hash(" + ", ".join(ident(c) for c in INGEST_FILES_SCHEMA) + ")"
    columns = ", ".join(ident(c) for c in INGEST_FILES_SCHEMA)
    named = pl.Series("file_id", [], pl.String) if files is None else files
    conn.register("_records", records.to_arrow())
    conn.register("_recounted", named.to_frame("file_id").to_arrow())
    try:
        conn.execute(
            "DELETE FROM ingest_files WHERE source = ? "
            + ("" if files is None else "AND file_id IN (SELECT file_id FROM _recounted) ")
            + f"AND {row} NOT IN (SELECT {row} FROM _records)",
            [source_name],
        )
        conn.execute(
            f"INSERT INTO ingest_files ({columns}) SELECT {columns} FROM _records "
            f"WHERE {row} NOT IN (SELECT {row} FROM ingest_files WHERE source = ?)",
            [source_name],
        )
    finally:
        conn.unregister("_records")
        conn.unregister("_recounted")


# A source's files in the order they were listed (`list_files`: oldest first, then by path).
_LISTING_ORDER = "ORDER BY modified_at, path"
PREVIEW_FILES = 20


@dataclass(frozen=True)
class FilesSummary:
    """What the ingest asset reports of a source's `ingest_files` rows, counted by DuckDB: a
    night over 60,000 files held a Polars row of each (with its path, hash and error) to report
    a few sums and 20 of them, memory that grew with the history (issue 19)."""

    files: int
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_duplicate: int
    unbalanced: int  # files whose rows_read != rows_loaded + rows_rejected + rows_duplicate
    not_loaded: int  # files that could not be read, or copies of another file
    newest: datetime | None  # the newest file's modification time
    errors: list[tuple[str, str]]  # (path, reason) of each file that could not be read
    preview: pl.DataFrame  # the first PREVIEW_FILES files, oldest first: path, status, counts


def files_summary(conn: duckdb.DuckDBPyConnection, source_name: str) -> FilesSummary:
    """`FilesSummary` of the source's files as `ingest_files` records them."""
    where = "FROM ingest_files WHERE source = ?"
    row = conn.execute(
        "SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), "
        "coalesce(sum(rows_rejected), 0), coalesce(sum(rows_duplicate), 0), "
        "count(*) FILTER (rows_read <> rows_loaded + rows_rejected + rows_duplicate), "
        f"count(*) FILTER (status <> 'loaded'), max(modified_at) {where}",
        [source_name],
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY has one row
    errors = conn.execute(
        f"SELECT path, error {where} AND status = 'error' {_LISTING_ORDER}", [source_name]
    ).fetchall()
    preview = conn.execute(
        "SELECT path, status, rows_read, rows_loaded, rows_rejected, rows_duplicate "
        f"{where} {_LISTING_ORDER} LIMIT {PREVIEW_FILES}",
        [source_name],
    ).pl()
    files, read, loaded, rejected, duplicate, unbalanced, not_loaded, newest = row
    return FilesSummary(
        files=int(files),
        rows_read=int(read),
        rows_loaded=int(loaded),
        rows_rejected=int(rejected),
        rows_duplicate=int(duplicate),
        unbalanced=int(unbalanced),
        not_loaded=int(not_loaded),
        newest=newest,
        errors=[(str(p), str(e)) for p, e in errors],
        preview=preview,
    )


def recorded_files(conn: duckdb.DuckDBPyConnection, source_name: str) -> pl.DataFrame:
    """The source's `ingest_files` rows, in the order its files were listed."""
    files = conn.execute(
        f"SELECT * FROM ingest_files WHERE source = ? {_LISTING_ORDER}", [source_name]
    ).pl()
    return conform(files, INGEST_FILES_SCHEMA)


def recorded_listing(
    conn: duckdb.DuckDBPyConnection, source_name: str, file_ids: list[str]
) -> pl.DataFrame:
    """The `ingest_files` rows of `file_ids` as a `LISTING_SCHEMA` frame (order 0): the files
    as they were listed when last recorded."""
    columns = ", ".join(ident(c) for c in LISTING_SCHEMA if c != "order")
    return conform(
        conn.execute(
            f'SELECT 0 AS "order", {columns} FROM ingest_files '
            "WHERE source = ? AND file_id IN (SELECT unnest(?::VARCHAR[]))",
            [source_name, file_ids],
        ).pl(),
        LISTING_SCHEMA,
    )


def files_to_recount(
    conn: duckdb.DuckDBPyConnection, source_name: str, listing: pl.DataFrame, changed: pl.Series
) -> pl.Series:
    """The identities (file ids) whose `ingest_files` rows can differ from their recount:
    `changed` (known to, such as the files parsed), and every file listed otherwise than
    recorded: new, renamed or touched, and recorded but no longer listed (a copy of it may now
    be the one that counts).

    A night used to recount and compare every file of the history to record a thousand new
    ones (issue 19: +78 MB over 181,000 files at 10,000 people). The listing is compared as a
    hash of each row on each side, side by side at 8 bytes a file. Two different rows with the
    same 64-bit hash are as likely as two files with the same `file_id` (a 64-bit hash too)."""
    # The sha256 is left out: a file's is in its file_id.
    row = "hash(path, file_id, size_bytes, modified_at)"
    of_source = "FROM ingest_files WHERE source = $source"
    columns = listing.select("path", "file_id", "size_bytes", "modified_at")
    # Arrow's string views are Polars' own strings: registered without a copy.
    conn.register("_listed", columns.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        listed = conn.sql(f"SELECT {row} AS h FROM _listed").pl()["h"]
        recorded = conn.sql(f"SELECT {row} AS h {of_source}", params={"source": source_name}).pl()
    finally:
        conn.unregister("_listed")
    relisted = listing.filter(~listed.is_in(recorded["h"].implode()))["file_id"]
    conn.register("_gone", recorded.filter(~pl.col("h").is_in(listed.implode())).to_arrow())
    try:
        gone = conn.sql(
            f"SELECT file_id {of_source} AND {row} IN (SELECT h FROM _gone)",
            params={"source": source_name},
        ).pl()["file_id"]
    finally:
        conn.unregister("_gone")
    return pl.concat([changed, relisted, gone]).unique().sort()


# Keys grouped at once by `check_unique_lines`. A GROUP BY of every (file, line) key of a
# first build of 50 M rows overflowed DuckDB's memory limit instead of spilling; a repeated line
# always shares its file, so the keys are grouped in passes that split the files.
ROWS_PER_PASS = 4_000_000


def check_unique_lines(
    conn: duckdb.DuckDBPyConnection, table: str, names: list[str]
) -> tuple[int, int | None]:
    """(file_id, line) keys of canonical `table` loaded more than once, counted among the files
    whose rows can have changed since this check last passed, and how many files that was (None:
    all of them). On a pass those files are forgotten, so the next run reads only what the
    ingests add after it.

    Staging rows change only when an ingest writes them, and it lists the files it wrote
    (`LINES_TO_CHECK`); any duplicate involves a row written since, of one of those files, and
    that file's rows are all checked, its older rows included. A full scan of 10 M diary rows
    every night (1.2 s) became a scan of the file_id column. After a failure the list is kept,
    so the check fails again until the duplicates are gone.
    """
    sources = ", ".join("?" * len(names))
    listed = table_exists(conn, LINES_TO_CHECK)
    everything = not listed
    if listed and names:
        row = conn.execute(
            f"SELECT count(*) FILTER (file_id IS NULL) FROM {LINES_TO_CHECK} "
            f"WHERE source IS NULL OR source IN ({sources})",
            names,
        ).fetchone()
        everything = bool(row and row[0])
    files_checked: int | None = None
    where, params = "", []
    if not everything:
        where = (
            f"WHERE file_id IN (SELECT file_id FROM {LINES_TO_CHECK} WHERE source IN ({sources}))"
            if names
            else "WHERE false"
        )
        params = names
        row = conn.execute(
            f"SELECT count(DISTINCT file_id) FROM {LINES_TO_CHECK} WHERE source IN ({sources})"
            if names
            else "SELECT 0",
            params,
        ).fetchone()
        files_checked = int(row[0]) if row else 0
    duplicates = 0
    for part in _passes_by_file(conn, table, where, params):
        row = conn.execute(
            f"SELECT count(*) FROM (SELECT file_id, line FROM {ident(table)} {part} "
            "GROUP BY ALL HAVING count(*) > 1)",
            params,
        ).fetchone()
        duplicates += int(row[0]) if row else 0
    if duplicates == 0 and listed and names:
        conn.execute(
            f"DELETE FROM {LINES_TO_CHECK} WHERE source IS NULL OR source IN ({sources})", names
        )
    return duplicates, files_checked


def _passes_by_file(
    conn: duckdb.DuckDBPyConnection, table: str, where: str, params: list[str]
) -> list[str]:
    """`where` cut into enough disjoint sets of whole files to group at most about
    ROWS_PER_PASS rows at a time (one pass, `where` itself, for all but the largest checks)."""
    row = conn.execute(f"SELECT count(*) FROM {ident(table)} {where}", params).fetchone()
    passes = max(1, -(-(int(row[0]) if row else 0) // ROWS_PER_PASS))
    if passes == 1:
        return [where]
    joined = f"{where} AND" if where else "WHERE"
    return [f"{joined} hash(file_id) % {passes} = {k}" for k in range(passes)]
