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

import duckdb
import polars as pl

from pipelines import store
from pipelines.steps.canonical import UNION_TABLES
from pipelines.warehouse import ident

BOOKKEEPING = ("ingest_files", "ingest_state", "rejected_rows", "lines_to_check")
CLOCK = ("ingested_at",)


class Tables:
    """A warehouse file's tables, read-only: a store table over its parts in `store_parts`'
    order (the views of a bench workdir may point at the folder it was built in), any other
    from DuckDB."""

    def __init__(self, path: Path) -> None:
        self.conn = duckdb.connect(str(path), read_only=True)
        # A project's store is data/store beside data/processed; a lone warehouse's, beside it.
        project_store = path.parent.parent / "store"
        self.root = project_store if project_store.is_dir() else store.beside(path)
        self.parts = store.live_parts(self.conn, self.root)
        # The store's views over this folder's parts (as `store.attach` makes them), which the
        # canonical views read.
        for table, parts in self.parts.items():
            self.conn.execute(
                f"CREATE OR REPLACE TEMP VIEW {ident(table)} AS {store.view_sql(self.root, parts)}"
            )
        native = self.conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
        ).fetchall()
        self.names = {n for (n,) in native} | set(self.parts)

    def compared(self) -> list[str]:
        ingest = sorted(n for n in self.names if n.startswith(("raw_", "stg_")))
        return ingest + [n for n in (*BOOKKEEPING, *UNION_TABLES, "persons") if n in self.names]

    def as_stored(self, table: str) -> pl.DataFrame:
        frame = self.conn.sql(f"SELECT * FROM {ident(table)}").pl()
        return frame.drop([c for c in CLOCK if c in frame.columns])


def main(argv: list[str]) -> int:
    a, b = (Tables(Path(p)) for p in argv)
    names_a, names_b = a.compared(), b.compared()
    different = 0
    if names_a != names_b:
        print(f"tables differ: {sorted(set(names_a) ^ set(names_b))}")
        different += 1
    for name in (n for n in names_a if n in names_b):
        left, right = a.as_stored(name), b.as_stored(name)
        same = left.equals(right)
        different += not same
        print(f"{'same' if same else 'DIFFERENT'}  {name}: {left.shape} / {right.shape}")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
