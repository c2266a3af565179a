"""Compare two association tables row by row (issue 19: a faster fit must not move the science).

    python -m bench.compare_associations A B [--rtol 1e-9]

A and B: a warehouse (.duckdb, its `associations` table) or a Parquet file of the table's rows.
The rows are matched on their test and person (KEY); every other column must agree: strings,
integers and nulls exactly, floats within `rtol` relative (absolute below 1e-300). Prints one
line per column that differs and exits 1 when any does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import polars as pl

KEY = ["scope", "method", "marker", "feature", "window_days", "person_id", "family"]


def read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute("SELECT * FROM associations").pl()
    finally:
        conn.close()


def differences(a: pl.DataFrame, b: pl.DataFrame, rtol: float) -> list[str]:
    """What differs between the tables `a` and `b` (nothing: an empty list)."""
    out = []
    if a.height != b.height:
        out.append(f"rows: {a.height} against {b.height}")
    columns = [c for c in a.columns if c in b.columns]
    out += [f"column {c} only in one table" for c in set(a.columns) ^ set(b.columns)]
    key = [c for c in KEY if c in columns]
    joined = a.select(columns).join(
        b.select(columns), on=key, how="full", nulls_equal=True, suffix="_b", coalesce=True
    )
    if joined.height != a.height or a.select(key).is_duplicated().any():
        out.append(f"keys: {joined.height} matched rows of {a.height} (or duplicate keys)")
    for c in columns:
        if c in key:
            continue
        left, right = pl.col(c), pl.col(f"{c}_b")
        if a.schema[c].is_float():
            close = (left - right).abs() <= rtol * pl.max_horizontal(left.abs(), right.abs())
            same = (left.is_null() & right.is_null()) | (
                left.is_not_null() & right.is_not_null() & (close | (left == right))
            )
        else:
            same = left.eq_missing(right)
        bad = joined.filter(~same)
        if bad.height:
            example = bad.select(*key, c, f"{c}_b").row(0, named=True)
            out.append(f"{c}: {bad.height} rows differ, e.g. {example}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare two association tables row by row.")
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args()
    a, b = read(args.a), read(args.b)
    found = differences(a, b, args.rtol)
    for line in found:
        print(line)
    print(f"{a.height} rows, {len(a.columns)} columns: " + ("DIFFER" if found else "identical"))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
