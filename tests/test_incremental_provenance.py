"""diet_daily's plan identifies an ingested row by its provenance (`row_identity`): each change
the ingest can make to a day's rows still recomputes that day, and a changed parse everyone."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines import store
from pipelines.incremental import parse_salt, plan_days, record_days, row_identity
from pipelines.steps.features import daily_entry_columns, day_inputs_sql

DAY = date(2025, 3, 1)


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    store.attach(c, tmp_path / "store", read_only=False)  # diet_daily's records are store parts
    c.execute(
        "CREATE TABLE diet_entries (person_id VARCHAR, day DATE, food VARCHAR, "
        "category_raw VARCHAR, grams DOUBLE, line BIGINT, source VARCHAR, file_id VARCHAR)"
    )
    c.execute(
        "CREATE TABLE diet_daily_reported (person_id VARCHAR, day DATE, period VARCHAR, "
        "energy_kcal DOUBLE, line BIGINT, source VARCHAR, file_id VARCHAR)"
    )
    c.execute("CREATE TABLE food_categories (food VARCHAR, category_raw VARCHAR, category VARCHAR)")
    c.execute("INSERT INTO food_categories VALUES ('Kefir', NULL, 'fermented')")
    c.execute("CREATE TABLE ingest_state (source VARCHAR, file_id VARCHAR, fingerprint VARCHAR)")
    c.execute(
        "INSERT INTO ingest_state VALUES ('diary', 'f1', 'parse-1'), ('diary', 'f2', 'parse-1')"
    )
    c.execute("CREATE TABLE diet_daily (person_id VARCHAR, day DATE)")
    rows = [
        ("ann", 0, "Apple", 1, "f1"),
        ("ann", 0, "Kefir", 2, "f1"),
        ("bob", 0, "Apple", 1, "f2"),
    ]
    for person, n, food, line, file_id in rows:
        c.execute(
            "INSERT INTO diet_entries "
            "VALUES (?, ?::DATE + ?::INTEGER, ?, NULL, 100, ?, 'diary', ?)",
            [person, DAY, n, food, line, file_id],
        )
    plan(c)  # the first plan: everyone, recorded
    return c


def plan(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Plan and record diet_daily's days; the people with a changed day ('*' for everyone)."""
    day_plan = plan_days(
        conn,
        "diet_daily",
        list(day_inputs_sql(conn, ["person_id", "day", "food", "category_raw", "grams"])),
        ["diet_daily"],
        salt=parse_salt(conn),
    )
    record_days(conn, day_plan)
    return {"*"} if day_plan.everyone else set(day_plan.people)


def test_nothing_changed_recomputes_nobody(conn: duckdb.DuckDBPyConnection) -> None:
    assert plan(conn) == set()


def test_an_edited_file_recomputes_its_days(conn: duckdb.DuckDBPyConnection) -> None:
    # The ingest replaces an edited file's rows with those of a new file_id.
    conn.execute("UPDATE diet_entries SET file_id = 'f3', grams = 50 WHERE file_id = 'f2'")
    conn.execute("UPDATE ingest_state SET file_id = 'f3' WHERE file_id = 'f2'")
    assert plan(conn) == {"bob"}


def test_a_removed_row_or_a_new_winning_file_recomputes_its_days(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute("DELETE FROM diet_entries WHERE file_id = 'f1' AND line = 2")
    assert plan(conn) == {"ann"}
    # A newer file now owns bob's day with the same rows: another file, the day is recomputed.
    conn.execute("UPDATE diet_entries SET file_id = 'f1', line = 9 WHERE person_id = 'bob'")
    assert plan(conn) == {"bob"}


def test_a_new_parse_recomputes_everyone(conn: duckdb.DuckDBPyConnection) -> None:
    # A new parser or source configuration re-reads every file under a new fingerprint: the
    # rows keep their provenance, so the salt is what must change.
    conn.execute("UPDATE ingest_state SET fingerprint = 'parse-2'")
    conn.execute("UPDATE diet_entries SET grams = 120")
    assert plan(conn) == {"*"}


def test_a_changed_category_recomputes_the_days_eating_the_food(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute("INSERT INTO food_categories VALUES ('Kefir', NULL, 'dairy')")
    assert plan(conn) == {"ann"}


def test_rows_without_provenance_enter_by_their_values(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("UPDATE diet_entries SET file_id = NULL, line = NULL")
    plan(conn)
    conn.execute("UPDATE diet_entries SET grams = 70 WHERE person_id = 'bob'")
    assert plan(conn) == {"bob"}


def test_a_row_without_provenance_among_ingested_rows_enters_by_its_values(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    conn.execute(
        "INSERT INTO diet_entries VALUES ('cat', ?, 'Apple', NULL, 100, NULL, 'hand', NULL)", [DAY]
    )
    assert plan(conn) == {"cat"}
    conn.execute("UPDATE diet_entries SET grams = 70 WHERE person_id = 'cat'")
    assert plan(conn) == {"cat"}
    # Once the table holds provenance rows only, they hash as before: nothing to recompute.
    conn.execute("DELETE FROM diet_entries WHERE person_id = 'cat'")
    assert plan(conn) == {"cat"}
    assert plan(conn) == set()


def test_provenance_alone_is_hashed_when_every_row_has_it(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    # The values are not read at all then (10 M diary rows' nutrients, on a night).
    assert row_identity(conn, "diet_entries", ["grams"]) == "hash(file_id, line)"
    conn.execute("UPDATE diet_entries SET line = NULL WHERE person_id = 'bob'")
    assert "grams" in row_identity(conn, "diet_entries", ["grams"])


def test_a_nutrient_with_one_value_in_the_history_counts_as_reported() -> None:
    # daily_entry_columns asks each nutrient for one value (EXISTS): a value in the last of many
    # rows still makes the nutrient reported, and a column of nulls only stays unreported.
    c = duckdb.connect()
    c.execute(
        "CREATE TABLE diet_entries AS SELECT 'ann' AS person_id, DATE '2025-03-01' AS day, "
        "'Apple' AS food, NULL::VARCHAR AS category_raw, 100.0 AS grams, "
        "200.0 AS energy_kcal, NULL::DOUBLE AS alcohol_g, "
        "CASE WHEN i = 299999 THEN 1.5 END AS fiber_g, NULL::DOUBLE AS protein_g "
        "FROM range(300000) r(i)"
    )
    columns, unreported = daily_entry_columns(c)
    assert "fiber_g" in columns and "fiber_g" not in unreported
    assert unreported == ["protein_g"]
    assert "alcohol_g" in columns  # read row by row, so loaded even when no entry reports it


def test_any_value_counts_as_reported_in_a_parquet_store(tmp_path: Path) -> None:
    # The test for a value is a comparison (`>= -inf`), so that DuckDB skips the all-null row
    # groups of the store's Parquet files; it must still see every value IS NOT NULL sees: a
    # negative number, minus infinity and NaN, wherever they are.
    c = duckdb.connect()
    c.execute(
        f"COPY (SELECT 'ann' AS person_id, DATE '2025-03-01' AS day, 'Apple' AS food, "
        "NULL::VARCHAR AS category_raw, 100.0 AS grams, 200.0 AS energy_kcal, "
        "NULL::DOUBLE AS alcohol_g, "
        "CASE WHEN i = 299999 THEN -2.0 END AS fiber_g, "
        "CASE WHEN i = 150000 THEN '-Infinity'::DOUBLE END AS sugars_g, "
        "CASE WHEN i = 7 THEN 'NaN'::DOUBLE END AS sodium_mg, "
        "NULL::DOUBLE AS protein_g FROM range(300000) r(i)) "
        f"TO '{tmp_path / 'entries.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE 10000)"
    )
    c.execute(f"CREATE VIEW diet_entries AS SELECT * FROM read_parquet('{tmp_path}/*.parquet')")
    columns, unreported = daily_entry_columns(c)
    assert {"fiber_g", "sugars_g", "sodium_mg"} <= set(columns)
    assert unreported == ["protein_g"]


@pytest.fixture
def diary() -> duckdb.DuckDBPyConnection:
    """Ingested diary entries (with provenance) of a mapped and an unmapped food."""
    c = duckdb.connect()
    c.execute(
        "CREATE TABLE diet_entries (person_id VARCHAR, day DATE, food VARCHAR, "
        "category_raw VARCHAR, energy_kcal DOUBLE, line BIGINT, source VARCHAR, file_id VARCHAR)"
    )
    c.execute("CREATE TABLE ingest_state (source VARCHAR, file_id VARCHAR, fingerprint VARCHAR)")
    c.execute("INSERT INTO ingest_state VALUES ('diary', 'f1', 'parse-1')")
    c.execute(
        "INSERT INTO diet_entries VALUES "
        "('ann', DATE '2025-03-01', 'Kefir, Plain, Lowfat', NULL, 100, 1, 'diary', 'f1'), "
        "('ann', DATE '2025-03-01', 'Zorblax Crunch', NULL, 300, 2, 'diary', 'f1')"
    )
    return c


def taxonomy_run(conn: duckdb.DuckDBPyConnection) -> tuple[bool, bool]:
    """food_taxonomy's step; whether it wrote food_categories and unmapped_foods again, and
    checked that unmapped_foods is what a first run on the same entries gives."""
    from pipelines.steps.taxonomy import update_food_taxonomy
    from pipelines.transforms.food_categories import categorise_foods, unmapped_foods

    done = update_food_taxonomy(conn, None)
    entries = conn.execute("SELECT * FROM diet_entries").pl()
    want = unmapped_foods(entries, categorise_foods(entries))
    assert done.unmapped.sort("food").equals(want.sort("food"))
    assert conn.execute("SELECT * FROM unmapped_foods").pl().sort("food").equals(want.sort("food"))
    return done.categories_changed, done.unmapped_changed


def test_food_taxonomy_plans_the_entries_by_provenance(diary: duckdb.DuckDBPyConnection) -> None:
    """food_taxonomy fingerprints each food's entries by their provenance: another person's
    new file logging a known food moves unmapped_foods (its people), a new parse recomputes
    both tables, and a night of the same rows changes nothing."""
    assert taxonomy_run(diary) == (True, True)
    assert taxonomy_run(diary) == (False, False)
    # Another person's file with the unmapped food: the food's people are now two.
    diary.execute("INSERT INTO ingest_state VALUES ('diary', 'f2', 'parse-1')")
    diary.execute(
        "INSERT INTO diet_entries VALUES "
        "('bob', DATE '2025-03-02', 'Zorblax Crunch', NULL, 300, 1, 'diary', 'f2')"
    )
    assert taxonomy_run(diary) == (False, True)
    assert diary.execute("SELECT people FROM unmapped_foods").fetchall() == [(2,)]
    # The same file's rows again (the ingest deletes and inserts a file whole): nothing changed.
    diary.execute("CREATE TEMP TABLE again AS SELECT * FROM diet_entries WHERE file_id = 'f2'")
    diary.execute("DELETE FROM diet_entries WHERE file_id = 'f2'")
    diary.execute("INSERT INTO diet_entries SELECT * FROM again")
    assert taxonomy_run(diary) == (False, False)
    # Ann's file edited (a new file_id) without the food, which bob logs in a third file: as
    # many entries of it as before, of the same energy, but one person logs it now.
    diary.execute("INSERT INTO ingest_state VALUES ('diary', 'f3', 'parse-1')")
    diary.execute(
        "UPDATE diet_entries SET file_id = 'f1b' WHERE file_id = 'f1'; "
        "UPDATE diet_entries SET person_id = 'bob', file_id = 'f3', line = 1 "
        "WHERE person_id = 'ann' AND food = 'Zorblax Crunch'"
    )
    assert taxonomy_run(diary) == (False, True)
    assert diary.execute("SELECT people FROM unmapped_foods").fetchall() == [(1,)]
    # A new parse of the source: its rows may differ in any value, so everything is redone.
    diary.execute("UPDATE ingest_state SET fingerprint = 'parse-2'")
    assert taxonomy_run(diary) == (True, True)
