"""Compare one table of two project workdirs row by row: the same rows (by `--keys`), every
column equal, floats within `--rtol` relative (and `--atol` absolute, for values near 0).

    .venv/bin/python -m bench.compare_table WORKDIR_A WORKDIR_B --table diet_daily

Prints what differs and exits 1 when anything does; read-only on both warehouses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from pipelines.project import Project


def read(workdir: Path, table: str) -> pl.DataFrame:
    """The rows of `table` in the warehouse of `workdir` (a bench workdir or a project)."""
    root = workdir / "project" if (workdir / "project").is_dir() else workdir
    with Project(root).warehouse().read() as conn:
        return conn.execute(f'SELECT * FROM "{table}"').pl()


def differences(
    a: pl.DataFrame, b: pl.DataFrame, keys: list[str], rtol: float, atol: float
) -> list[str]:
    """What differs between the tables `a` and `b`, as lines of text; none when they match."""
    problems = []
    if a.columns != b.columns:
        problems.append(f"columns differ: {a.columns} != {b.columns}")
    if a.height != b.height:
        problems.append(f"rows differ: {a.height} != {b.height}")
    common = [c for c in a.columns if c in b.columns]
    a, b = a.select(common).sort(keys), b.select(common).sort(keys)
    if problems or a.select(keys).equals(b.select(keys)) is False:
        return problems or ["the keys differ"]
    worst = 0.0
    for column in common:
        x, y = a[column], b[column]
        if x.dtype != y.dtype:
            problems.append(f"{column}: type {x.dtype} != {y.dtype}")
        elif x.dtype.is_float():
            both = pl.DataFrame({"x": x, "y": y})
            nulls = both.filter(pl.col("x").is_null() != pl.col("y").is_null()).height
            gap = (pl.col("x") - pl.col("y")).abs()
            scale = pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs())
            bad = both.filter(gap > atol + rtol * scale)
            rel = both.select((gap / scale).fill_nan(0.0).max()).item() or 0.0
            worst = max(worst, rel)
            if nulls or bad.height:
                problems.append(f"{column}: {nulls} nulls and {bad.height} values differ")
        elif not x.equals(y):
            problems.append(f"{column}: {int((x != y).sum() or 0)} values differ")
    print(f"{a.height} rows, {len(common)} columns; largest relative float difference {worst:.3g}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--table", default="diet_daily")
    parser.add_argument("--keys", default="person_id,day")
    parser.add_argument("--rtol", type=float, default=1e-12)
    parser.add_argument("--atol", type=float, default=1e-300)
    args = parser.parse_args()
    problems = differences(
        read(args.a, args.table),
        read(args.b, args.table),
        args.keys.split(","),
        args.rtol,
        args.atol,
    )
    for line in problems:
        print(line)
    print("SAME" if not problems else "DIFFERENT")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
