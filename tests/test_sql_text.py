"""`sql_text`, the one way the pipeline writes a value into SQL text, against a real DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.literals import sql_text


@pytest.mark.parametrize(
    "value",
    ["plain", "", "O'Brien", "''", "it''s", "a'; DROP TABLE x; --", "quote ' and \" and \\", "é'ü"],
)
def test_a_text_comes_back_unchanged(value: str) -> None:
    conn = duckdb.connect()
    assert conn.sql(f"SELECT {sql_text(value)}").fetchone() == (value,)


def test_a_path_with_a_quote_reads_its_file(tmp_path: Path) -> None:
    dest = tmp_path / "it's here" / "t.parquet"
    dest.parent.mkdir()
    conn = duckdb.connect()
    conn.sql(f"COPY (SELECT 42 AS x) TO {sql_text(dest)} (FORMAT parquet)")
    assert conn.sql(f"SELECT x FROM read_parquet({sql_text(dest)})").fetchone() == (42,)
