"""One ingest asset per entry of sources.yaml: files -> staging table `stg_<source>`.

This is where a Cronometer row (or any source row) is parsed by its adapter, deduplicated against
overlapping exports and written, together with its file record and its rejected rows
(`pipelines.ingest.sync_source`, which reads only new or changed files). The canonical tables
(`diet_entries`, `lab_results`) union the staging tables downstream.

Partitioned by person shard like the per-person assets: a run of some shards parses, settles and
records only the new, changed or removed files of their people, and sees the others as they were
last ingested (`pipelines.ingest.scope`); a run of every shard is the ingest over everything.
"""

import shutil
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from pipelines.config import ConfigError, SourceConfig, check_source_files
from pipelines.defs._metadata import md_table
from pipelines.defs.partitions import per_person, person_shards, shards_of_run
from pipelines.defs.resources import ProjectResource
from pipelines.ingest import source_fingerprint, staging_table, sync_source
from pipelines.project import Project
from pipelines.reports.freshness import STALE_AFTER_DAYS, source_freshness_status
from pipelines.steps.ingest import latest_data_day

__all__ = ["build_ingest_asset", "configured_sources", "ingest_asset_key", "staging_table"]


def ingest_asset_key(source_name: str) -> dg.AssetKey:
    return dg.AssetKey(f"ingest_{source_name}")


def build_ingest_asset(
    source: SourceConfig, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """The ingest asset for one configured source, partitioned by `partitions_def` (the
    project's `person_shards`)."""
    key = ingest_asset_key(source.name)

    @dg.asset(
        key=key,
        # The parser code, its data tables and this source's settings: what a parse depends on.
        code_version=source_fingerprint(source),
        group_name="ingest",
        kinds={"polars", "duckdb"},
        **per_person(partitions_def),
        tags={"gutsignal/kind": source.kind, "gutsignal/format": source.format},
        description=(
            f"Reads `data/raw/{source.path}` as `{source.format}` ({source.kind}), rejects rows "
            "that fail validation with file, line, column and reason, settles overlaps between "
            f"exports (newest file wins) and writes `{staging_table(source.name)}`."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "row_accounting",
                asset=key,
                description=(
                    "Per file: rows read = loaded + rejected + duplicate (the files the run "
                    "records: in a run of some shards, those of other shards as last ingested)."
                ),
            ),
            dg.AssetCheckSpec(
                "files_readable",
                asset=key,
                description="Every matched file could be read (warns, the rest still loads).",
            ),
            dg.AssetCheckSpec(
                "source_fresh",
                asset=key,
                description=(
                    f"The newest file and the latest day of data are at most {STALE_AFTER_DAYS} "
                    "days old (warns: a stale export keeps the dashboards on an old picture)."
                ),
            ),
        ],
    )
    def _ingest(
        context: dg.AssetExecutionContext, project: ProjectResource
    ) -> dg.MaterializeResult:
        shards = shards_of_run(context)
        try:
            paths = check_source_files(source, project.project.raw_dir)
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from exc
        # Versions before the incremental ingest kept a Parquet copy of every parse here; the
        # warehouse's raw_<source> tables replace it, so it is only wasted disk now.
        shutil.rmtree(project.project.processed_dir / "parse_cache", ignore_errors=True)
        # Versions before the listing as a frame kept the hash memo as JSON (now Parquet).
        (project.project.processed_dir / "file_hashes" / f"{source.name}.json").unlink(
            missing_ok=True
        )
        # Versions that spooled parsed batches here left them behind when killed mid-run.
        for spool in project.project.processed_dir.glob("gutsignal-ingest-*"):
            shutil.rmtree(spool, ignore_errors=True)
        with project.warehouse().write() as conn:
            result = sync_source(
                conn,
                source,
                project.project.raw_dir,
                memo_path=project.project.processed_dir / "file_hashes" / f"{source.name}.parquet",
                paths=paths,
                shards=shards,
            )
            latest_day = latest_data_day(conn, staging_table(source.name))
        files = result.summary
        fresh = source_freshness_status(
            files.newest,
            latest_day,
            datetime.now(UTC).replace(tzinfo=None),
            source.name,
            demo=source.demo,
        )
        context.log.info(
            f"{source.name}: {files.files} file(s), {result.files_parsed} read this time; "
            f"{result.rows_loaded} rows loaded, {result.rows_rejected} rejected"
            + (
                f"; {result.files_deferred} new, changed or removed file(s) of other shards "
                "left for a run of theirs"
                if result.files_deferred
                else ""
            )
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.rows_loaded,
                "files": files.files,
                "files_parsed": result.files_parsed,
                "files_deferred": result.files_deferred,
                "keys_settled": (
                    "all" if result.keys_settled is None else str(result.keys_settled)
                ),
                "seconds_by_step": md_table(
                    pl.DataFrame(
                        {
                            "step": list(result.seconds),
                            "seconds": [round(v, 2) for v in result.seconds.values()],
                        }
                    )
                ),
                "rows_read": files.rows_read,
                "rows_rejected": files.rows_rejected,
                "rows_duplicate": files.rows_duplicate,
                "files_with_errors": len(files.errors),
                # Counts and file names only: no personal values in Dagster's event log.
                "files_preview": md_table(files.preview),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="row_accounting",
                    passed=files.unbalanced == 0,
                    metadata={"unbalanced_files": files.unbalanced},
                ),
                dg.AssetCheckResult(
                    check_name="source_fresh",
                    passed=not fresh["stale"],
                    severity=dg.AssetCheckSeverity.WARN,
                    description=(
                        "demo data, not checked for freshness"
                        if fresh["demo"]
                        else "; ".join(fresh["reasons"]) or "fresh"
                    ),
                    metadata={
                        "newest_file_days": fresh["file_age"],
                        "latest_day": str(fresh["latest_day"]) if fresh["latest_day"] else None,
                        "latest_data_days": fresh["data_age"],
                    },
                ),
                dg.AssetCheckResult(
                    check_name="files_readable",
                    passed=not files.errors,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "errors": dg.MetadataValue.md(
                            "\n".join(f"- {p}: {e}" for p, e in files.errors) or "none"
                        )
                    },
                ),
            ],
        )

    return _ingest


def configured_sources(project: Project) -> list[SourceConfig]:
    """Sources from the project's sources.yaml; none when the file does not exist yet."""
    if not project.sources_yaml.exists():
        return []
    return list(project.config().sources)


@dg.definitions
def ingest_assets() -> dg.Definitions:
    # Built at load time, as the partitions come from the project's sources.yaml.
    project = Project.from_env()
    partitions_def = person_shards(project)
    return dg.Definitions(
        assets=[build_ingest_asset(s, partitions_def) for s in configured_sources(project)]
    )
