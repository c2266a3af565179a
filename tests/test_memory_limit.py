"""The steps' lowered DuckDB memory limit (`memory_limit`) must not make a step fail on a machine
with many cores: DuckDB needs some memory per thread for its hash tables."""

from pathlib import Path

import duckdb
import pytest

from pipelines.warehouse import MIN_MB_PER_THREAD, memory_limit

DISTINCT_PEOPLE = "SELECT count(DISTINCT person_id) FROM t"


def _many_people(path: Path, threads: int) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE t AS SELECT 'person-' || i::VARCHAR AS person_id FROM range(1000000) r(i)"
    )
    conn.execute(f"SET threads = {threads}")
    return conn


def _shown_mb(conn: duckdb.DuckDBPyConnection) -> float:
    """DuckDB's memory limit in MB (10^6 bytes); DuckDB shows it in MiB."""
    row = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None and row[0].endswith(" MiB")
    return float(row[0].removesuffix(" MiB")) * 2**20 / 1e6


def test_the_lowered_limit_has_a_floor_per_thread(tmp_path: Path) -> None:
    conn = _many_people(tmp_path / "w.duckdb", threads=16)
    before = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    with memory_limit(conn, "64MB"):
        assert conn.execute(DISTINCT_PEOPLE).fetchone() == (1_000_000,)
        # 16 threads x MIN_MB_PER_THREAD, shown by DuckDB in MiB.
        assert _shown_mb(conn) == pytest.approx(16 * MIN_MB_PER_THREAD, abs=0.2)
    assert conn.execute("SELECT current_setting('memory_limit')").fetchone() == before


def test_with_few_threads_the_limit_asked_for_holds(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    conn.execute("SET threads = 1")
    with memory_limit(conn, "64MB"):
        assert _shown_mb(conn) == pytest.approx(64, abs=0.2)
    with pytest.raises(ValueError, match="whole megabytes"):
        with memory_limit(conn, "1GB"):
            pass


def test_an_error_inside_goes_up_as_it_is(tmp_path: Path) -> None:
    """A failed statement aborts the transaction: the step's own error reaches the caller, not
    the failed restore of the limit (at 10,000 people an out-of-memory sort showed as "Current
    transaction is aborted")."""
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    conn.execute("BEGIN")
    with pytest.raises(duckdb.InvalidInputException, match="the step's own error"):
        with memory_limit(conn, "64MB"):
            conn.execute("SELECT error('the step''s own error')")
    conn.execute("ROLLBACK")
    with memory_limit(conn, "64MB"):
        with pytest.raises(ValueError, match="not DuckDB's"):
            with memory_limit(conn, "128MB"):
                raise ValueError("not DuckDB's")
        assert _shown_mb(conn) == pytest.approx(64, abs=0.2)  # put back after a Python error


def test_a_warehouse_connection_keeps_no_file_blocks_after_a_scan(tmp_path: Path) -> None:
    """DuckDB's external file cache kept the Parquet blocks every scan read in its buffer pool,
    up to the memory limit, so each step's peak grew with the tables it read (issue 19). A
    warehouse connection has it off; a default DuckDB connection (the control) fills it."""
    from pipelines.warehouse import Warehouse

    parquet = tmp_path / "rows.parquet"
    duckdb.sql(
        "COPY (SELECT range AS i, md5(range::VARCHAR) AS s FROM range(1000000)) "
        f"TO '{parquet}' (FORMAT parquet)"
    )
    scan = f"SELECT sum(i), max(s) FROM read_parquet('{parquet}')"
    cached = (
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
        "WHERE tag = 'EXTERNAL_FILE_CACHE'"
    )
    control = duckdb.connect()
    control.execute(scan).fetchall()
    filled = control.execute(cached).fetchone()
    assert filled is not None and filled[0] > 1_000_000
    with Warehouse(tmp_path / "warehouse.duckdb").write() as conn:
        assert conn.execute(scan).fetchall() == control.execute(scan).fetchall()
        assert conn.execute(cached).fetchone() == (0,)
