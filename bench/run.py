"""Run the scale benchmark: every stage in a fresh process, next to DuckDB's own read_csv.

    python -m bench.run --scale full    # what `make bench` runs: 10 M diary rows, 2,000 people
    python -m bench.run --scale small   # 20 people x 120 days, under a minute
    python -m bench.run --people 5 --days 40 --results /tmp/r.md --keep --workdir /tmp/b

Stages, each measured in its own subprocess (wall-clock seconds of the work, imports excluded; peak
RSS is the child's whole high-water mark from `wait4`, imports included, so peaks never mix):

  baseline     DuckDB `CREATE TABLE t AS SELECT * FROM read_csv(<diary glob>, union_by_name=true)`
               into a fresh DuckDB file: what the ingest target is judged against.
  baseline_schema
               the same with the columns and types given (`auto_detect = false`): no file is
               sniffed, the real floor for reading these CSVs; reported, not used for a verdict.
  labs_baseline
               DuckDB `read_csv` of the many-small-files lab set (`bench.generate_lab_portal`:
               portal downloads, one CSV of 10 to 100 results per report) with the columns and
               types given: the physical floor for those files.
  labs_ingest  the labs source's real ingest (`pipelines.ingest.sync_source`, what its asset runs:
               list and hash, parse in batches, plausibility, store, settle, count per file) on
               the same files, into a fresh DuckDB file, in one transaction (issue 19).
  ingest       (a) the diary source's real Dagster asset `ingest_<source>` materialized in-process
               (`sync_source`: parse in batches, check, store `raw_<source>`, settle ownership
               into `stg_<source>`, write `ingest_files` and `rejected_rows`, one transaction).
  incremental  (b) the nightly case: one new day of files (one per person) dropped into data/raw/,
               then the same asset again; reported as a ratio to (a).
  prepare      not a target: the labs source and the canonical warehouse tables (`diet_entries`,
               `lab_results`, `persons`, ...) through their real assets, as inputs for (c).
  analysis     (c) categorise_foods, build_diet_daily, build_marker_draws + marker_trends,
               build_exposure_windows (+ window DII), compute_associations: read from and written
               back to the warehouse the way the assets do.
  dashboards   (d) load_dashboard_inputs + write_dashboards for every person.
  job_first    (e) the real `refresh_all` job over every asset downstream of the canonical tables
               (features, analysis, dashboards), from scratch: what a first run costs after (a)
               and prepare. (a) + prepare + (e) is the full rebuild.
  night_all    (f) the whole nightly job (every asset, as the schedule runs it) after a night on
               which every person synced one new day; reported as a ratio to the full rebuild.
  night_tenth  (g) the same after a night on which every tenth person synced.
  night_quiet  (h) the same after a night on which nobody synced: every step says it changed
               nothing (issue 19: under 5 s of work at 200 people, `--people 200`).

Results: a table on stdout, Markdown in --results (default bench/results.md), JSON in --json.
The children import `pipelines` from a copy taken when the run starts (workdir/code), so code edited
during a run cannot make two stages measure different code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.generate import (
    LAB_PORTAL_DIR,
    MANIFEST,
    NEXT_DAY_DIR,
    NIGHTS,
    generate,
    generate_lab_portal,
)
from bench.measure import REPO, StageResult, load_average, machine_facts, run_child
from bench.report import print_table, render_markdown
from bench.stages import INSTANCE_SETTINGS, STAGES, child_main
from bench.targets import LAB_PORTAL_FILES, SCALES, evaluate_targets, fmt

DEFAULT_RESULTS = REPO / "bench" / "results.md"


def snapshot_code(workdir: Path) -> str:
    """Copy the `pipelines` package and the Dagster instance settings (`dagster.yaml`, which
    the stages' instance reads, `bench.stages._dagster_env`) into workdir/code; return a short
    digest of their files."""
    import hashlib

    code = workdir / "code"
    dest = code / "pipelines"
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(REPO / "pipelines", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(REPO / INSTANCE_SETTINGS, code / INSTANCE_SETTINGS)
    digest = hashlib.sha256()
    for path in sorted(p for p in code.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(code)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def add_night(workdir: Path, folder: str = NEXT_DAY_DIR) -> int:
    """Move one night's generated files (`folder`, see bench.generate.NIGHTS) into data/raw/;
    returns how many."""
    pending = workdir / "project" / folder
    raw = workdir / "project" / "data" / "raw"
    moved = 0
    for path in sorted(pending.rglob("*.csv")):
        dest = raw / path.relative_to(pending)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)
        os.utime(dest)  # a new export is the newest file
        moved += 1
    return moved


def _staging_rows(project_dir: Path, manifest: dict[str, Any]) -> int:
    import duckdb

    warehouse = project_dir / "data" / "processed" / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = con.execute(f'SELECT count(*) FROM "stg_{manifest["diary_source"]}"').fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    people, days = SCALES[args.scale]
    people = args.people or people
    days = args.days or days
    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gutsignal-bench-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    project_dir = workdir / "project"
    if (project_dir / "data" / "processed").exists():
        shutil.rmtree(project_dir / "data" / "processed")
    for stale in ("dashboards", "dagster_home"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    shutil.rmtree(project_dir / "dashboards", ignore_errors=True)
    command = "python -m bench.run " + " ".join(sys.argv[1:])
    print(f"gutsignal bench: {people:,} people x {days} days in {workdir}")
    load_before = load_average()
    code_digest = snapshot_code(workdir)
    try:
        print("  generating data ...", end="", flush=True)
        manifest = generate(project_dir, people, days, args.seed)
        lab_files = args.lab_files or LAB_PORTAL_FILES[args.scale]
        manifest.update(generate_lab_portal(workdir / LAB_PORTAL_DIR, lab_files, args.seed))
        # The stages read the manifest from the project; they need the lab set's counts too.
        (project_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        print(
            f" {int(manifest['diary_rows']):,} rows, {int(manifest['diary_files']):,} files, "
            f"{int(manifest['diary_bytes']) / 1e6:,.0f} MB in {manifest['seconds']} s"
        )
        results = {s: StageResult(s) for s in STAGES}
        timeout = args.stage_timeout
        profile = set(args.profile or [])

        selected = set(args.stages.split(",")) if args.stages else set(STAGES)

        def stage(name: str) -> StageResult:
            if name not in selected:
                results[name].note = "not run: left out by --stages"
                return results[name]
            results[name] = run_child(name, workdir, timeout, profile=name in profile)
            return results[name]

        stage("baseline")
        stage("baseline_schema")
        checks: dict[str, Any] = {"lines": []}
        stage("labs_baseline")
        if stage("labs_ingest").status == "ok":
            d, floor = results["labs_ingest"].data, results["labs_baseline"].data
            checks["labs_rows_read"] = d["rows"]
            checks["labs_duckdb_rows"] = floor.get("rows")
            checks["labs_generated_rows"] = int(manifest["lab_portal_rows"])
            accounted = d["rows_loaded"] + d["rows_rejected"] + d["rows_duplicate"]
            checks["lines"].append(
                f"labs ingest of {d['files']:,} small files ({d['files_failed']:,} failed, "
                f"{d['cpu_seconds']:,.1f} CPU s in {d['seconds']:,.1f} s): "
                f"{d['rows']:,} rows read = {d['rows_loaded']:,} loaded + "
                f"{d['rows_rejected']:,} rejected + {d['rows_duplicate']:,} duplicate; DuckDB "
                f"read_csv: {fmt(floor.get('rows'), ',')} rows; generated: "
                f"{int(manifest['lab_portal_rows']):,} -> "
                + (
                    "equal"
                    if floor.get("rows") == d["rows"] == accounted == manifest["lab_portal_rows"]
                    else "MISMATCH"
                    if floor or d["rows"] != accounted
                    else "not compared (labs_baseline not run)"
                )
            )
        if stage("ingest").status == "ok":
            staging = int(results["ingest"].data["staging_rows"])
            duck = results["baseline"].data.get("rows")
            if duck is None:  # left out by --stages: the schema-given read is of the same files
                duck = results["baseline_schema"].data.get("rows")
            checks["staging_rows"] = staging
            checks["duckdb_rows"] = duck
            checks["generated_rows"] = int(manifest["diary_rows"])
            d = results["ingest"].data
            checks["lines"].append(
                f"staging table `stg_{manifest['diary_source']}`: {staging:,} rows; DuckDB "
                f"read_csv of the same files: {fmt(duck, ',')} rows; generated: "
                f"{int(manifest['diary_rows']):,} -> "
                + ("equal" if duck == staging == int(manifest["diary_rows"]) else "MISMATCH")
            )
            checks["lines"].append(
                f"ingest_files: {d['files']:,} files, {d['rows']:,} read = {d['rows_loaded']:,} "
                f"loaded + {d['rows_rejected']:,} rejected + {d['rows_duplicate']:,} duplicate"
            )
            if "incremental" in selected:
                add_night(workdir, NEXT_DAY_DIR)
            if stage("incremental").status == "ok":
                after = int(results["incremental"].data["staging_rows"])
                expected = staging + int(manifest["next_day_rows"])
                checks["incremental_staging_rows"] = after
                checks["incremental_expected_rows"] = expected
                checks["lines"].append(
                    f"after the nightly day: {after:,} staging rows, expected {expected:,} -> "
                    + ("equal" if after == expected else "MISMATCH")
                )
            if stage("prepare").status == "ok" and stage("analysis").status == "ok":
                stage("dashboards")
                # (e) measures a first run: no page may be kept from (d).
                shutil.rmtree(project_dir / "dashboards", ignore_errors=True)
                if stage("job_first").status == "ok":
                    # The nightly stages are named after their nights. A night left out of
                    # --stages keeps its files out of data/raw/: else the next stage, (h) above
                    # all, would read them and measure a busy night.
                    nights = [folder for folder, _ in NIGHTS[1:] if folder in selected]
                    for folder in nights:
                        add_night(workdir, folder)
                        stage(folder)
                    stage("night_quiet")  # no new file
                    expected = int(checks.get("incremental_expected_rows", staging)) + sum(
                        int(manifest[f"{folder}_rows"]) for folder in nights
                    )
                    checks["final_staging_rows"] = _staging_rows(project_dir, manifest)
                    checks["final_expected_rows"] = expected
                    checks["lines"].append(
                        f"after the two nightly jobs: {checks['final_staging_rows']:,} staging "
                        f"rows, expected {expected:,} -> "
                        + ("equal" if checks["final_staging_rows"] == expected else "MISMATCH")
                    )
        for name in STAGES:
            if results[name].status == "skipped" and not results[name].note:
                results[name].note = "not run: an earlier stage it needs did not finish"
        facts = machine_facts(load_before)
        facts["code measured"] = f"pipelines/ as of the run's start, sha256 {code_digest}"
        snapshot = str(workdir / "code" / "pipelines")
        others = sorted(
            {str(r.data["code_path"]) for r in results.values() if r.data.get("code_path")}
            - {snapshot}
        )
        if others:
            facts["code measured"] += f" (WARNING: some stages imported {', '.join(others)})"
        print()
        print_table(results, manifest)
        markdown = render_markdown(results, manifest, facts, checks, command)
        results_path = Path(args.results)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(markdown, encoding="utf-8")
        print(f"\nresults: {results_path}")
        report = {
            "manifest": manifest,
            "machine": facts,
            "checks": checks,
            "stages": {
                s: {
                    "status": r.status,
                    "seconds": r.seconds,
                    "peak_rss_mb": r.peak_rss_mb,
                    "rows_per_s": r.rows_per_s,
                    "note": r.note,
                    **r.data,
                }
                for s, r in results.items()
            },
            "targets": evaluate_targets(results, manifest),
            "workdir": str(workdir),
        }
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        return report
    finally:
        if not args.keep:
            shutil.rmtree(workdir if own_workdir else project_dir, ignore_errors=True)
            if not own_workdir:
                for leftover in ("baseline.duckdb", "dagster_home", "logs", "code", LAB_PORTAL_DIR):
                    path = workdir / leftover
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--people", type=int, help="override the scale's number of people")
    parser.add_argument("--days", type=int, help="override the scale's number of days")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="where to generate (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and logs")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="Markdown results file")
    parser.add_argument("--json", help="also write the raw results as JSON here")
    parser.add_argument(
        "--stage-timeout", type=float, default=900.0, help="stop a stage after this many s"
    )
    parser.add_argument(
        "--lab-files", type=int, help="override the scale's number of small lab files"
    )
    parser.add_argument(
        "--profile", action="append", choices=STAGES, help="run a stage under cProfile"
    )
    parser.add_argument(
        "--stages",
        help="comma-separated stages to run (default: all), e.g. baseline,baseline_schema,ingest; "
        "a stage whose inputs a left-out stage builds is not run either",
    )
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES) if args.stages else set()
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(sorted(unknown))}")
    if args.child:
        return child_main(args.child, Path(args.workdir), Path(args.child_out), args.profile_child)
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
