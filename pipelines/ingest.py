"""Ingest one source: files -> canonical rows, with every input row accounted for, incrementally.

`sync_source` brings a source's tables in the warehouse up to date with the files under
data/raw/. It reads only what changed since the last run, so a nightly run costs what its new
files cost, not what the history costs:

- Every file is hashed (sha256; a file whose size and modification time are unchanged is not
  re-hashed, see `HashMemo`). A file's rows are keyed by `file_id`, a hash of source and content.
- Files already ingested with the same parser (adapter code, data tables, plausibility rules and
  the source's configuration: `source_fingerprint`) are not read again. New or changed files are
  parsed in batches (`Format.parse_batch`, cut by file count and bytes), so memory is bounded by
  a batch, not by the history, and a night's many small files are parsed together.
- Right after parsing, the plausibility rules (`pipelines.transforms.plausibility`: dates before
  1950 or in the future, a 50,000 kcal food, negative CRP, ...) move impossible rows to the
  rejects, the same way for every format. A file with a row rejected as "in the future" is read
  again on a later day, when that day may have come.
- Parsed rows are kept in `raw_<source>`, every row of every current file; `stg_<source>` holds
  the rows that count. Exports repeat history (this month's Cronometer export contains last
  month's days again), so each ownership key (`OWNERSHIP_KEY`: a person-day for diet entries,
  person + marker + time for labs, ...) is owned by the newest file that has it (by modification
  time, then path); the same key's rows in older files count as duplicates. Only keys that new,
  changed or removed files touch are settled again.
- Keys that must be unique (`UNIQUE_IN_FILE`): a repeat within the owning file counts as a
  duplicate; the first occurrence loads.
- An identical file (same sha256) seen twice: the second copy's rows are all duplicates.
- A file an adapter cannot read at all is recorded with status "error" and the reason; so is one
  that trips an unexpected error inside an adapter (a bug, reported as such), so one bad file never
  stops the others from loading.

Invariant, per file: rows_read == rows_loaded + rows_rejected + rows_duplicate.

The caller owns the transaction (`Warehouse.write()`), so a failed run changes nothing.
`ingest_source` runs the same code against a private DuckDB and returns the frames (tests, tools).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from pipelines.adapters import FORMATS, AdapterError, ParseResult
from pipelines.adapters.base import FILE_INDEX
from pipelines.config import SourceConfig
from pipelines.fingerprint import fingerprint
from pipelines.schema import INGEST_FILES_SCHEMA, REJECT_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.transforms.plausibility import FUTURE_REASON, apply_plausibility
from pipelines.warehouse import (
    add_missing_columns,
    create_table,
    ident,
    insert_frame,
    table_exists,
)

# The key on which a newer file's rows replace an older file's rows, by target table.
OWNERSHIP_KEY = {
    "diet_entries": ["person_id", "day"],
    "diet_daily_reported": ["person_id", "day", "period"],
    "lab_results": ["person_id", "marker", "collected_at"],
    "persons": ["person_id"],
    "biometrics": ["person_id", "day", "metric"],
}

# Tables whose ownership key is also a unique key (a repeat within one file is a duplicate).
UNIQUE_IN_FILE = {"lab_results", "persons", "diet_daily_reported"}

# Files parsed together: enough to spread the fixed cost of a parse over many small files, few
# enough that a batch of large exports stays far below the memory target. Memory follows the
# bytes, so a batch is cut at BATCH_BYTES (200 monthly exports, as batches of 200 files were) or
# at BATCH_FILES, whichever comes first: a night's one small file per person (2,000 files, 10 MB)
# is one batch, where 200 files at a time made it ten.
BATCH_FILES = 5000
BATCH_BYTES = 24 * 1024 * 1024
# DuckDB's own working memory while settling ownership over the whole history; beyond it, it
# spills to disk (`<warehouse>.tmp`) rather than growing.
DUCKDB_MEMORY_LIMIT = "1GB"
SPOOL_PREFIX = "gutsignal-ingest-"
# A row's `input_lines` carried through the plausibility rules onto its rejects.
_LINES = "__input_lines"

REJECTED_ROWS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "file_id": pl.String,
    "source": pl.String,
    "path": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "value": pl.String,
    "raw": pl.String,
}
# What the warehouse remembers of each file it has read, so the next run can skip it.
INGEST_STATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.String,
    "file_id": pl.String,
    "fingerprint": pl.String,
    "checked_on": pl.Date,  # the "today" its plausibility rules were applied with
    "recheck": pl.Boolean,  # a row was rejected as in the future: read it again on a later day
    "rows_read": pl.Int64,
    "rows_rejected": pl.Int64,
    "error": pl.String,  # why the file could not be read; null when it was
    "ingested_at": pl.Datetime("us"),
}
# The files whose rows entered a staging table since the check "a raw file line loads at most
# once" last passed (`check_unique_lines` below), so that check reads only them, not the
# history. A null file_id stands for every file of its source (the staging table was rebuilt),
# a null source for every source (the warehouse predates this table).
LINES_TO_CHECK = "lines_to_check"
LINES_TO_CHECK_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.String,
    "file_id": pl.String,
}


@dataclass
class SyncResult:
    """What one `sync_source` call did."""

    files: pl.DataFrame  # INGEST_FILES_SCHEMA, one row per file matched now
    rows_loaded: int  # rows in the staging table
    rows_rejected: int
    files_parsed: int  # files read this time (the others were already in the warehouse)
    keys_settled: int | None  # ownership keys settled again; None when all were (a full rebuild)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SourceIngest:
    """Everything one source contributes to the warehouse, as frames (see `ingest_source`)."""

    rows: pl.DataFrame  # canonical rows of the kind, plus file_id and source
    files: pl.DataFrame  # INGEST_FILES_SCHEMA
    rejects: pl.DataFrame  # REJECTED_ROWS_SCHEMA
    files_parsed: int = 0  # files actually parsed this time


def raw_table(source_name: str) -> str:
    return f"raw_{source_name}"


def staging_table(source_name: str) -> str:
    return f"stg_{source_name}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def target_table(source: SourceConfig) -> str:
    """The canonical table this source feeds."""
    return FORMATS[source.format].target(source)


@cache
def parser_fingerprint() -> str:
    """A hash of everything that shapes a parse besides the file and its source's configuration.

    That is every adapter module (formats share helpers such as `_csv.py`, so hashing only the
    registered function's module would miss a fix there), the lab mapping code, the schema, the
    plausibility rules, the core modules they share (text helpers, rule engine, lab vocabulary)
    and the data tables the adapters read (markers.csv, units.csv, column tables): editing any of
    them re-reads every file.
    """
    import pipelines.adapters as adapters_package
    import pipelines.lab_vocabulary as lab_vocabulary_module
    import pipelines.rules as rules_module
    import pipelines.schema as schema_module
    import pipelines.text as text_module
    import pipelines.transforms.labs as labs_module
    import pipelines.transforms.plausibility as plausibility_module

    package = Path(inspect.getfile(adapters_package)).parent
    paths = sorted(package.glob("*.py"))
    paths += [Path(inspect.getfile(m)) for m in (labs_module, schema_module, plausibility_module)]
    paths += [Path(inspect.getfile(m)) for m in (text_module, rules_module, lab_vocabulary_module)]
    paths += sorted((package.parent / "data").glob("*.csv"))
    return fingerprint(paths)


def source_fingerprint(source: SourceConfig) -> str:
    """The parser fingerprint plus the source's configuration: what a stored parse depends on."""
    # `demo` only changes what the dashboards say about the source's freshness, not how its files
    # parse: turning it on (or upgrading to a version that knows it) must not re-read every file.
    fields = {k: v for k, v in dataclasses.asdict(source).items() if k != "demo"}
    config = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(parser_fingerprint().encode() + b"\0" + config).hexdigest()[:16]


class HashMemo:
    """sha256 per file, remembered with the size and modification time it was computed for.

    Hashing 1 GB of history every night would be work that grows with history; a file whose size
    and mtime are unchanged keeps its hash. Kept beside the warehouse, not in it: it describes the
    files, whatever state the warehouse is in.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, list] = {}
        if path is not None and path.exists():
            try:
                self.known = json.loads(path.read_text())
            except (OSError, ValueError):
                self.known = {}  # a damaged memo only costs re-hashing

    def sha256(self, path: Path, rel_path: str, stat: os.stat_result | None = None) -> str:
        """The file's sha256; `stat`, when the caller has it, saves asking for it again."""
        stat = stat or path.stat()
        known = self.known.get(rel_path)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return str(known[2])
        sha = sha256_of(path)
        self.known[rel_path] = [stat.st_size, stat.st_mtime_ns, sha]
        return sha

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.path)


@dataclass(frozen=True)
class FileInfo:
    order: int  # position among the source's files, oldest first: the newest file wins
    path: Path
    rel_path: str
    sha256: str
    file_id: str
    size_bytes: int
    modified_at: datetime


def file_identity(source: SourceConfig, path: Path, sha: str) -> str:
    """What makes two files the same input: their bytes, and the person their path says they
    belong to (with `person: {from_folder: true}`, the same bytes in two people's folders are two
    people's days, not a copy)."""
    owner = source.person.for_file(path) or ""
    return hashlib.sha256(f"{source.name}\0{sha}\0{owner}".encode()).hexdigest()[:16]


def list_files(
    source: SourceConfig, raw_dir: Path, memo: HashMemo, paths: list[Path] | None = None
) -> list[FileInfo]:
    """The source's files (`paths`, when the caller has globbed them), oldest first
    (modification time, then path), hashed."""
    paths = source.files(raw_dir) if paths is None else paths
    stats = sorted(((p.stat(), str(p), p) for p in paths), key=lambda s: (s[0].st_mtime, s[1]))
    # The glob's paths all start with raw_dir: cutting the prefix off is what relative_to does,
    # at a fraction of its cost per file (tens of thousands of files are listed every night).
    prefix = os.path.join(str(raw_dir), "")
    out = []
    for order, (stat, text, path) in enumerate(stats):
        rel_path = (
            text[len(prefix) :] if text.startswith(prefix) else str(path.relative_to(raw_dir))
        )
        sha = memo.sha256(path, rel_path, stat)
        out.append(
            FileInfo(
                order=order,
                path=path,
                rel_path=rel_path,
                sha256=sha,
                file_id=file_identity(source, path, sha),
                size_bytes=stat.st_size,
                modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None),
            )
        )
    return out


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


def sync_source(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    raw_dir: Path,
    *,
    memo_path: Path | None = None,
    today: date | None = None,
    work_dir: Path | None = None,
    paths: list[Path] | None = None,
) -> SyncResult:
    """Bring `raw_<source>`, `stg_<source>`, `ingest_state`, `ingest_files` and `rejected_rows`
    up to date with the source's files, and list in `lines_to_check` the files whose staging rows
    changed; see the module docstring. `today` (default: the current
    date) is the reference for the rule on future dates; `work_dir` (default: the system's temp
    folder) holds the parsed batches until they are stored. `paths` are the source's files when
    the caller has listed them already (`SourceConfig.files`): listing tens of thousands of files
    is a good part of a nightly run's ingest."""
    today = today or date.today()
    clock = _Clock()
    target = target_table(source)
    schema = TARGET_SCHEMAS[target]
    fingerprint = source_fingerprint(source)
    raw = ident(raw_table(source.name))
    conn.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    _ensure_tables(conn, source.name, schema)

    memo = HashMemo(memo_path)
    with clock("list and hash files"):
        listing = list_files(source, raw_dir, memo, paths)
    first_of: dict[str, FileInfo] = {}
    for info in listing:
        first_of.setdefault(info.file_id, info)

    state = conn.execute(
        "SELECT file_id, fingerprint, checked_on, recheck FROM ingest_state WHERE source = ?",
        [source.name],
    ).fetchall()
    reusable = {
        file_id
        for file_id, fp, checked_on, recheck in state
        if fp == fingerprint and checked_on <= today and not (recheck and checked_on < today)
    }
    current = reusable & first_of.keys()
    to_parse = [info for file_id, info in first_of.items() if file_id not in current]
    full = not current or not table_exists(conn, staging_table(source.name))

    order = pl.DataFrame(
        {
            "file_id": list(first_of),
            "ord": [i.order for i in first_of.values()],
            "path": [i.rel_path for i in first_of.values()],
            "keep": [f in current for f in first_of],
        },
        schema={"file_id": pl.String, "ord": pl.Int64, "path": pl.String, "keep": pl.Boolean},
    )
    conn.register("_order_frame", order.to_arrow())
    conn.execute("CREATE OR REPLACE TEMP TABLE _order AS SELECT * FROM _order_frame")
    conn.unregister("_order_frame")
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
        # the two scans of the whole history below are skipped.
        row = conn.execute(
            f"SELECT count(*) FROM ingest_state WHERE source = ? AND {gone}", [source.name]
        ).fetchone()
        if full or (row and row[0]):
            if not full:
                conn.execute(
                    f"INSERT INTO _affected SELECT DISTINCT hash({keys}), {keys} FROM {raw} "
                    f"WHERE {gone}"
                )
            conn.execute(f"DELETE FROM {raw} WHERE {gone}")
        # A gone file's staging rows go with its keys (they are in _affected), so there is
        # nothing of it left to check; a null file_id (all files) is never "gone".
        for table in ("rejected_rows", "ingest_state", LINES_TO_CHECK):
            conn.execute(f"DELETE FROM {table} WHERE source = ? AND {gone}", [source.name])

    if work_dir is not None:
        # A killed run leaves its spool behind; the caller holds the warehouse's write lock, so
        # no other ingest is using one.
        for leftover in work_dir.glob(f"{SPOOL_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
    with (
        clock("parse, check and store new files"),
        tempfile.TemporaryDirectory(prefix=SPOOL_PREFIX, dir=work_dir) as spool_dir,
    ):
        spooled = []
        for n, batch in enumerate(_batches(to_parse, BATCH_FILES, BATCH_BYTES)):
            spool = Path(spool_dir) / f"batch-{n:05d}.parquet"
            _ingest_batch(conn, source, target, batch, fingerprint, today, spool)
            if spool.exists():
                spooled.append(spool)
        _store_spooled(conn, source, target, spooled, track=not full)

    with clock("settle ownership"):
        settled = _settle(conn, source, target, full)

    with clock("count rows per file"):
        files = _file_records(conn, source, listing, first_of)
        conn.execute("DELETE FROM ingest_files WHERE source = ?", [source.name])
        insert_frame(conn, "ingest_files", files)
        # A renamed file keeps its rows (same content); its rejects should show the new name.
        conn.execute(
            "UPDATE rejected_rows SET path = o.path FROM _order o WHERE rejected_rows.source = ? "
            "AND rejected_rows.file_id = o.file_id AND rejected_rows.path IS DISTINCT FROM o.path",
            [source.name],
        )
    memo.save()
    for temp in ("_order", "_affected"):
        conn.execute(f"DROP TABLE IF EXISTS {temp}")
    return SyncResult(
        files=files,
        rows_loaded=int(files["rows_loaded"].sum()),
        rows_rejected=int(files["rows_rejected"].sum()),
        files_parsed=len(to_parse),
        keys_settled=None if full else settled,
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
    memo = None if cache_dir is None else cache_dir / f"{source.name}.hashes.json"
    conn = duckdb.connect(database)
    try:
        conn.execute("BEGIN TRANSACTION")
        result = sync_source(conn, source, raw_dir, memo_path=memo, today=today)
        conn.execute("COMMIT")
        files = result.files
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
    return SourceIngest(
        rows=rows,
        files=files,
        rejects=conform(rejects, REJECTED_ROWS_SCHEMA),
        files_parsed=result.files_parsed,
    )


# ---- steps -------------------------------------------------------------------------------------


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


def _batches(items: list[FileInfo], max_files: int, max_bytes: int) -> Iterator[list[FileInfo]]:
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


def _ensure_tables(conn: duckdb.DuckDBPyConnection, source_name: str, schema: dict) -> None:
    """Create the ingest tables that do not exist yet. A `raw_<source>` table of an older layout
    (the canonical schema changed) is dropped with its state, so every file is read again."""
    raw_schema = {**schema, "file_id": pl.String, "_row": pl.Int64}
    name = raw_table(source_name)
    if table_exists(conn, name):
        have = [r[0] for r in conn.execute(f"DESCRIBE {ident(name)}").fetchall()]
        if have != list(raw_schema):
            conn.execute(f"DROP TABLE {ident(name)}")
            conn.execute(f"DROP TABLE IF EXISTS {ident(staging_table(source_name))}")
            if table_exists(conn, "ingest_state"):
                conn.execute("DELETE FROM ingest_state WHERE source = ?", [source_name])
    for table, table_schema in (
        (name, raw_schema),
        ("ingest_state", INGEST_STATE_SCHEMA),
        ("ingest_files", INGEST_FILES_SCHEMA),
        ("rejected_rows", REJECTED_ROWS_SCHEMA),
    ):
        if not table_exists(conn, table):
            create_table(conn, table, table_schema)
    add_missing_columns(conn, "rejected_rows", REJECTED_ROWS_SCHEMA)
    if not table_exists(conn, LINES_TO_CHECK):
        create_table(conn, LINES_TO_CHECK, LINES_TO_CHECK_SCHEMA)
        # Staging rows written before the table existed were never listed: check them all once.
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (NULL, NULL)")


def _ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    target: str,
    batch: list[FileInfo],
    fingerprint: str,
    today: date,
    spool: Path,
) -> None:
    """Parse `batch`, apply the plausibility rules, store rejects and state, and write the rows
    that passed to the Parquet file `spool` (see `_store_spooled`)."""
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
        stored.write_parquet(spool, compression="lz4")

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


def _store_spooled(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    target: str,
    spooled: list[Path],
    track: bool,
) -> None:
    """Append the spooled batches to `raw_<source>` in one statement.

    Why a detour through Parquet: DuckDB keeps the rows of many separate appends inside one open
    transaction in memory, beyond its memory limit (5.8 GB at 10 M rows), while one
    `INSERT ... SELECT` streams to the database file (0.6 GB). With `track`, the ownership keys of
    the new rows go to `_affected` for `_settle`.
    """
    if not spooled:
        return
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in spooled) + "]"
    raw = ident(raw_table(source.name))
    conn.execute(f"INSERT INTO {raw} BY NAME SELECT * FROM read_parquet({files})")
    if track:
        keys = ", ".join(ident(k) for k in OWNERSHIP_KEY[target])
        conn.execute(
            f"INSERT INTO _affected SELECT DISTINCT hash({keys}), {keys} FROM read_parquet({files})"
        )


def _settle(conn: duckdb.DuckDBPyConnection, source: SourceConfig, target: str, full: bool) -> int:
    """Decide which rows count: all keys (`full`) or only the keys in `_affected`.

    Returns the number of keys settled again (incremental case).
    """
    raw, stg = ident(raw_table(source.name)), ident(staging_table(source.name))
    key = OWNERSHIP_KEY[target]
    keys = ", ".join(f"r.{ident(k)}" for k in key)
    columns = ", ".join(f"r.{ident(c)}" for c in TARGET_SCHEMAS[target])
    source_literal = ident(source.name).replace('"', "'")  # a checked identifier as a string
    narrow, params = ("", []) if full else _key_ranges(conn, key)
    where = "" if full else f"WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}"
    if target in UNIQUE_IN_FILE:
        owned = f"""
            SELECT {columns}, r.file_id, {source_literal} AS source, r._row, o.ord
            FROM {raw} r JOIN _order o USING (file_id) {where}
            QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY o.ord DESC, r._row) = 1
        """
    else:
        # All rows of the newest file that has the key count (a day holds many foods). A group
        # by and a join spill to disk when they must, so this stays bounded at any scale.
        matches = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM w.{ident(k)}" for k in key)
        owned = f"""
            WITH ranked AS (
                SELECT r.*, o.ord FROM {raw} r JOIN _order o USING (file_id) {where}
            ),
            winner AS (SELECT {", ".join(ident(k) for k in key)}, max(ord) AS ord
                       FROM ranked GROUP BY ALL)
            SELECT {columns}, r.file_id, {source_literal} AS source, r._row, r.ord
            FROM ranked r JOIN winner w ON {matches} AND r.ord = w.ord
        """
    if full:
        # In file order, as the files were read: hash joins and windows return rows in any order,
        # and downstream float sums would then differ in their last bits from run to run.
        conn.execute(
            f"CREATE OR REPLACE TABLE {stg} AS "
            f"SELECT * EXCLUDE (ord) FROM ({owned}) ORDER BY ord, _row"
        )
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (?, NULL)", [source.name])
        return 0
    conn.execute(
        f"DELETE FROM {stg} r WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}", params
    )
    # Kept apart for a moment to list its files: as small as the keys settled again.
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _owned AS {owned}", params)
    conn.execute(f"INSERT INTO {stg} SELECT * EXCLUDE (ord) FROM _owned ORDER BY ord, _row")
    conn.execute(
        f"INSERT INTO {LINES_TO_CHECK} SELECT DISTINCT ?, o.file_id FROM _owned o "
        f"WHERE NOT EXISTS (SELECT 1 FROM {LINES_TO_CHECK} c "
        "WHERE c.source = ? AND c.file_id = o.file_id)",
        [source.name, source.name],
    )
    conn.execute("DROP TABLE _owned")
    row = conn.execute("SELECT count(*) FROM _affected").fetchone()
    return int(row[0]) if row else 0


def _key_ranges(conn: duckdb.DuckDBPyConnection, key: list[str]) -> tuple[str, list]:
    """A filter ` AND r.k BETWEEN ? AND ? ...` (and its parameters) that every row with a key in
    `_affected` passes: for each key column without nulls there, the range of its values.

    Matching hashes alone means hashing every row of the history; a constant range lets DuckDB
    skip the row groups whose min/max lie outside it, and a night's keys (its new days) lie
    outside nearly all of them. It only ever narrows: the hash test still decides.
    """
    columns = [ident(k) for k in key]
    row = conn.execute(
        "SELECT "
        + ", ".join(f"min({c}), max({c}), count(*) > count({c})" for c in columns)
        + " FROM _affected"
    ).fetchone()
    assert row is not None
    narrow, params = "", []
    for i, column in enumerate(columns):
        low, high, has_null = row[3 * i : 3 * i + 3]
        if low is not None and not has_null:
            narrow += f" AND r.{column} BETWEEN ? AND ?"
            params += [low, high]
    return narrow, params


def _file_records(
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
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT file_id, line FROM {ident(table)} {where} "
        "GROUP BY ALL HAVING count(*) > 1)",
        params,
    ).fetchone()
    duplicates = int(row[0]) if row else 0
    if duplicates == 0 and listed and names:
        conn.execute(
            f"DELETE FROM {LINES_TO_CHECK} WHERE source IS NULL OR source IN ({sources})", names
        )
    return duplicates, files_checked
