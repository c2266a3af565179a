"""A warehouse written before the DII columns (thiamin_mg, riboflavin_mg, niacin_mg,
beta_carotene_ug, folic_acid_ug) existed upgrades on the next run: files are read again into the
new layout, diet_daily is rebuilt with the new columns and the DII counts the new parameters, and
no input line is counted twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from pipelines.project import Project
from pipelines.reports.dashboards import diet_columns_shown
from pipelines.store import TABLES as STORE_TABLES

NEW_COLUMNS = ("thiamin_mg", "riboflavin_mg", "niacin_mg", "beta_carotene_ug", "folic_acid_ug")

# A Cronometer servings export with the B vitamins and beta-carotene (UTF-8 BOM, CRLF).
SERVINGS = (
    "Day,Time,Group,Food Name,Amount,Energy (kcal),Protein (g),Carbs (g),Fat (g),Fiber (g),"
    "B1 (Thiamine) (mg),B2 (Riboflavin) (mg),B3 (Niacin) (mg),Beta-carotene (µg),Category\r\n"
    '2026-03-02,08:05 AM,Breakfast,"Oats, rolled",80.00 g,303.2,10.5,54.1,5.3,8.1,0.37,0.1,0.9,0,'
    "Cereal Grains and Pasta\r\n"
    "2026-03-02,12:30 PM,Lunch,Carrots,150.00 g,61.5,1.4,14.4,0.4,4.2,0.1,0.09,1.47,12480,"
    "Vegetables and Vegetable Products\r\n"
    '2026-03-02,07:00 PM,Dinner,"Chicken, breast, roasted",200.00 g,330.0,62.0,0,7.2,0,0.14,'
    "0.24,18.9,0,Poultry Products\r\n"
    '2026-03-02,07:00 PM,Dinner,"Rice, white, cooked",300.00 g,390.0,8.1,84.6,0.9,1.2,0.06,0.04,'
    "1.2,0,Cereal Grains and Pasta\r\n"
    "2026-03-03,08:00 AM,Breakfast,Kefir,250.00 g,157.5,9.0,11.2,8.8,0,0.05,0.43,0.2,,"
    "Dairy and Egg Products\r\n"
    "2026-03-03,07:15 PM,Dinner,Lentils,200.00 g,232.0,18.0,40.0,0.8,15.8,0.34,0.15,2.12,10,"
    "Legumes and Legume Products\r\n"
    '2026-03-03,07:15 PM,Dinner,"Bread, whole-wheat",120.00 g,303.6,15.6,51.6,4.2,8.4,0.47,0.2,'
    "5.6,6,Baked Products\r\n"
    '2026-03-03,09:00 PM,Snacks,"Nuts, almonds",50.00 g,289.5,10.6,10.8,24.9,6.3,0.1,0.57,1.8,0,'
    "Nut and Seed Products\r\n"
)


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(f'DESCRIBE "{table}"').fetchall()]


def _make_it_old(path: Path, store: Path) -> None:
    """Take the new columns out of every table that has them, and mark every step as done by
    older code (as an upgrade finds the warehouse). Older code kept the store's tables, the raw
    and staging tables among them, as native tables and had no store."""
    conn = duckdb.connect(str(path))
    try:
        views = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
            ).fetchall()
        ]
        stored = {v for v in views if v in STORE_TABLES or v.startswith(("raw_", "stg_"))}
        for table in stored:
            conn.execute(f'CREATE TABLE "_old_{table}" AS SELECT * FROM "{table}"')
            conn.execute(f'DROP VIEW "{table}"')
            conn.execute(f'ALTER TABLE "_old_{table}" RENAME TO "{table}"')
        conn.execute("DROP TABLE store_parts")
        shutil.rmtree(store)
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        for table in tables:
            for column in set(NEW_COLUMNS) & set(_columns(conn, table)):
                conn.execute(f'ALTER TABLE "{table}" DROP COLUMN {column}')
        for state in ("person_day_inputs", "person_inputs"):
            if state in tables:
                conn.execute(f"UPDATE {state} SET salt = 'older code'")
    finally:
        conn.close()


def test_a_warehouse_without_the_new_columns_upgrades(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - name: alice_cronometer\n    kind: diet\n    format: cronometer_servings\n"
        "    path: cronometer/*.csv\n    person: alice\n",
        encoding="utf-8",
    )
    raw = tmp_path / "data" / "raw" / "cronometer"
    raw.mkdir(parents=True)
    (raw / "servings.csv").write_bytes(b"\xef\xbb\xbf" + SERVINGS.encode())
    assert main(["run", "--project-dir", str(tmp_path)]) == 0
    project = Project(tmp_path)
    _make_it_old(project.warehouse().path, project.root / "data" / "store")
    with duckdb.connect(str(project.warehouse().path), read_only=True) as conn:
        assert not set(NEW_COLUMNS) & set(_columns(conn, "diet_daily"))

    assert main(["run", "--project-dir", str(tmp_path)]) == 0
    wh = project.warehouse()
    files = wh.table("ingest_files").row(0, named=True)
    assert (files["rows_read"], files["rows_loaded"], files["rows_duplicate"]) == (8, 8, 0)
    assert wh.table("diet_entries").height == 8
    daily = wh.query(
        "SELECT day, thiamin_mg, riboflavin_mg, niacin_mg, beta_carotene_ug, folic_acid_ug, "
        "dii_params FROM diet_daily WHERE logged ORDER BY day"
    )
    # Energy, protein, carbohydrate, fat, fibre, the three B vitamins and beta-carotene.
    assert daily["folic_acid_ug"].null_count() == 2  # not in a Cronometer export
    expected = [(0.67, 0.47, 22.47, 12480.0, 9), (0.96, 1.35, 9.72, 16.0, 9)]
    for row, want in zip(daily.drop("day", "folic_acid_ug").rows(), expected, strict=True):
        assert row == pytest.approx(want)
    # The dashboards read the DII and its count, not the new nutrient columns.
    with duckdb.connect(str(wh.path), read_only=True) as conn:
        shown = diet_columns_shown(_columns(conn, "diet_daily"))
    assert {"dii", "dii_params"} <= set(shown) and not set(NEW_COLUMNS) & set(shown)
    page = (project.dashboards_dir / "person_alice.html").read_text(encoding="utf-8")
    assert "Weekly mean Dietary Inflammatory Index (DII, 9 of 45 parameters)" in page
