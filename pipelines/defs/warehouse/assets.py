"""Canonical tables: one asset per table over the staging tables of the sources that feed it,
and `persons` (the SQL and the merge of covariates: `pipelines.steps.canonical`)."""

import dagster as dg
import duckdb
import polars as pl

from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.ingest.assets import configured_sources, ingest_asset_key
from pipelines.defs.partitions import all_people
from pipelines.defs.resources import ProjectResource
from pipelines.defs.warehouse.checks import TABLE_CHECKS
from pipelines.identity import remembered
from pipelines.incremental import changed, plan_whole, record
from pipelines.project import Project
from pipelines.steps.canonical import (
    UNION_TABLES,
    build_canonical_table,
    build_persons,
    canonical_select,
    sources_feeding,
)
from pipelines.warehouse import ident, memory_limit, replace_table

# DuckDB's memory while the canonical steps scan their tables (metadata, checks, who is seen):
# under the connection's 1 GB DuckDB kept the blocks of every diary entry it read, so the step's
# peak grew with the cohort.
SCAN_MEMORY_LIMIT = "64MB"


def canonical_metadata(conn: duckdb.DuckDBPyConnection, table: str) -> dict:
    """Dagster metadata of a canonical table, computed by DuckDB without loading its rows."""
    t = ident(table)
    # Polars' n_unique counted a null person_id as one more value; count(DISTINCT) does not.
    totals = (
        "SELECT count(*), count(DISTINCT person_id) + (count(*) > count(person_id))::BIGINT "
        f"FROM {t}"
    )
    per_source = f"SELECT source, count(*) FROM {t} GROUP BY source ORDER BY source NULLS FIRST"

    def counts() -> tuple[tuple[int, int] | None, list[tuple[str | None, int]]]:
        with memory_limit(conn, SCAN_MEMORY_LIMIT):
            row = conn.execute(totals).fetchone()
            return (int(row[0]), int(row[1])) if row else None, conn.execute(per_source).fetchall()

    # Counted again only when the table's parts changed: not on a night with nothing new.
    row, sources = remembered(conn, [totals, per_source], counts)
    rows, people = (int(row[0]), int(row[1])) if row else (0, 0)
    by_source = pl.DataFrame(
        [(s, n) for s, n in sources], schema={"source": pl.String, "len": pl.UInt32}, orient="row"
    )
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(conn.execute(f"SELECT * FROM {t} LIMIT 0").pl()),
        "people": people,
        "rows_by_source": md_table(by_source),
    }


def _canonical_asset(table: str, feeding: list[str]) -> dg.AssetsDefinition:
    checks = TABLE_CHECKS.get(table, ())

    @dg.asset(
        code_version=CODE_VERSION,
        name=table,
        group_name="warehouse",
        kinds={"duckdb"},
        **all_people(),
        deps=[ingest_asset_key(n) for n in feeding],
        description=(
            f"The canonical `{table}` table: the staging rows of every source that feeds it, "
            "one schema, with `source`, `file_id` and `line` pointing back to the raw file."
        ),
        check_specs=[c.spec for c in checks],
    )
    def _asset(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        names = sources_feeding(project.config().sources, table)
        with project.warehouse().write() as conn:
            build_canonical_table(conn, table, names)
            metadata = canonical_metadata(conn, table)
            results = [c.run(conn, names) for c in checks]
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return _asset


@dg.asset(
    code_version=CODE_VERSION,
    group_name="warehouse",
    kinds={"duckdb"},
    **all_people(),
    deps=["diet_entries", "diet_daily_reported", "lab_results"],
)
def persons(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Everyone who appears in any source, with the covariates (sex, age, birth year; for survey
    cohorts such as NHANES also race/ethnicity, income-to-poverty ratio and the survey design:
    weight, stratum, PSU) that `kind: persons` sources report; people without covariates keep
    nulls."""
    names = sources_feeding(project.config().sources, "persons")
    seen_sql = (
        "SELECT DISTINCT person_id FROM diet_entries UNION SELECT person_id FROM "
        "diet_daily_reported UNION SELECT person_id FROM lab_results"
    )
    with project.warehouse().write() as conn, memory_limit(conn, SCAN_MEMORY_LIMIT):
        covariates_sql = canonical_select(conn, "persons", names)
        plan = plan_whole(conn, "persons", [covariates_sql, seen_sql], ["persons"], salt="")
        if changed(plan):
            covariates = conn.execute(covariates_sql).pl()
            seen = conn.execute(f"{seen_sql} ORDER BY 1").pl()["person_id"]
            replace_table(conn, "persons", build_persons(covariates, seen))
            record(conn, plan)
        people = conn.execute("SELECT * FROM persons").pl()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": people.height,
            "with_age": int(people["age"].is_not_null().sum()),
            "with_sex": int(people["sex"].is_not_null().sum()),
            "with_survey_design": int(
                people.filter(
                    pl.all_horizontal(pl.col(c).is_not_null() for c in ("weight", "stratum", "psu"))
                ).height
            ),
            "changed": changed(plan),
        }
    )


@dg.definitions
def warehouse_assets() -> dg.Definitions:
    sources = configured_sources(Project.from_env())
    # A module with a @dg.definitions function contributes only what that function returns.
    return dg.Definitions(
        assets=[
            *[_canonical_asset(t, sources_feeding(sources, t)) for t in UNION_TABLES],
            persons,
        ],
    )
