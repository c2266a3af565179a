"""Parse throughput of one source's files, per file (`parse_each`) against `Format.parse_batch`.

    python -m bench.parse_many --out /tmp/gs-bench --source bench_labs [--repeat 3]

OUT is a folder written by `bench.generate` (its sources.yaml and data/raw/). Only the adapters
run (no hashing, spooling or warehouse), so this isolates the parse of many small files; both
paths must give the same rows, which the script checks before printing rows/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from polars.testing import assert_frame_equal

from pipelines.adapters import FORMATS
from pipelines.adapters.base import parse_each
from pipelines.config import check_source_files, parse_project_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", default="bench_labs")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-each", action="store_true", help="time the batch path only")
    args = parser.parse_args(argv)
    config = parse_project_config(args.out / "sources.yaml", FORMATS)
    source = next(s for s in config.sources if s.name == args.source)
    raw_dir = args.out / "data" / "raw"
    paths = [raw_dir / p for p in check_source_files(source, raw_dir)]
    fmt = FORMATS[source.format]
    timings: dict[str, float] = {}
    results = {}
    runs = {"batch": lambda: fmt.parse_batch(paths, source)}
    if not args.skip_each:
        runs["each"] = lambda: parse_each(fmt.parse, paths, source)
    for name, run in runs.items():
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            results[name] = run()
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    rows = sum(results["batch"].rows_read)
    if "each" in results:
        assert_frame_equal(results["batch"].rows, results["each"].rows, check_exact=True)
        assert_frame_equal(results["batch"].rejects, results["each"].rejects, check_exact=True)
        assert results["batch"].rows_read == results["each"].rows_read
    for name, seconds in timings.items():
        print(
            f"{args.source} {name}: {len(paths):,} files, {rows:,} rows in {seconds:.2f} s "
            f"= {rows / seconds:,.0f} rows/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
