"""The food_taxonomy step without Dagster, as the asset in `pipelines/defs/features/assets.py`
runs it (and the benchmark measures it): every distinct (food, source category) pair categorised
into food_categories, and the foods no rule matched counted into unmapped_foods, each when its
inputs changed. The categorisation itself is `pipelines.transforms.food_categories`. The step
runs inside the caller's transaction (`Warehouse.write()`).
"""

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipelines.fingerprint import fingerprint
from pipelines.identity import inputs_identity
from pipelines.incremental import (
    changed,
    full_salt,
    parse_salt,
    plan_whole,
    quiet_plan,
    record,
    row_identity,
)
from pipelines.transforms.food_categories import (
    categorise_foods,
    load_overrides,
    unmapped_foods_from_counts,
    unmapped_pairs,
)
from pipelines.warehouse import memory_limit, replace_table

# DuckDB's memory while food_taxonomy plans and counts over every diary entry.
TAXONOMY_MEMORY_LIMIT = "64MB"


def unmapped_people_counts(conn: duckdb.DuckDBPyConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """Entries and energy per (person_id, food, category_raw) for the unmapped `pairs` only: what
    unmapped_foods_from_counts needs to count a food's people across its category_raw values."""
    empty = pl.DataFrame(
        schema={
            "person_id": pl.String,
            "food": pl.String,
            "category_raw": pl.String,
            "entries": pl.Int64,
            "energy_kcal": pl.Float64,
        }
    )
    if pairs.is_empty():
        return empty
    conn.register("_unmapped_pairs", pairs.select("food", "category_raw").to_arrow())
    try:
        return conn.execute(
            "SELECT e.person_id, e.food, e.category_raw, count(*) AS entries, "
            "sum(e.energy_kcal) AS energy_kcal FROM diet_entries e SEMI JOIN _unmapped_pairs u "
            "ON e.food IS NOT DISTINCT FROM u.food "
            "AND e.category_raw IS NOT DISTINCT FROM u.category_raw GROUP BY ALL"
        ).pl()
    finally:
        conn.unregister("_unmapped_pairs")


@dataclass(frozen=True)
class Taxonomy:
    """What food_taxonomy wrote (or kept): the categories, the unmapped foods, the overrides, and
    which of the two tables it wrote again."""

    categories: pl.DataFrame
    unmapped: pl.DataFrame
    overrides: pl.DataFrame | None
    categories_changed: bool
    unmapped_changed: bool


def _kept_taxonomy(conn: duckdb.DuckDBPyConnection, overrides: pl.DataFrame | None) -> Taxonomy:
    """What food_taxonomy keeps when its inputs did not change: both tables as they are."""
    return Taxonomy(
        conn.execute("SELECT * FROM food_categories").pl(),
        conn.execute("SELECT * FROM unmapped_foods").pl(),
        overrides,
        categories_changed=False,
        unmapped_changed=False,
    )


def update_food_taxonomy(conn: duckdb.DuckDBPyConnection, overrides_path: Path | None) -> Taxonomy:
    """Categorise every distinct (food, source category) pair, with the user's overrides, into
    food_categories, and count the foods no rule matched into unmapped_foods, each when its inputs
    changed.

    unmapped_foods (each food's entries, energy, people and share of all energy) moves with every
    diary entry's person, food, category or energy: planned whole on those (`plan_whole`), so an
    edited overrides file changes it at the next run. food_categories depends on the distinct
    pairs alone (and the overrides and the taxonomy): a night of new entries of known foods keeps
    it, without categorising again. diet_daily then rebuilds only the days that eat a food whose
    categories changed (day_inputs_sql). Memory: the distinct foods, never the
    entries.
    """
    # Read (and checked, line by line) every run: a broken overrides file is reported at once.
    overrides = load_overrides(overrides_path) if overrides_path else None
    # The entries enter as their `row_identity` (provenance), so the parse is part of the salt.
    salt = (fingerprint([overrides_path]) if overrides_path else "") + parse_salt(conn)
    outputs = ["food_categories", "unmapped_foods"]
    # Its scans of every entry under a low DuckDB limit: under the connection's 1 GB DuckDB kept
    # the blocks it read cached, which grew with the diary (issue 19).
    with memory_limit(conn, TAXONOMY_MEMORY_LIMIT):
        # A night with nothing new stops here, before any entry is read (`quiet_plan`).
        columns = ["person_id", "food", "category_raw", "energy_kcal"]
        identity = inputs_identity(
            conn, [f"SELECT {', '.join(columns)} FROM diet_entries"], full_salt(salt)
        )
        if quiet_plan(conn, "food_taxonomy", identity, outputs) is not None:
            return _kept_taxonomy(conn, overrides)
        # Counted in DuckDB: a few thousand distinct foods out of millions of entries. The same
        # scan fingerprints each pair's entries (a count and two sums of their row identities),
        # and the step is planned on those: on the entries' own values, not on the energy sums,
        # which a parallel sum rounds differently from run to run. unmapped_foods counts each
        # food's people, so who logs what counts too (the provenance names the person's file).
        entry = row_identity(conn, "diet_entries", columns)
        pairs = conn.execute(
            "SELECT food, category_raw, count(*) AS entries, sum(energy_kcal) AS energy_kcal, "
            "bit_xor(_row) AS _rows_xor, sum(_row::HUGEINT) AS _rows_sum "
            f"FROM (SELECT food, category_raw, energy_kcal, {entry} AS _row FROM diet_entries) "
            "GROUP BY food, category_raw ORDER BY food, category_raw"
        ).pl()
        conn.register("_taxonomy_pairs", pairs.drop("energy_kcal").to_arrow())
        try:
            plan = plan_whole(
                conn,
                "food_taxonomy",
                inputs=["SELECT * FROM _taxonomy_pairs"],
                outputs=outputs,
                salt=salt,
                identity=identity,
            )
            if not changed(plan):
                return _kept_taxonomy(conn, overrides)
            pairs = pairs.drop("_rows_xor", "_rows_sum")
            pairs_plan = plan_whole(
                conn,
                "food_categories",
                inputs=["SELECT food, category_raw FROM _taxonomy_pairs"],
                outputs=["food_categories"],
                salt=salt,
            )
        finally:
            conn.unregister("_taxonomy_pairs")
        # A step with no record of its own (a first run, or a record forgotten) categorises too,
        # whatever the pairs' record says: it recomputes everything, as every step does then.
        categories_changed = plan.everyone or changed(pairs_plan)
        if categories_changed:
            categories = categorise_foods(pairs, overrides=overrides)
            replace_table(conn, "food_categories", categories)
            record(conn, pairs_plan)
        else:
            categories = conn.execute("SELECT * FROM food_categories").pl()
        unmapped = unmapped_foods_from_counts(
            unmapped_people_counts(conn, unmapped_pairs(pairs, categories)),
            categories,
            float(pairs["energy_kcal"].sum() or 0.0),
        )
        # New entries of mapped foods (most nights) leave the table as it was: it then says so, and
        # keeps its version for the plans that read it.
        unmapped_changed = plan.everyone or not unmapped.equals(
            conn.execute("SELECT * FROM unmapped_foods").pl()
        )
        if unmapped_changed:
            replace_table(conn, "unmapped_foods", unmapped)
        record(conn, plan)
        return Taxonomy(
            categories,
            unmapped,
            overrides,
            categories_changed=categories_changed,
            unmapped_changed=unmapped_changed,
        )
