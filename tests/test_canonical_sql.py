"""The canonical tables built in SQL equal what the Polars union built, and diet_daily is unchanged
when it loads only the diet_entries columns it uses.

The reference in each test is the code these replaced (`conform(pl.concat(staging frames))` and
`SELECT * FROM diet_entries`), kept here verbatim so a difference shows up as a failing test.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.config import Settings
from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs.warehouse.assets import canonical_metadata
from pipelines.schema import DIET_ENTRY_SCHEMA, NUTRIENTS, TARGET_SCHEMAS, conform
from pipelines.steps.canonical import (
    build_canonical_table,
    build_persons,
    canonical_schema,
    canonical_select,
    duckdb_type,
)
from pipelines.steps.diet_days import build_diet_daily
from pipelines.steps.features import daily_entry_columns
from pipelines.transforms.food_categories import categorise_foods
from pipelines.warehouse import replace_table, table_exists

# More than one DuckDB row group (122,880 rows), so a union that reordered rows would show.
BIG = 130_000
FOODS = ["Kefir, Plain, Lowfat", "Oats, Rolled, Dry", "Red Wine", "Apple, Raw", "Zzyzx Paste"]


def old_union_staging(
    conn: duckdb.DuckDBPyConnection, table: str, names: list[str]
) -> pl.DataFrame:
    """The Polars union that canonical_select replaced."""
    full_schema = {**TARGET_SCHEMAS[table], "source": pl.String, "file_id": pl.String}
    frames = [
        conn.execute(f'SELECT * FROM "stg_{name}"').pl()
        for name in names
        if table_exists(conn, f"stg_{name}")
    ]
    if not frames:
        return conform(pl.DataFrame(), full_schema)
    return conform(pl.concat(frames, how="diagonal_relaxed"), full_schema)


def old_metadata(df: pl.DataFrame) -> dict:
    return {
        "dagster/row_count": df.height,
        "dagster/column_schema": column_schema(df),
        "people": df["person_id"].n_unique(),
        "rows_by_source": md_table(df.group_by("source").len().sort("source")),
    }


def column_values(dtype: pl.DataType, n: int, rng: np.random.Generator) -> pl.Series:
    """`n` values of `dtype` with about 10 % nulls."""
    null = rng.random(n) < 0.1
    if dtype == pl.String:
        values = pl.Series(rng.integers(0, 50, n)).cast(pl.String).to_list()
        values = [f"v{v}" for v in values]
    elif dtype == pl.Float64:
        values = rng.normal(100, 30, n).tolist()
    elif dtype == pl.Int64:
        values = rng.integers(0, 10_000, n).tolist()
    elif dtype == pl.Boolean:
        values = (rng.random(n) < 0.5).tolist()
    elif dtype == pl.Date:
        values = [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 300, n)]
    elif isinstance(dtype, pl.Datetime):
        values = [datetime(2025, 1, 1) + timedelta(minutes=int(m)) for m in rng.integers(0, 1e6, n)]
    else:
        raise AssertionError(dtype)
    return pl.Series([None if z else v for v, z in zip(values, null, strict=True)], dtype=dtype)


def staging_frame(table: str, source: str, n: int, columns: list[str], seed: int) -> pl.DataFrame:
    """A staging table of `source` for canonical `table` with only `columns` of its schema."""
    rng = np.random.default_rng(seed)
    schema = {c: (t() if isinstance(t, type) else t) for c, t in TARGET_SCHEMAS[table].items()}
    cols = {c: column_values(schema[c], n, rng) for c in columns}
    cols["person_id"] = pl.Series([f"{source}_{i % 37}" for i in range(n)])
    return pl.DataFrame(cols).with_columns(
        pl.lit(f"file_{source}").alias("file_id"), pl.lit(source).alias("source")
    )


@pytest.fixture
def conn():
    with duckdb.connect() as c:
        yield c


@pytest.mark.parametrize(
    ("dtype", "sql"),
    [
        (pl.String, "VARCHAR"),
        (pl.String(), "VARCHAR"),
        (pl.Float64, "DOUBLE"),
        (pl.Int64, "BIGINT"),
        (pl.Int32, "INTEGER"),
        (pl.Boolean, "BOOLEAN"),
        (pl.Date, "DATE"),
        (pl.Datetime("us"), "TIMESTAMP"),
        (pl.Datetime, "TIMESTAMP"),  # the class defaults to microseconds, as conform casts it
    ],
)
def test_duckdb_type_of_canonical_dtypes(dtype: pl.DataType, sql: str) -> None:
    assert duckdb_type(dtype) == sql


@pytest.mark.parametrize(
    "dtype",
    [pl.Datetime("ms"), pl.Datetime("us", "UTC"), pl.Float32, pl.Int16, pl.Categorical, pl.Null],
)
def test_duckdb_type_refuses_what_it_does_not_map(dtype: pl.DataType) -> None:
    with pytest.raises(TypeError, match="no DuckDB type"):
        duckdb_type(dtype)


def test_every_canonical_schema_maps_to_duckdb() -> None:
    for table in TARGET_SCHEMAS:
        assert all(duckdb_type(t) for t in canonical_schema(table).values())


@pytest.mark.parametrize("table", sorted(TARGET_SCHEMAS))
def test_sql_union_equals_polars_union(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """Sources with different column sets, column orders, an extra internal column, a narrower
    integer type and a source without a staging table yet: same rows, order and types."""
    schema = list(TARGET_SCHEMAS[table])
    full = staging_frame(table, "full", BIG, schema, seed=1).with_columns(
        pl.int_range(pl.len()).alias("_row")  # internal column of the new ingest: left out
    )
    # A source that reports few columns, in its own order, one of them as Int32, plus a column
    # added after this code was written.
    few = [c for c in schema if c in ("person_id", "line") or TARGET_SCHEMAS[table][c] == pl.Date]
    few += [c for c in schema if TARGET_SCHEMAS[table][c] == pl.Float64][:2]
    partial = (
        staging_frame(table, "partial", 5_000, few[::-1], seed=2)
        .with_columns(pl.col("line").cast(pl.Int32), pl.lit("x").alias("added_later"))
        .select(pl.all().reverse())
    )
    replace_table(conn, "stg_full", full)
    replace_table(conn, "stg_partial", partial)
    replace_table(conn, "stg_elsewhere", partial)  # a staging table of a source not configured
    names = ["partial", "not_ingested_yet", "full"]

    expected = old_union_staging(conn, table, names)
    build_canonical_table(conn, table, names)
    got = conn.execute(f'SELECT * FROM "{table}"').pl()
    assert_frame_equal(got, expected, check_exact=True)
    assert got.height == BIG + 5_000
    assert canonical_metadata(conn, table) == old_metadata(expected)

    # The query alone (what persons reads) gives the same rows.
    assert_frame_equal(conn.execute(canonical_select(conn, table, names)).pl(), expected)


@pytest.mark.parametrize("table", sorted(TARGET_SCHEMAS))
def test_without_staging_tables_the_table_is_empty_with_its_schema(
    conn: duckdb.DuckDBPyConnection, table: str
) -> None:
    build_canonical_table(conn, table, ["never_ingested"])
    got = conn.execute(f'SELECT * FROM "{table}"').pl()
    # Not the Polars path here: `conform(pl.DataFrame(), schema)` selects only literals, which
    # Polars broadcasts to one row, so that path wrote a single all-null row (a phantom person in
    # `persons`, a phantom row in `diet_summary`).
    assert_frame_equal(got, pl.DataFrame(schema=canonical_schema(table)))
    types = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall()
    assert types == [(c, duckdb_type(t)) for c, t in canonical_schema(table).items()]
    meta = canonical_metadata(conn, table)
    assert meta == old_metadata(got)
    assert meta["dagster/row_count"] == 0 and meta["rows_by_source"] == dg.MetadataValue.md(
        "_empty_"
    )


def test_metadata_counts_a_missing_person_like_polars_did(conn: duckdb.DuckDBPyConnection) -> None:
    stg = staging_frame("lab_results", "labs", 10, ["person_id", "value"], seed=3)
    stg = stg.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.lit("p")).alias("person_id"),
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.lit("labs")).alias("source"),
    )
    replace_table(conn, "stg_labs", stg)
    build_canonical_table(conn, "lab_results", ["labs"])
    meta = canonical_metadata(conn, "lab_results")
    assert meta == old_metadata(old_union_staging(conn, "lab_results", ["labs"]))
    assert meta["people"] == 2  # "p" and the missing person, as Series.n_unique counts


def test_persons_covariates_keep_source_order(conn: duckdb.DuckDBPyConnection) -> None:
    """The first non-null covariate wins in sources.yaml order, so the union must keep it."""
    first = pl.DataFrame(
        {"person_id": ["a", "b"], "sex": [None, "female"], "age": [30.0, None], "line": [1, 2]}
    ).with_columns(pl.lit("f1").alias("file_id"), pl.lit("first").alias("source"))
    second = pl.DataFrame(
        {"person_id": ["a", "b"], "sex": ["male", "male"], "birth_year": [1990, 1980]}
    ).with_columns(pl.lit("f2").alias("file_id"), pl.lit("second").alias("source"))
    replace_table(conn, "stg_first", first)
    replace_table(conn, "stg_second", second)
    seen = pl.Series("person_id", ["a", "c"])
    for names in (["first", "second"], ["second", "first"]):
        covariates = conn.execute(canonical_select(conn, "persons", names)).pl()
        expected = old_union_staging(conn, "persons", names)
        assert_frame_equal(covariates, expected)
        assert_frame_equal(build_persons(covariates, seen), build_persons(expected, seen))
    people = build_persons(
        conn.execute(canonical_select(conn, "persons", ["first", "second"])).pl(), seen
    )
    people = people.select("person_id", "sex", "age", "birth_year")
    assert people.row(0) == ("a", "male", 30.0, 1990)
    assert people.row(1) == ("b", "female", None, 1980)


def diet_entries_table(rows: int, reported: list[str], seed: int = 4) -> pl.DataFrame:
    """Canonical diet entries where only the `reported` nutrients have values."""
    rng = np.random.default_rng(seed)
    base = pl.DataFrame(
        {
            "person_id": [f"p{i % 7}" for i in range(rows)],
            "day": [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 40, rows)],
            "time": ["08:00"] * rows,
            "meal": ["Breakfast"] * rows,
            "food": [FOODS[i] for i in rng.integers(0, len(FOODS), rows)],
            "amount_raw": ["1 cup"] * rows,
            "grams": rng.uniform(10, 400, rows),
            "category_raw": [None if i % 3 else "Snacks" for i in range(rows)],
            "line": list(range(rows)),
            **{n: rng.uniform(0, 300, rows) for n in reported},
        }
    )
    return conform(base, {**DIET_ENTRY_SCHEMA, "source": pl.String, "file_id": pl.String})


@pytest.mark.parametrize(
    "reported",
    [
        ["energy_kcal", "protein_g", "fiber_g", "alcohol_g", "sodium_mg"],
        ["protein_g"],  # energy_kcal and alcohol_g all null: still loaded, read row by row
        list(NUTRIENTS),
        [],
    ],
)
@pytest.mark.parametrize("rows", [2_000, 0])
def test_diet_daily_from_the_needed_columns_equals_select_star(
    conn: duckdb.DuckDBPyConnection, reported: list[str], rows: int
) -> None:
    replace_table(conn, "diet_entries", diet_entries_table(rows, reported))
    everything = conn.execute("SELECT * FROM diet_entries").pl()
    categories = categorise_foods(everything)
    expected = build_diet_daily(everything, categories, Settings())

    columns, unreported = daily_entry_columns(conn)
    entries = conn.execute(f"SELECT {', '.join(columns)} FROM diet_entries").pl()
    got = build_diet_daily(entries, categories, Settings(), None, unreported)
    assert_frame_equal(got, expected, check_exact=True)

    assert not {"time", "meal", "amount_raw", "line", "source", "file_id"} & set(entries.columns)
    never = set(NUTRIENTS) - set(reported) - {"energy_kcal", "alcohol_g"}
    assert set(unreported) == (never if rows else set(NUTRIENTS) - {"energy_kcal", "alcohol_g"})
    assert not set(unreported) & set(entries.columns)
