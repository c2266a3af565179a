"""Canonical tables: every source's staging rows in one table per target, plus `persons`.

`diet_entries`, `diet_daily_reported`, `lab_results`, `biometrics` and `persons` are the stable
tables users query; they are rebuilt from the staging tables of the sources configured now, so
removing a source from sources.yaml removes its rows on the next run.
"""

import dagster as dg
import duckdb
import polars as pl

from pipelines.config import SourceConfig
from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs.ingest import configured_sources, ingest_asset_key, staging_table
from pipelines.defs.resources import ProjectResource
from pipelines.ingest import target_table
from pipelines.project import Project
from pipelines.schema import PERSON_SCHEMA, TARGET_SCHEMAS, conform
from pipelines.warehouse import ident, replace_table, table_exists

# Tables built by a plain union of their sources' staging tables.
UNION_TABLES = ("diet_entries", "diet_daily_reported", "lab_results", "biometrics")


def union_staging(conn: duckdb.DuckDBPyConnection, table: str, names: list[str]) -> pl.DataFrame:
    """All staging rows of the named sources, in the schema of canonical `table`."""
    full_schema = {**TARGET_SCHEMAS[table], "source": pl.String, "file_id": pl.String}
    frames = [
        conn.execute(f"SELECT * FROM {ident(staging_table(name))}").pl()
        for name in names
        if table_exists(conn, staging_table(name))
    ]
    if not frames:
        return conform(pl.DataFrame(), full_schema)
    return conform(pl.concat(frames, how="diagonal_relaxed"), full_schema)


def sources_feeding(
    sources: list[SourceConfig] | tuple[SourceConfig, ...], table: str
) -> list[str]:
    return [s.name for s in sources if target_table(s) == table]


def _canonical_asset(table: str, feeding: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name=table,
        group_name="warehouse",
        kinds={"duckdb"},
        pool="duckdb_writer",
        deps=[ingest_asset_key(n) for n in feeding],
        description=(
            f"The canonical `{table}` table: the staging rows of every source that feeds it, "
            "one schema, with `source`, `file_id` and `line` pointing back to the raw file."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        names = sources_feeding(project.config().sources, table)
        with project.warehouse().write() as conn:
            df = union_staging(conn, table, names)
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


def build_persons(covariates: pl.DataFrame, seen_ids: pl.Series) -> pl.DataFrame:
    """One row per person: covariates where a persons source has them, else nulls.

    When several sources describe the same person, the first non-null value per column wins
    (sources in sources.yaml order).
    """
    merged = covariates.group_by("person_id", maintain_order=True).agg(
        pl.col("sex").drop_nulls().first(),
        pl.col("age").drop_nulls().first(),
        pl.col("birth_year").drop_nulls().first(),
    )
    everyone = (
        pl.DataFrame({"person_id": seen_ids.drop_nulls().unique()})
        .vstack(merged.select("person_id"))
        .unique()
    )
    return (
        everyone.join(merged, on="person_id", how="left")
        .select(list(PERSON_SCHEMA)[:-1])
        .sort("person_id")
    )


@dg.asset(
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb_writer",
    deps=["diet_entries", "diet_daily_reported", "lab_results"],
)
def persons(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Everyone who appears in any source, with the covariates (sex, age, birth year) that
    `kind: persons` sources report; people without covariates keep nulls."""
    names = sources_feeding(project.config().sources, "persons")
    with project.warehouse().write() as conn:
        covariates = union_staging(conn, "persons", names)
        seen = conn.execute(
            "SELECT person_id FROM diet_entries UNION SELECT person_id FROM diet_daily_reported "
            "UNION SELECT person_id FROM lab_results"
        ).pl()["person_id"]
        people = build_persons(covariates, seen)
        replace_table(conn, "persons", people)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": people.height,
            "with_age": int(people["age"].is_not_null().sum()),
            "with_sex": int(people["sex"].is_not_null().sum()),
        }
    )


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
            *[_canonical_asset(t, sources_feeding(sources, t)) for t in UNION_TABLES],
            persons,
        ],
        asset_checks=[
            diet_entries_unique_lines,
            lab_results_unique_key,
            lab_results_plausible_units,
        ],
    )
