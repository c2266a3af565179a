"""Ingest one source: files -> canonical rows, with every input row accounted for.

For each file matched by the source's glob: hash it, parse it with the source's adapter, and keep
its rows, its rejects and its counts. Then settle overlaps between files, because exports repeat
history (a Cronometer export holds every day the user chose, so this month's export contains last
month's days again):

- diet: each person-day is owned by the newest file that has it (by modification time, then path);
  the same day's rows in older files count as duplicates. A corrected or deleted entry in the
  newer export therefore wins, and nothing is double counted.
- labs: each (person, marker, collected_at) result is owned by the newest file that has it;
  likewise reported daily totals per (person, day, period), biometrics per (person, day, metric)
  and covariates per person.
- an identical file (same sha256) seen twice: the second copy's rows are all duplicates.

Right after a file is parsed, the plausibility rules (`pipelines.transforms.plausibility`: dates
before 1950 or in the future, a 50,000 kcal food, negative CRP, ...) move impossible rows to the
file's rejects, the same way for every format. A file an adapter cannot read at all is recorded
with status "error" and the reason; so is one that trips an unexpected error inside an adapter (a
bug, reported as such), so one bad file never stops the others from loading.

Invariant, per file: rows_read == rows_loaded + rows_rejected + rows_duplicate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import polars as pl

from pipelines.adapters import FORMATS, AdapterError, ParseResult
from pipelines.config import SourceConfig
from pipelines.schema import REJECT_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.transforms.plausibility import apply_plausibility

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

INGEST_FILES_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "file_id": pl.String,
    "source": pl.String,
    "path": pl.String,
    "sha256": pl.String,
    "size_bytes": pl.Int64,
    "modified_at": pl.Datetime("us"),
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_rejected": pl.Int64,
    "rows_duplicate": pl.Int64,
    "status": pl.String,
    "error": pl.String,
    "ingested_at": pl.Datetime("us"),
}
REJECTED_ROWS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "file_id": pl.String,
    "source": pl.String,
    "path": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "raw": pl.String,
}


@dataclass
class SourceIngest:
    """Everything one source contributes to the warehouse."""

    rows: pl.DataFrame  # canonical rows of the kind, plus source and file_id
    files: pl.DataFrame  # INGEST_FILES_SCHEMA
    rejects: pl.DataFrame  # REJECTED_ROWS_SCHEMA
    files_parsed: int = 0  # files actually parsed this time (others came from the parse cache)


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
    registered function's module would miss a fix there), the lab mapping code and the data tables
    the adapters read (markers.csv, units.csv, column tables): editing any of them re-parses.
    """
    import pipelines.adapters as adapters_package
    import pipelines.transforms.labs as labs_module

    package = Path(inspect.getfile(adapters_package)).parent
    paths = sorted(package.glob("*.py"))
    paths.append(Path(inspect.getfile(labs_module)))
    paths += sorted((package.parent / "data").glob("*.csv"))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class ParseCache:
    """Parsed files kept as Parquet, so a nightly run parses only new or changed files.

    A file's entry is keyed by its sha256 and by a fingerprint of everything else that shapes the
    parse: the source's configuration and `parser_fingerprint()` (adapter code and data tables).
    A file whose size and modification time are unchanged is not even re-hashed (the manifest
    remembers its sha256).
    """

    def __init__(self, root: Path, source: SourceConfig) -> None:
        self.dir = root / source.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, list] = (
            json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        )
        config = json.dumps(dataclasses.asdict(source), sort_keys=True, default=str).encode()
        self.fingerprint = hashlib.sha256(
            parser_fingerprint().encode() + b"\0" + config
        ).hexdigest()[:16]
        self.parsed = 0  # files parsed in this run (the rest came from the cache)

    def sha256(self, path: Path, rel_path: str) -> str:
        stat = path.stat()
        known = self.manifest.get(rel_path)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return str(known[2])
        sha = sha256_of(path)
        self.manifest[rel_path] = [stat.st_size, stat.st_mtime_ns, sha]
        return sha

    def _paths(self, sha: str) -> tuple[Path, Path, Path]:
        stem = self.dir / f"{sha[:32]}-{self.fingerprint}"
        return (
            stem.with_suffix(".rows.parquet"),
            stem.with_suffix(".rejects.parquet"),
            stem.with_suffix(".json"),
        )

    def get(self, sha: str) -> ParseResult | None:
        rows, rejects, meta = self._paths(sha)
        if not (rows.exists() and rejects.exists() and meta.exists()):
            return None
        return ParseResult(
            rows=pl.read_parquet(rows),
            rejects=pl.read_parquet(rejects),
            rows_read=int(json.loads(meta.read_text())["rows_read"]),
        )

    def put(self, sha: str, result: ParseResult) -> None:
        rows, rejects, meta = self._paths(sha)
        result.rows.write_parquet(rows)
        result.rejects.write_parquet(rejects)
        meta.write_text(json.dumps({"rows_read": result.rows_read}))  # written last: marks done

    def save(self) -> None:
        self.manifest_path.write_text(json.dumps(self.manifest))


def plausible(target: str, result: ParseResult, today: date) -> ParseResult:
    """`result` with the rows that break a plausibility rule moved to its rejects (same counts)."""
    kept, implausible = apply_plausibility(target, result.rows, today)
    if implausible.height == 0:
        return result
    rejects = pl.concat([conform(result.rejects, REJECT_SCHEMA), implausible], how="vertical").sort(
        "line", maintain_order=True
    )
    return ParseResult(rows=kept, rejects=rejects, rows_read=result.rows_read)


def ingest_source(
    source: SourceConfig, raw_dir: Path, cache_dir: Path | None = None, today: date | None = None
) -> SourceIngest:
    """Read every file of `source` under `raw_dir`; see the module docstring for the rules.

    With `cache_dir`, files parsed in an earlier run are taken from the parse cache instead of
    being parsed again (see ParseCache). `today` (default: the current date) is the reference for
    the plausibility rule on future dates; it is applied after the cache, so a cached parse never
    freezes "today".
    """
    today = today or date.today()
    target = target_table(source)
    schema = TARGET_SCHEMAS[target]
    cache = ParseCache(cache_dir, source) if cache_dir is not None else None
    adapter = FORMATS[source.format].parse

    def parse(path: Path, sha: str) -> ParseResult:
        if cache is None:
            return adapter(path, source)
        cached = cache.get(sha)
        if cached is None:
            cached = adapter(path, source)
            cache.put(sha, cached)
            cache.parsed += 1
        return cached

    now = datetime.now(UTC).replace(tzinfo=None)
    file_rows: list[dict] = []
    frames: list[pl.DataFrame] = []
    reject_frames: list[pl.DataFrame] = []
    seen_sha: dict[str, str] = {}

    files = source.files(raw_dir)
    # Oldest first, so that "newest wins" below is "last file wins".
    files.sort(key=lambda p: (p.stat().st_mtime, str(p)))
    for order, path in enumerate(files):
        rel_path = str(path.relative_to(raw_dir))
        sha = cache.sha256(path, rel_path) if cache is not None else sha256_of(path)
        file_id = hashlib.sha256(f"{source.name}\0{sha}".encode()).hexdigest()[:16]
        record: dict[str, object] = {
            "file_id": file_id,
            "source": source.name,
            "path": rel_path,
            "sha256": sha,
            "size_bytes": path.stat().st_size,
            "modified_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None),
            "rows_read": 0,
            "rows_loaded": 0,
            "rows_rejected": 0,
            "rows_duplicate": 0,
            "status": "loaded",
            "error": None,
            "ingested_at": now,
        }
        try:
            result = plausible(target, parse(path, sha), today)
        except AdapterError as exc:
            record.update(status="error", error=str(exc))
            file_rows.append(record)
            continue
        # One file's bug must not stop the other files. A Polars (Rust) panic is a BaseException,
        # so it is named explicitly; KeyboardInterrupt and SystemExit still stop the run.
        except (Exception, pl.exceptions.PanicException) as exc:
            record.update(
                status="error",
                error=(
                    f"{path}: unexpected error while reading it as format {source.format!r} "
                    f"({type(exc).__name__}: {exc}). This is a bug in gutsignal: every file "
                    "should load or be rejected with a reason; please report it. The source's "
                    "other files were loaded."
                ),
            )
            file_rows.append(record)
            continue
        record["rows_read"] = result.rows_read
        if sha in seen_sha:
            # Same bytes under another name: nothing new, every row is a duplicate.
            record.update(status="duplicate_file", error=f"same content as {seen_sha[sha]}")
            record["rows_duplicate"] = result.rows_read
            file_rows.append(record)
            continue
        record["rows_rejected"] = result.rejects.height
        seen_sha[sha] = rel_path
        file_rows.append(record)
        frames.append(
            conform(result.rows, schema).with_columns(
                pl.lit(file_id).alias("file_id"), pl.lit(order).alias("_file_order")
            )
        )
        if result.rejects.height:
            reject_frames.append(
                result.rejects.with_columns(
                    pl.lit(file_id).alias("file_id"),
                    pl.lit(source.name).alias("source"),
                    pl.lit(rel_path).alias("path"),
                )
            )

    rows = (
        pl.concat(frames)
        if frames
        else conform(pl.DataFrame(), schema).with_columns(
            pl.lit(None, pl.String).alias("file_id"), pl.lit(None, pl.Int64).alias("_file_order")
        )
    )
    key = OWNERSHIP_KEY[target]
    owner = rows.group_by(key).agg(pl.col("_file_order").max().alias("_owner"))
    rows = rows.join(owner, on=key, how="left", nulls_equal=True)
    owned = rows.filter(pl.col("_file_order") == pl.col("_owner"))
    superseded = rows.filter(pl.col("_file_order") != pl.col("_owner"))
    if target in UNIQUE_IN_FILE:
        # The same result twice in one file (e.g. a portal listing CRP under two codes at the
        # same time): the first one loads, the repeat counts as a duplicate.
        first = owned.with_row_index("_i").group_by(OWNERSHIP_KEY[target]).agg(pl.col("_i").min())
        owned = owned.with_row_index("_i")
        repeats = owned.join(first, on=[*OWNERSHIP_KEY[target], "_i"], how="anti", nulls_equal=True)
        kept = owned.join(repeats.select("_i"), on="_i", how="anti").drop("_i")
        superseded = pl.concat([superseded, repeats.drop("_i")], how="vertical_relaxed")
    else:
        kept = owned

    loaded_per_file = dict(kept.group_by("file_id").len().iter_rows())
    dup_per_file = dict(superseded.group_by("file_id").len().iter_rows())
    for record in file_rows:
        if record["status"] in ("loaded",):
            record["rows_loaded"] = loaded_per_file.get(record["file_id"], 0)
            record["rows_duplicate"] = dup_per_file.get(record["file_id"], 0)

    if cache is not None:
        cache.save()
    files_df = pl.DataFrame(file_rows, schema=INGEST_FILES_SCHEMA)
    rejects = (
        conform(pl.concat(reject_frames, how="diagonal_relaxed"), REJECTED_ROWS_SCHEMA)
        if reject_frames
        else pl.DataFrame(schema=REJECTED_ROWS_SCHEMA)
    )
    return SourceIngest(
        rows=kept.drop("_file_order", "_owner").with_columns(pl.lit(source.name).alias("source")),
        files=files_df,
        rejects=rejects,
        files_parsed=cache.parsed if cache is not None else len(files),
    )
