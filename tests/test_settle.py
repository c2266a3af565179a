"""`settle` fills staging shard by shard: bounded memory, the rule's rows, each shard in file order.

The histories here are built in SQL straight into `raw_<source>` (parsing files would take longer
than the settle): people's exports that re-export earlier days, stored in an order that is not
file order, as a parallel write leaves them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import store, store_writes
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import settle as settle_module
from pipelines.ingest.settle import _all_own, settle, staging_copy
from pipelines.ingest.tables import LINES_TO_CHECK, OWNERSHIP_KEY, ensure_tables, raw_schema
from pipelines.schema import TARGET_SCHEMAS
from pipelines.warehouse import create_table

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
    stride: int = 10,
    in_file_order: bool = False,
    null_keys: bool = True,
    copy: store_writes.Copy | None = None,
) -> None:
    """`exports` files per person, each of 20 days starting `stride` days after the previous one's
    start (10: every later file re-exports half of the one before; 20: none), `rows_per_day` rows
    a day, stored in a shuffled order (as a rewrite or an older store may leave them; file_id
    order is not file order either) or, `in_file_order`, as a first ingest stores them. For
    lab_results a day's rows share their key (marker and time), so a file repeats its keys and its
    first row of each counts; with `null_keys`, every 97th row has a null key column. Every value
    column is filled, as wide as real rows."""
    schema = TARGET_SCHEMAS[target]
    ensure_tables(conn, SOURCE.name, schema)
    null = "(f + d + i) % 97 = 0" if null_keys else "false"
    files = people * exports
    conn.execute(
        "INSERT INTO _order SELECT md5((f + ?)::VARCHAR), f + ?, 'f' || (f + ?), false "
        "FROM range(?) t(f)",
        [first_ord, first_ord, first_ord, files],
    )
    day = f"DATE '2025-01-01' + ((f // {people}) * {stride} + d)::INT"
    values = {
        c: f"(hash(f, d, i, {n}) % 100000) / 7.0"
        for n, (c, t) in enumerate(schema.items())
        if str(t) == "Float64"
    }
    if target == "lab_results":
        values |= {
            "collected_at": f"({day})::TIMESTAMP + INTERVAL 8 HOUR",
            "marker": f"CASE WHEN {null} THEN NULL ELSE 'crp' END",
            "unit": "'mg/L'",
        }
    else:
        values |= {
            "day": f"CASE WHEN {null} THEN NULL ELSE {day} END",
            "food": "'food ' || (hash(f, d, i) % 700)",
            "meal": "'Lunch'",
        }
    select = ", ".join(f"{v} AS {c}" for c, v in values.items())
    stored = f"f, d * {rows_per_day} + i" if in_file_order else "hash(f, d, i)"
    create_table(conn, "history_rows", raw_schema(schema))
    conn.execute(
        f"""
        INSERT INTO history_rows BY NAME
        SELECT 'p' || (f % {people}) AS person_id, {select}, d * {rows_per_day} + i AS line,
            md5((f + {first_ord})::VARCHAR) AS file_id, d * {rows_per_day} + i AS _row
        FROM range({files}) t(f), range(20) s(d), range({rows_per_day}) u(i)
        ORDER BY {stored}
        """
    )
    with store_writes.appending(conn, "raw_cm", copy) as add:
        add(conn.execute("SELECT * FROM history_rows").pl())
    conn.execute("DROP TABLE history_rows")


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    store.attach(conn, store.beside(path), read_only=False)
    conn.execute("CREATE TEMP TABLE _order (file_id VARCHAR, ord BIGINT, path VARCHAR, keep BOOL)")
    return conn


def expected(target: str) -> str:
    """The rule, spelled out on its own: each key's rows of the newest file that has it (its first
    one, for a unique key), shard by shard, each in file order."""
    keys = ", ".join(f"r.{k}" for k in OWNERSHIP_KEY[target])
    newest = (
        f"row_number() OVER (PARTITION BY {keys} ORDER BY o.ord DESC, r._row)"
        if target == "lab_results"
        else f"rank() OVER (PARTITION BY {keys} ORDER BY o.ord DESC)"
    )
    columns = ", ".join(f"r.{c}" for c in TARGET_SCHEMAS[target])
    return (
        f"SELECT {columns}, r.file_id, 'cm' AS source, r._row "
        f"FROM raw_cm r JOIN _order o USING (file_id) QUALIFY {newest} = 1 "
        f"ORDER BY {store.shard_sql(store.SHARDS, 'r.person_id')}, o.ord, r._row"
    )


def staged(conn: duckdb.DuckDBPyConnection) -> list[tuple]:
    return conn.execute("SELECT * FROM stg_cm").fetchall()


@pytest.mark.parametrize("target", ["diet_entries", "lab_results"])
def test_a_full_settle_stores_the_rules_rows_each_shard_in_file_order(
    tmp_path: Path, target: str
) -> None:
    """The same table, row for row, as the rule itself; a unique key repeated in a file keeps its
    first row; each shard one part."""
    conn = connect(tmp_path / "w.duckdb")
    history(conn, target, people=7, exports=5, rows_per_day=3)
    want = conn.execute(expected(target)).fetchall()
    assert 0 < len(want) < conn.execute("SELECT count(*) FROM raw_cm").fetchone()[0]  # type: ignore[index]
    for _ in range(2):
        settle(conn, SOURCE, target, full=True)
        assert staged(conn) == want
    assert conn.execute(f"SELECT * FROM {LINES_TO_CHECK}").fetchall()[-1] == ("cm", None)
    parts = conn.execute(
        "SELECT shard, count(*) FROM store_parts WHERE table_name = 'stg_cm' GROUP BY ALL"
    ).fetchall()
    assert sorted(parts) == [(k, 1) for k in range(store.SHARDS)]


@pytest.mark.parametrize(
    ("target", "stride", "copied"),
    [("diet_entries", 20, True), ("diet_entries", 10, False), ("lab_results", 20, False)],
)
def test_a_full_settle_of_a_history_stored_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, stride: int, copied: bool
) -> None:
    """As a first ingest stores them: exports that do not overlap are copied shard by shard as
    they are; overlapping ones, or a unique key repeated in a file, take the rule's join. The
    same rows as the rule either way."""
    seen: list[bool] = []

    def spy(*args: object, **kwargs: object) -> bool:
        # Handed a shard's files and the files' order by a hash of their id (issue 19).
        rows, order = args[1], args[3]
        assert isinstance(rows, str) and rows.startswith("read_parquet(")
        assert isinstance(order, pl.DataFrame) and order.schema["file_id"] == pl.UInt64
        seen.append(all_own(*args, **kwargs))  # type: ignore[arg-type]
        return seen[-1]

    all_own = settle_module._all_own
    monkeypatch.setattr(settle_module, "_all_own", spy)
    conn = connect(tmp_path / "w.duckdb")
    history(
        conn,
        target,
        people=7,
        exports=5,
        rows_per_day=3,
        stride=stride,
        in_file_order=True,
        null_keys=False,
    )
    settle(conn, SOURCE, target, full=True)
    assert staged(conn) == conn.execute(expected(target)).fetchall()
    occupied = {store.shard_of(f"p{i}", store.SHARDS) for i in range(7)}
    assert len(seen) == store.SHARDS  # one answer a shard; an empty shard is copied (no rows)
    assert seen.count(False) == (0 if copied else len(occupied))


@pytest.mark.parametrize(("stride", "used"), [(20, True), (10, False)])
def test_a_full_settle_moves_the_staging_copy_of_a_first_ingest_into_place(
    tmp_path: Path, stride: int, used: bool
) -> None:
    """A first ingest writes each shard's staging rows beside its raw rows (`staging_copy`); the
    settle moves a shard's copy into place where the rule keeps all its rows as stored, and
    leaves it where the rule's join decides. The same rows as the rule either way."""
    conn = connect(tmp_path / "w.duckdb")
    ensure_tables(conn, SOURCE.name, TARGET_SCHEMAS["diet_entries"])
    copy = staging_copy(conn, SOURCE)
    history(
        conn,
        "diet_entries",
        people=7,
        exports=5,
        rows_per_day=3,
        stride=stride,
        in_file_order=True,
        null_keys=False,
        copy=copy,
    )
    occupied = {store.shard_of(f"p{i}", store.SHARDS) for i in range(7)}
    assert set(copy.files) == occupied
    settle(conn, SOURCE, "diet_entries", full=True, copied=copy.files)
    assert staged(conn) == conn.execute(expected("diet_entries")).fetchall()
    left = {k for k, file in copy.files.items() if file.exists()}
    assert left == (set() if used else occupied)


@pytest.mark.parametrize("batch_rows", [2, settle_module.ORDER_BATCH_ROWS])
def test_all_own_needs_file_order_and_each_key_in_one_file(
    monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    """`_all_own`: stored in file order (by the files' ord, then _row; checked a batch of rows
    at a time, across the batches' ends), and no key in two files; a null key is a key like any
    other; for a unique key, not even twice in one file."""
    monkeypatch.setattr(settle_module, "ORDER_BATCH_ROWS", batch_rows)
    rows = pl.DataFrame(
        {
            "person_id": ["p", "p", "p", "q", "q"],
            "day": [1, 2, 3, None, 4],
            "file_id": ["b", "b", "c", "c", "a"],
            "_row": [0, 1, 0, 1, 0],
        }
    )
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE files (file_id VARCHAR, ord BIGINT)")
        conn.execute("INSERT INTO files VALUES ('a', 2), ('b', 0), ('c', 1)")
        order = conn.execute("SELECT hash(file_id) AS file_id, ord FROM files").pl()

        def all_own(frame: pl.DataFrame, unique: bool = False) -> bool:
            conn.register("stored", frame.to_arrow())
            try:
                return _all_own(conn, "stored", "r.person_id, r.day", order, unique)
            finally:
                conn.unregister("stored")

        assert all_own(rows)
        assert all_own(rows, unique=True)
        assert not all_own(rows.reverse())  # not in file order
        swapped = rows.with_columns(pl.Series("_row", [1, 0, 0, 1, 0]))  # a file's rows swapped
        assert not all_own(swapped)
        late = rows.with_columns(
            pl.Series("_row", [0, 1, 0, 1, 0]), pl.Series("file_id", ["b", "b", "c", "c", "b"])
        )
        assert not all_own(late)  # b's last row after c's: out of order at the end only
        again = rows.with_columns(pl.Series("day", [1, 2, 3, None, None]))  # (q, null) in c and a
        assert not all_own(again)
        twice = rows.with_columns(pl.Series("day", [1, 1, 3, None, 4]))  # (p, 1) twice in file b
        assert all_own(twice)
        assert not all_own(twice, unique=True)
        unknown = rows.with_columns(pl.Series("file_id", ["b", "b", "c", "c", "x"]))  # not in order
        assert not all_own(unknown)


@pytest.mark.parametrize("target", ["diet_entries", "lab_results"])
def test_an_incremental_settle_ends_where_a_full_one_would(tmp_path: Path, target: str) -> None:
    """New files that re-export days of the history: settling only their keys leaves the rows a
    full settle would, lists exactly the files that now own keys, and returns every file whose
    loaded rows changed (for the recount), older files that lost keys among them."""
    conn = connect(tmp_path / "w.duckdb")
    history(conn, target, people=5, exports=4, rows_per_day=2)
    settle(conn, SOURCE, target, full=True)
    conn.execute(f"DELETE FROM {LINES_TO_CHECK}")
    keys = ", ".join(OWNERSHIP_KEY[target])
    before = set(conn.execute("SELECT file_id FROM raw_cm").fetchall())
    count = "SELECT file_id, count(*) FROM stg_cm GROUP BY ALL"
    loaded = dict(conn.execute(count).fetchall())
    history(conn, target, people=3, exports=2, rows_per_day=2, first_ord=100)
    conn.execute(
        f"CREATE TEMP TABLE _affected AS SELECT DISTINCT hash({keys}) AS h, {keys} FROM raw_cm "
        "WHERE file_id NOT IN (SELECT file_id FROM _order WHERE ord < 100)"
    )
    settled = settle(conn, SOURCE, target, full=False)
    assert settled is not None and settled.keys > 0
    now = dict(conn.execute(count).fetchall())
    moved = {f for f in loaded.keys() | now.keys() if loaded.get(f) != now.get(f)}
    assert moved - {f for (f,) in before}, "new files own keys"
    assert moved & {f for (f,) in before}, "older files lost keys"
    assert moved <= set(settled.files)
    assert sorted(staged(conn), key=repr) == sorted(
        conn.execute(expected(target)).fetchall(), key=repr
    )
    listed = {f for (_, f) in conn.execute(f"SELECT * FROM {LINES_TO_CHECK}").fetchall()}
    owners = {f for (f,) in conn.execute("SELECT DISTINCT file_id FROM stg_cm").fetchall()}
    assert listed == owners - {f for (f,) in before}


def test_the_full_settle_stays_within_a_memory_limit_itshistory_rows_exceeds(
    tmp_path: Path,
) -> None:
    """Issue 19: one statement that sorted the whole history into staging ran out of DuckDB's
    memory limit (51.7 M rows under 1 GB). Scaled down: 250,000 wide rows under 60 MB, which the
    one statement does not fit in; a shard at a time it does."""
    conn = connect(tmp_path / "w.duckdb")
    conn.execute("BEGIN TRANSACTION")  # as in a first ingest: the history is stored, then settled
    history(conn, "diet_entries", people=25, exports=10, rows_per_day=50)
    want = conn.execute(f"SELECT count(*) FROM ({expected('diet_entries')})").fetchone()
    conn.execute("SET threads = 1")  # the same peak every run
    conn.execute("SET memory_limit = '60MB'")
    settle(conn, SOURCE, "diet_entries", full=True)
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM stg_cm").fetchone() == want


def files(root: Path, table: str) -> dict[Path, tuple[int, int]]:
    """A store table's files on disk, with their inode and mtime."""
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / table).glob("shard=*/*.parquet")
    }


def test_an_incremental_settle_writes_only_the_shards_of_affected_keys(tmp_path: Path) -> None:
    """A new export of one person: one new staging part in that person's shard, its parts that
    held the re-exported days rewritten; every other shard's files untouched (inode and mtime)."""
    path = tmp_path / "w.duckdb"
    conn = connect(path)
    history(conn, "diet_entries", people=6, exports=3, rows_per_day=2)
    settle(conn, SOURCE, "diet_entries", full=True)
    root = store.beside(path).resolve()
    before = files(root, "stg_cm")
    create_table(conn, "history_rows", raw_schema(TARGET_SCHEMAS["diet_entries"]))
    conn.execute("INSERT INTO _order VALUES ('new', 1000, 'new', false)")
    conn.execute(
        "INSERT INTO history_rows BY NAME SELECT 'p1' AS person_id, "
        "DATE '2025-01-15' + d::INT AS day, 'food' AS food, d AS line, 'new' AS file_id, d AS _row "
        "FROM range(10) t(d)"
    )
    with store_writes.appending(conn, "raw_cm") as add:
        add(conn.execute("SELECT * FROM history_rows").pl())
    conn.execute(
        "CREATE TEMP TABLE _affected AS SELECT DISTINCT hash(person_id, day) AS h, person_id, day "
        "FROM history_rows"
    )
    settle(conn, SOURCE, "diet_entries", full=False)
    after = files(root, "stg_cm")
    shard = f"shard={store.shard_of('p1', store.SHARDS):02d}"
    assert {p: v for p, v in before.items() if p.parent.name != shard} == {
        p: v for p, v in after.items() if p.parent.name != shard
    }
    assert {p.parent.name for p in set(after) - set(before)} == {shard}
    assert sorted(staged(conn), key=repr) == sorted(
        conn.execute(expected("diet_entries")).fetchall(), key=repr
    )
