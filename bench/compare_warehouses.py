"""Compare the ingest's and the canonical tables of two warehouses, content and order.

    python -m bench.compare_warehouses A/warehouse.duckdb B/warehouse.duckdb

For an A/B of a change that must leave the tables as they were (two builds of the same raw files,
e.g. the 200-person bench's workdir by main and by a branch): `raw_<source>`, `stg_<source>`,
`ingest_files`, `ingest_state`, `rejected_rows`, `lines_to_check` and the canonical tables, each
read as stored (`SELECT *`, no ORDER BY), less the clock of the run (`ingested_at`). `modified_at`
is compared too: give both builds the same files (copies that keep their times). Prints one line
per table and exits 1 when one differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from pipelines.steps.canonical import UNION_TABLES
from pipelines.warehouse import Warehouse, ident

BOOKKEEPING = ("ingest_files", "ingest_state", "rejected_rows", "lines_to_check")
CLOCK = ("ingested_at",)


def compared_tables(warehouse: Warehouse) -> list[str]:
    names = warehouse.query("SELECT table_name FROM information_schema.tables ORDER BY table_name")[
        "table_name"
    ].to_list()
    ingest = [n for n in names if n.startswith(("raw_", "stg_"))]
    return ingest + [n for n in (*BOOKKEEPING, *UNION_TABLES, "persons") if n in names]


def as_stored(warehouse: Warehouse, table: str) -> pl.DataFrame:
    frame = warehouse.query(f"SELECT * FROM {ident(table)}")
    return frame.drop([c for c in CLOCK if c in frame.columns])


def main(argv: list[str]) -> int:
    a, b = (Warehouse(Path(p)) for p in argv)
    names_a, names_b = compared_tables(a), compared_tables(b)
    different = 0
    if names_a != names_b:
        print(f"tables differ: {sorted(set(names_a) ^ set(names_b))}")
        different += 1
    for name in (n for n in names_a if n in names_b):
        left, right = as_stored(a, name), as_stored(b, name)
        same = left.equals(right)
        different += not same
        print(f"{'same' if same else 'DIFFERENT'}  {name}: {left.shape} / {right.shape}")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
