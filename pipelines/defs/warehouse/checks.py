"""Checks on the canonical tables: a raw line loads once, lab results are unique and plausible."""

import dagster as dg
import polars as pl

from pipelines.defs.resources import ProjectResource
from pipelines.ingest import check_unique_lines
from pipelines.steps.canonical import sources_feeding
from pipelines.transforms.plausibility import MAX_CRP_MG_L


@dg.asset_check(
    asset="diet_entries",
    description="A raw file line loads at most once (among the files loaded since it last passed).",
    # It forgets the files it has checked, so it writes, under the same lock as every writer.
    pool="duckdb_writer",
)
def diet_entries_unique_lines(project: ProjectResource) -> dg.AssetCheckResult:
    names = sources_feeding(project.config().sources, "diet_entries")
    with project.warehouse().write() as conn:
        duplicates, files_checked = check_unique_lines(conn, "diet_entries", names)
    return dg.AssetCheckResult(
        passed=duplicates == 0,
        metadata={
            "duplicate_keys": duplicates,
            "files_checked": "all" if files_checked is None else files_checked,
        },
    )


@dg.asset_check(
    asset="lab_results", description="One result per person, marker and collection time."
)
def lab_results_unique_key(project: ProjectResource) -> dg.AssetCheckResult:
    dupes = project.warehouse().query(
        "SELECT person_id, marker, collected_at, count(*) AS n FROM lab_results "
        "GROUP BY ALL HAVING n > 1"
    )
    return dg.AssetCheckResult(passed=dupes.is_empty(), metadata={"duplicate_keys": dupes.height})


# Canonical unit and a generous plausible range per marker: outside it, a unit went wrong. CRP's
# ceiling is the plausibility rule's (ingest rejects above it), so a value ingest accepted never
# fails this check.
PLAUSIBLE = {
    "hscrp": ("mg/L", 0.0, MAX_CRP_MG_L),
    "crp": ("mg/L", 0.0, MAX_CRP_MG_L),
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
