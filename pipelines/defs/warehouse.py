"""Canonical tables: every source's staging rows in one table per kind, plus `persons`.

`diet_entries` and `lab_results` are the stable tables users query; they are rebuilt from the
staging tables of the sources configured now, so removing a source from sources.yaml removes its
rows on the next run.
"""

import dagster as dg
import duckdb
import polars as pl

from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs.ingest import configured_sources, ingest_asset_key, staging_table
from pipelines.defs.resources import ProjectResource
from pipelines.project import Project
from pipelines.schema import DIET_ENTRY_SCHEMA, LAB_RESULT_SCHEMA, conform
from pipelines.warehouse import ident, replace_table, table_exists

CANONICAL = {
    "diet": ("diet_entries", DIET_ENTRY_SCHEMA),
    "labs": ("lab_results", LAB_RESULT_SCHEMA),
}


def union_staging(conn: duckdb.DuckDBPyConnection, kind: str, names: list[str]) -> pl.DataFrame:
    """All staging rows of the named sources of `kind`, in the canonical schema."""
    _, schema = CANONICAL[kind]
    full_schema = {**schema, "source": pl.String, "file_id": pl.String}
    frames = [
        conn.execute(f"SELECT * FROM {ident(staging_table(name))}").pl()
        for name in names
        if table_exists(conn, staging_table(name))
    ]
    if not frames:
        return conform(pl.DataFrame(), full_schema)
    return conform(pl.concat(frames, how="diagonal_relaxed"), full_schema)


def _canonical_asset(kind: str, sources_of_kind: list[str]) -> dg.AssetsDefinition:
    table, _ = CANONICAL[kind]

    @dg.asset(
        name=table,
        group_name="warehouse",
        kinds={"duckdb"},
        pool="duckdb_writer",
        deps=[ingest_asset_key(n) for n in sources_of_kind],
        description=(
            f"The canonical `{table}` table: the staging rows of every configured {kind} source, "
            "one schema, with `source`, `file_id` and `line` pointing back to the raw file."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        names = [s.name for s in project.config().by_kind(kind)]
        with project.warehouse().write() as conn:
            df = union_staging(conn, kind, names)
            replace_table(conn, table, df)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": df.height,
                "dagster/column_schema": column_schema(df),
                "people": df["person_id"].n_unique(),
                "rows_by_source": md_table(df.group_by("source").len().sort("source")),
            }
        )

    return _asset


@dg.asset(
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb_writer",
    deps=["diet_entries", "lab_results"],
)
def persons(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Everyone who appears in a diet or lab source, with covariates (sex, age) when known.

    Covariate sources (`kind: persons`) come in a later version; until then sex and age are null.
    """
    with project.warehouse().write() as conn:
        conn.execute(
            """
            CREATE OR REPLACE TABLE persons AS
            SELECT person_id, CAST(NULL AS VARCHAR) AS sex, CAST(NULL AS DOUBLE) AS age,
                   CAST(NULL AS INTEGER) AS birth_year
            FROM (SELECT person_id FROM diet_entries UNION SELECT person_id FROM lab_results)
            WHERE person_id IS NOT NULL
            ORDER BY person_id
            """
        )
        row = conn.execute("SELECT count(*) FROM persons").fetchone()
    return dg.MaterializeResult(metadata={"dagster/row_count": int(row[0]) if row else 0})


@dg.asset_check(asset="diet_entries", description="A raw file line loads at most once.")
def diet_entries_unique_lines(project: ProjectResource) -> dg.AssetCheckResult:
    dupes = project.warehouse().query(
        "SELECT file_id, line, count(*) AS n FROM diet_entries GROUP BY ALL HAVING n > 1"
    )
    return dg.AssetCheckResult(passed=dupes.is_empty(), metadata={"duplicate_keys": dupes.height})


@dg.asset_check(
    asset="lab_results", description="One result per person, marker and collection time."
)
def lab_results_unique_key(project: ProjectResource) -> dg.AssetCheckResult:
    dupes = project.warehouse().query(
        "SELECT person_id, marker, collected_at, count(*) AS n FROM lab_results "
        "GROUP BY ALL HAVING n > 1"
    )
    return dg.AssetCheckResult(passed=dupes.is_empty(), metadata={"duplicate_keys": dupes.height})


# Canonical unit and a generous plausible range per marker: outside it, a unit went wrong.
PLAUSIBLE = {
    "crp": ("mg/L", 0.0, 500.0),
    "esr": ("mm/h", 0.0, 200.0),
    "il6": ("pg/mL", 0.0, 10000.0),
    "calprotectin": ("ug/g", 0.0, 10000.0),
    "ferritin": ("ng/mL", 0.0, 100000.0),
    "wbc": ("10^3/uL", 0.0, 500.0),
}


@dg.asset_check(
    asset="lab_results",
    description="Every result is in its marker's canonical unit and within a plausible range.",
)
def lab_results_plausible_units(project: ProjectResource) -> dg.AssetCheckResult:
    df = project.warehouse().query("SELECT marker, unit, value FROM lab_results")
    bad = 0
    for marker, (unit, low, high) in PLAUSIBLE.items():
        rows = df.filter(pl.col("marker") == marker)
        bad += rows.filter(
            (pl.col("unit") != unit) | (pl.col("value") < low) | (pl.col("value") > high)
        ).height
    return dg.AssetCheckResult(passed=bad == 0, metadata={"implausible_results": bad})


@dg.definitions
def warehouse_assets() -> dg.Definitions:
    sources = configured_sources(Project.from_env())
    # A module with a @dg.definitions function contributes only what that function returns.
    return dg.Definitions(
        assets=[
            *[
                _canonical_asset(kind, [s.name for s in sources if s.kind == kind])
                for kind in CANONICAL
            ],
            persons,
        ],
        asset_checks=[
            diet_entries_unique_lines,
            lab_results_unique_key,
            lab_results_plausible_units,
        ],
    )
