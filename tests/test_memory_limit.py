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


def test_warehouse_connections_run_without_the_external_file_cache(tmp_path: Path) -> None:
    """With DuckDB's external file cache on (its default), diet_daily's first build peaked 60 to
    140 MB higher in the same time (`pipelines.warehouse.CONNECTION_CONFIG`): every connection a
    Warehouse opens, read-write or read-only, has it off; a default connection has it on."""
    from pipelines.warehouse import Warehouse

    setting = "SELECT current_setting('enable_external_file_cache')"
    assert duckdb.connect().execute(setting).fetchone() == (True,)
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert conn.execute(setting).fetchone() == (False,)
    with warehouse.read() as conn:
        assert conn.execute(setting).fetchone() == (False,)
