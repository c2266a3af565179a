"""`settle` fills staging in slices of file order: bounded memory, the same rows in the same order.

The histories here are built in SQL straight into `raw_<source>` (parsing files would take longer
than the settle): people's exports that re-export earlier days, stored in an order that is not
file order, as a parallel insert leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

import pipelines.ingest.settle as ingest_settle
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest.settle import settle
from pipelines.ingest.tables import LINES_TO_CHECK, OWNERSHIP_KEY, ensure_tables
from pipelines.schema import TARGET_SCHEMAS

SOURCE = SourceConfig(
    name="cm", kind="diet", format="cronometer_servings", path="cm/*/*.csv", person=PersonSpec()
)


def history(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    people: int,
    exports: int,
    rows_per_day: int,
    first_ord: int = 0,
) -> None:
    """`exports` files per person, each of 20 days starting 10 days after the previous one's start
    (so every later file re-exports half of the one before), `rows_per_day` rows a day. For
    lab_results a day's rows share their key (marker and time), so a file repeats its keys and its
    first row of each counts; every 97th row has a null key column. Every value column is filled,
    as wide as real rows."""
    schema = TARGET_SCHEMAS[target]
    ensure_tables(conn, SOURCE.name, schema)
    files = people * exports
    conn.execute(
        "INSERT INTO _order SELECT md5((f + ?)::VARCHAR), f + ?, 'f' || (f + ?), false "
        "FROM range(?) t(f)",
        [first_ord, first_ord, first_ord, files],
    )
    day = f"DATE '2025-01-01' + ((f // {people}) * 10 + d)::INT"
    values = {
        c: f"(hash(f, d, i, {n}) % 100000) / 7.0"
        for n, (c, t) in enumerate(schema.items())
        if str(t) == "Float64"
    }
    if target == "lab_results":
        values |= {
            "collected_at": f"({day})::TIMESTAMP + INTERVAL 8 HOUR",
            "marker": "CASE WHEN (f + d + i) % 97 = 0 THEN NULL ELSE 'crp' END",
            "unit": "'mg/L'",
        }
    else:
        values |= {
            "day": f"CASE WHEN (f + d + i) % 97 = 0 THEN NULL ELSE {day} END",
            "food": "'food ' || (hash(f, d, i) % 700)",
            "meal": "'Lunch'",
        }
    select = ", ".join(f"{v} AS {c}" for c, v in values.items())
    # No particular order, as store_spooled leaves it (and file_id order is not file order).
    conn.execute(
        f"""
        INSERT INTO raw_cm BY NAME
        SELECT 'p' || (f % {people}) AS person_id, {select}, d * {rows_per_day} + i AS line,
            md5((f + {first_ord})::VARCHAR) AS file_id, d * {rows_per_day} + i AS _row
        FROM range({files}) t(f), range(20) s(d), range({rows_per_day}) u(i)
        ORDER BY hash(f, d, i)
        """
    )


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TEMP TABLE _order (file_id VARCHAR, ord BIGINT, path VARCHAR, keep BOOL)")
    return conn


def expected(target: str) -> str:
    """The rule, spelled out on its own: each key's rows of the newest file that has it (its first
    one, for a unique key), in file order."""
    keys = ", ".join(f"r.{k}" for k in OWNERSHIP_KEY[target])
    newest = (
        f"row_number() OVER (PARTITION BY {keys} ORDER BY o.ord DESC, r._row)"
        if target == "lab_results"
        else f"rank() OVER (PARTITION BY {keys} ORDER BY o.ord DESC)"
    )
    columns = ", ".join(f"r.{c}" for c in TARGET_SCHEMAS[target])
    return (
        f"SELECT {columns}, r.file_id, 'cm' AS source, r._row "
        f"FROM raw_cm r JOIN _order o USING (file_id) QUALIFY {newest} = 1 ORDER BY o.ord, r._row"
    )


def staged(conn: duckdb.DuckDBPyConnection) -> list[tuple]:
    return conn.execute("SELECT * FROM stg_cm ORDER BY rowid").fetchall()


@pytest.mark.parametrize("target", ["diet_entries", "lab_results"])
def test_a_sliced_settle_stores_the_same_rows_in_the_same_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """Slices of a few files, one file and the whole history give the same table, row for row,
    as the rule itself; a unique key repeated in a file keeps its first row."""
    conn = connect(tmp_path / "w.duckdb")
    history(conn, target, people=7, exports=5, rows_per_day=3)
    want = conn.execute(expected(target)).fetchall()
    assert 0 < len(want) < conn.execute("SELECT count(*) FROM raw_cm").fetchone()[0]  # type: ignore[index]
    for slice_rows in (1, 250, 10**9):
        monkeypatch.setattr(ingest_settle, "SLICE_ROWS", slice_rows)
        settle(conn, SOURCE, target, full=True)
        assert staged(conn) == want
    assert conn.execute(f"SELECT * FROM {LINES_TO_CHECK}").fetchall()[-1] == ("cm", None)


@pytest.mark.parametrize("target", ["diet_entries", "lab_results"])
def test_an_incremental_settle_in_slices_ends_where_a_full_one_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """New files that re-export days of the history: settling only their keys, a few files per
    slice, leaves the rows a full settle would, and lists exactly the files that now own keys."""
    monkeypatch.setattr(ingest_settle, "SLICE_ROWS", 100)
    conn = connect(tmp_path / "w.duckdb")
    history(conn, target, people=5, exports=4, rows_per_day=2)
    settle(conn, SOURCE, target, full=True)
    conn.execute(f"DELETE FROM {LINES_TO_CHECK}")
    keys = ", ".join(OWNERSHIP_KEY[target])
    before = set(conn.execute("SELECT file_id FROM raw_cm").fetchall())
    history(conn, target, people=3, exports=2, rows_per_day=2, first_ord=100)
    conn.execute(
        f"CREATE TEMP TABLE _affected AS SELECT DISTINCT hash({keys}) AS h, {keys} FROM raw_cm "
        "WHERE file_id NOT IN (SELECT file_id FROM _order WHERE ord < 100)"
    )
    assert settle(conn, SOURCE, target, full=False) > 0
    assert sorted(staged(conn), key=repr) == sorted(
        conn.execute(expected(target)).fetchall(), key=repr
    )
    listed = {f for (_, f) in conn.execute(f"SELECT * FROM {LINES_TO_CHECK}").fetchall()}
    owners = {f for (f,) in conn.execute("SELECT DISTINCT file_id FROM stg_cm").fetchall()}
    assert listed == owners - {f for (f,) in before}


def test_the_full_settle_stays_within_a_memory_limit_its_history_exceeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: one statement that sorted the whole history into staging ran out of DuckDB's
    memory limit (51.7 M rows under 1 GB). Scaled down: 250,000 wide rows under 60 MB, which the
    one statement does not fit in; in slices of 50,000 rows it does."""
    monkeypatch.setattr(ingest_settle, "SLICE_ROWS", 50_000)
    conn = connect(tmp_path / "w.duckdb")
    conn.execute("BEGIN TRANSACTION")  # as in a first ingest: the history is stored, then settled
    history(conn, "diet_entries", people=25, exports=10, rows_per_day=50)
    want = conn.execute(f"SELECT count(*) FROM ({expected('diet_entries')})").fetchone()
    conn.execute("SET threads = 1")  # the same peak every run
    conn.execute("SET memory_limit = '60MB'")
    settle(conn, SOURCE, "diet_entries", full=True)
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM stg_cm").fetchone() == want


class RowsRead:
    """The connection `settle` is given, counting the rows its slice statements take from
    raw_cm: each one runs under DuckDB's profiler, and every scan of raw_cm in its plan counts
    the rows it hands on (those its filters let through)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, profile: Path) -> None:
        self.conn, self.profile, self.per_slice = conn, profile, []

    def execute(self, query: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        if not (query.lstrip().startswith("INSERT INTO") and "_winner" in query):
            return self.conn.execute(query, params)
        self.conn.execute("PRAGMA enable_profiling = 'json'")
        self.conn.execute(f"PRAGMA profiling_output = '{self.profile}'")
        result = self.conn.execute(query, params)
        self.conn.execute("PRAGMA disable_profiling")
        self.per_slice.append(self._scanned(json.loads(self.profile.read_text())))
        return result

    def _scanned(self, node: dict[str, Any]) -> int:
        own = (
            node["operator_cardinality"]
            if node.get("operator_type") == "TABLE_SCAN"
            and str(node.get("extra_info", {}).get("Table", "")).endswith("raw_cm")
            else 0
        )
        return own + sum(self._scanned(child) for child in node.get("children", []))


def test_each_slice_reads_only_the_rows_of_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the settle of 51.7 M rows took 22 times as long as that of 10.3 M, because each
    slice read more of the history the longer it was. Two people exported side by side (as two
    generator workers write them), stored in two runs of file order (as two threads store them):
    a slice's files then span a wide range of people, and its key ranges let most of the history
    through. The slices together must read the history about once."""
    monkeypatch.setattr(ingest_settle, "SLICE_ROWS", 1_000)
    conn = connect(tmp_path / "w.duckdb")
    ensure_tables(conn, SOURCE.name, TARGET_SCHEMAS["diet_entries"])
    people, exports, rows_per_day = 20, 6, 5
    files = people * exports
    conn.execute(
        "INSERT INTO _order SELECT md5(f::VARCHAR), f, 'f' || f, false FROM range(?) t(f)", [files]
    )
    # File f is by worker f % 2: its k-th file, export k % exports of its (k // exports)-th person;
    # each export re-exports half of the one before.
    person = f"lpad(((f % 2) * {people // 2} + (f // 2) // {exports})::VARCHAR, 3, '0')"
    conn.execute(
        f"""
        INSERT INTO raw_cm BY NAME
        SELECT 'p' || {person} AS person_id,
            DATE '2025-01-01' + (((f // 2) % {exports}) * 10 + d)::INT AS day,
            'food ' || (hash(f, d, i) % 700) AS food, 'Lunch' AS meal,
            (hash(f, d, i) % 1000) / 7.0 AS energy_kcal, d * {rows_per_day} + i AS line,
            md5(f::VARCHAR) AS file_id, d * {rows_per_day} + i AS _row
        FROM range({files}) t(f), range(20) s(d), range({rows_per_day}) u(i)
        ORDER BY (f // 7) % 2, f, d, i
        """
    )
    stored = conn.execute("SELECT count(*) FROM raw_cm").fetchone()[0]  # type: ignore[index]
    reads = RowsRead(conn, tmp_path / "profile.json")
    settle(reads, SOURCE, "diet_entries", full=True)  # type: ignore[arg-type]
    assert staged(conn) == conn.execute(expected("diet_entries")).fetchall()
    assert len(reads.per_slice) > 5
    assert sum(reads.per_slice) <= 1.1 * stored
