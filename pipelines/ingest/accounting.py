"""The last step: every input line accounted for, per file.

`file_records` counts each file's rows read, loaded, rejected and duplicate for `ingest_files`
(rows_read == rows_loaded + rows_rejected + rows_duplicate); `check_unique_lines` is the nightly
check that no raw file line loads twice, reading only the files listed in `lines_to_check`.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.config import SourceConfig
from pipelines.ingest.files import FileInfo
from pipelines.ingest.tables import LINES_TO_CHECK, raw_table, staging_table, target_table
from pipelines.schema import INGEST_FILES_SCHEMA, TARGET_SCHEMAS
from pipelines.warehouse import ident, table_exists


def file_records(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    listing: list[FileInfo],
    first_of: dict[str, FileInfo],
) -> pl.DataFrame:
    """One INGEST_FILES_SCHEMA row per file, its counts from the stored rows and state."""
    raw, stg = ident(raw_table(source.name)), ident(staging_table(source.name))
    # Counts are of input lines: a row standing for several (input_lines) counts each of them.
    lines = (
        "sum(coalesce(input_lines, 1))"
        if "input_lines" in TARGET_SCHEMAS[target_table(source)]
        else "count(*)"
    )
    loaded = dict(conn.execute(f"SELECT file_id, {lines} FROM {stg} GROUP BY ALL").fetchall())
    stored = dict(conn.execute(f"SELECT file_id, {lines} FROM {raw} GROUP BY ALL").fetchall())
    state = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT file_id, rows_read, rows_rejected, error, ingested_at FROM ingest_state "
            "WHERE source = ?",
            [source.name],
        ).fetchall()
    }
    records = []
    for info in listing:
        rows_read, rows_rejected, error, ingested_at = state[info.file_id]
        record = {
            "file_id": info.file_id,
            "source": source.name,
            "path": info.rel_path,
            "sha256": info.sha256,
            "size_bytes": info.size_bytes,
            "modified_at": info.modified_at,
            "rows_read": rows_read,
            "rows_loaded": 0,
            "rows_rejected": 0,
            "rows_duplicate": 0,
            "status": "loaded",
            "error": None,
            "ingested_at": ingested_at,
        }
        first = first_of[info.file_id]
        if error is not None:
            record.update(status="error", error=error, rows_read=0)
        elif first is not info:
            # Same bytes under another name: nothing new, every row is a duplicate.
            record.update(
                status="duplicate_file",
                error=f"same content as {first.rel_path}",
                rows_duplicate=rows_read,
            )
        else:
            n_loaded = loaded.get(info.file_id, 0)
            record.update(
                rows_loaded=n_loaded,
                rows_rejected=rows_rejected,
                rows_duplicate=stored.get(info.file_id, 0) - n_loaded,
            )
        records.append(record)
    return pl.DataFrame(records, schema=INGEST_FILES_SCHEMA)


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
