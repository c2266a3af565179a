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
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.generate import (
    LAB_PORTAL_DIR,
    LAB_PORTAL_GLOB,
    LAB_PORTAL_SOURCE,
    MANIFEST,
    NEXT_DAY_DIR,
    NIGHTS,
    generate,
    generate_lab_portal,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "bench" / "results.md"

SCALES: dict[str, tuple[int, int]] = {
    "tiny": (3, 40),
    "small": (20, 120),
    # 2,000 people x 181 days (Jan to Jun) x ~28.5 rows a day over all days = ~10.3 M diary rows.
    "full": (2000, 181),
    # Issue 19's memory check: five times `full` (~51.7 M rows, 6.6 GB of CSV); peak memory per
    # stage must not grow from `full` to here. Recorded once in results.md, not run by `make bench`.
    "xl": (10000, 181),
}
# Files of the many-small-files lab set per scale: a night's portal downloads of 2,000 people, ten
# reports each, at full scale (about 1.1 M results).
LAB_PORTAL_FILES = {"tiny": 40, "small": 2000, "full": 20000, "xl": 20000}
STAGES = (
    "baseline",
    "baseline_schema",
    "labs_baseline",
    "labs_ingest",
    "ingest",
    "incremental",
    "prepare",
    "analysis",
    "dashboards",
    "job_first",
    "night_all",
    "night_tenth",
    "night_quiet",
)
BASELINES = ("baseline", "baseline_schema")
INGESTS = (*BASELINES, "ingest", "incremental", "labs_ingest")
# The stages that together build everything from the raw files: the nightly jobs' denominator.
FULL_REBUILD = ("ingest", "prepare", "job_first")
LABELS = {
    "baseline": "DuckDB read_csv (baseline)",
    "baseline_schema": "DuckDB read_csv, schema given",
    "labs_baseline": "labs: DuckDB read_csv, schema given",
    "labs_ingest": "labs: ingest of many small files",
    "ingest": "(a) ingest + clean + store",
    "incremental": "(b) nightly incremental ingest",
    "prepare": "prepare: labs + canonical tables",
    "analysis": "(c) features + windows + associations",
    "dashboards": "(d) dashboards",
    "job_first": "(e) whole job after ingest, first run",
    "night_all": "(f) whole nightly job, every person syncs",
    "night_tenth": "(g) whole nightly job, a tenth sync",
    "night_quiet": "(h) whole nightly job, nothing new",
}

# The issue's targets.
INGEST_MAX_RATIO = 2.0
INGEST_MAX_RSS_MB = 4096.0
INCREMENTAL_MAX_RATIO = 0.10
NIGHTLY_MAX_SHARE = 0.15  # issue 18: readability wins over the last fifth of nightly speed
QUIET_MAX_S = 5.0  # issue 19, at QUIET_PEOPLE people
QUIET_PEOPLE = 200
ANALYSIS_MAX_S = 60.0
DASHBOARDS_MAX_S = 120.0
LABS_MIN_ROWS_PER_S = 100_000.0  # issue 19, on LAB_PORTAL_FILES["full"] files
TARGET_ROWS = 10_000_000
TARGET_PEOPLE = 2000


# --------------------------------------------------------------------------------------------
# In the child process: one stage


def _proc_status_mb(key: str) -> float | None:
    """VmHWM / VmRSS of this process in MB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Timer:
    """Named sub-step timings; `wrap` times every call of a function patched into a module."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, module: Any, attr: str, name: str) -> None:
        original = getattr(module, attr, None)
        if original is None or not callable(original):
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.step(name):
                return original(*args, **kwargs)

        setattr(module, attr, timed)


_CHILD: dict[str, float | None] = {}


def _ready() -> None:
    """Call when imports and setup are done and the measured work starts."""
    _CHILD["rss_after_imports_mb"] = _proc_status_mb("VmRSS")


def _dagster_env(workdir: Path) -> None:
    project = workdir / "project"
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["GUTSIGNAL_PROJECT_DIR"] = str(project)
    os.environ["DAGSTER_HOME"] = str(home)


def _materialize(keys: list[str], timer: Timer) -> None:
    """Materialize asset keys through the project's real `refresh_all` job, in-process, on a
    persistent instance (so state a later run could use survives between stages)."""
    import dagster as dg

    from pipelines.definitions import defs

    definitions = defs()
    job = definitions.resolve_job_def("refresh_all")
    instance = dg.DagsterInstance.get()
    _ready()
    with timer.step("total"):
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in keys],
            raise_on_error=True,
        )
    if not result.success:
        raise RuntimeError(f"materializing {keys} failed")


def _stage_ingest(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """(a) and (b): the diary source's ingest asset."""
    _dagster_env(workdir)
    import duckdb

    import pipelines.defs.ingest.assets as ingest_defs

    timer = Timer()
    sync_source = ingest_defs.sync_source

    def timed_sync(*args: Any, **kwargs: Any) -> Any:
        result = sync_source(*args, **kwargs)
        timer.steps.update(result.seconds)  # the steps sync_source times itself
        timer.steps["files read this time"] = result.files_parsed
        timer.steps["keys settled again"] = (
            -1 if result.keys_settled is None else result.keys_settled
        )
        return result

    ingest_defs.sync_source = timed_sync  # type: ignore[assignment]
    source = manifest["diary_source"]
    key = ingest_defs.ingest_asset_key(source).to_user_string()
    _materialize([key], timer)
    total = timer.steps.pop("total")
    files_read = int(timer.steps.pop("files read this time"))
    keys_settled = int(timer.steps.pop("keys settled again"))
    warehouse = workdir / "project" / "data" / "processed" / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        table = ingest_defs.staging_table(source)
        staging = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        acc = con.execute(
            "SELECT count(*), sum(rows_read), sum(rows_loaded), sum(rows_rejected), "
            "sum(rows_duplicate) FROM ingest_files WHERE source = ?",
            [source],
        ).fetchone()
    finally:
        con.close()
    assert staging is not None and acc is not None
    return {
        "seconds": total,
        "rows": int(acc[1] or 0),
        "unit": "diary rows read",
        "staging_rows": int(staging[0]),
        "files": int(acc[0]),
        "rows_loaded": int(acc[2] or 0),
        "rows_rejected": int(acc[3] or 0),
        "rows_duplicate": int(acc[4] or 0),
        "warehouse_mb": warehouse.stat().st_size / 1e6,
        "files_read": files_read,
        "keys_settled": keys_settled,
        "substeps": timer.steps,
    }


BASELINE_SQL = (
    "CREATE TABLE t AS SELECT * FROM read_csv('{glob}', union_by_name = true, header = true)"
)
# The tighter floor: the export's columns and types given, so DuckDB sniffs no file.
BASELINE_SCHEMA_SQL = (
    "CREATE TABLE t AS SELECT * FROM read_csv('{glob}', header = true, auto_detect = false, "
    "delim = ',', quote = '\"', escape = '\"', columns = {columns})"
)


def _servings_columns() -> str:
    from pipelines.demo import SERVINGS_HEADER

    text = ("Time", "Group", "Food Name", "Amount", "Category")
    types = {
        h: "DATE" if h == "Day" else "VARCHAR" if h in text else "DOUBLE" for h in SERVINGS_HEADER
    }
    return "{" + ", ".join(f"'{h}': '{t}'" for h, t in types.items()) + "}"


def _stage_baseline(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return _duckdb_read_csv(workdir, manifest, BASELINE_SQL)


def _stage_baseline_schema(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    sql = BASELINE_SCHEMA_SQL.replace("{columns}", _servings_columns())
    return _duckdb_read_csv(workdir, manifest, sql)


def _duckdb_read_csv(
    workdir: Path,
    manifest: dict[str, Any],
    sql: str,
    glob: Path | None = None,
    unit: str = "diary rows read",
) -> dict[str, Any]:
    """`sql` (with a {glob} placeholder: `glob`, by default the diary files) into a fresh DuckDB
    file, timed."""
    import duckdb

    glob = glob or workdir / "project" / "data" / "raw" / manifest["diary_glob"]
    db = workdir / "baseline.duckdb"
    db.unlink(missing_ok=True)
    _ready()
    start = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(sql.replace("{glob}", str(glob).replace("'", "''")))
    con.close()
    seconds = time.perf_counter() - start
    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("SELECT count(*), current_setting('threads') FROM t").fetchone()
    con.close()
    assert row is not None
    result = {
        "seconds": seconds,
        "rows": int(row[0]),
        "unit": unit,
        "sql": sql.replace("{glob}", f"<{unit.split()[0]} glob>"),
        "duckdb_threads": int(row[1]),
        "table_mb": db.stat().st_size / 1e6,
    }
    db.unlink(missing_ok=True)
    return result


# The lab portal CSVs' columns and types (bench.generate.LAB_PORTAL_TESTS): Result is text, because
# a censored result ("<0.2") is not a number.
LABS_BASELINE_SQL = BASELINE_SCHEMA_SQL.replace(
    "columns = {columns})", "columns = {columns}, timestampformat = '%Y-%m-%d %H:%M')"
).replace(
    "{columns}",
    "{'Patient': 'VARCHAR', 'Collected': 'TIMESTAMP', 'Test': 'VARCHAR', 'Result': 'VARCHAR', "
    "'Units': 'VARCHAR', 'Reference Range': 'VARCHAR', 'Flag': 'VARCHAR'}",
)


def _stage_labs_baseline(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    glob = workdir / LAB_PORTAL_DIR / "data" / "raw" / LAB_PORTAL_GLOB
    return _duckdb_read_csv(workdir, manifest, LABS_BASELINE_SQL, glob, "lab rows read")


def _stage_labs_ingest(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The labs source's whole ingest (`sync_source`, as its asset runs it) on many small files,
    into a fresh DuckDB file: no Dagster run around it, so its seconds are the ingest's own."""
    import duckdb

    from pipelines.adapters import FORMATS
    from pipelines.config import parse_project_config
    from pipelines.ingest import sync_source

    root = workdir / LAB_PORTAL_DIR
    config = parse_project_config(root / "sources.yaml", FORMATS)
    source = next(s for s in config.sources if s.name == LAB_PORTAL_SOURCE)
    database = workdir / "lab_portal.duckdb"
    database.unlink(missing_ok=True)
    _ready()
    start, cpu = time.perf_counter(), time.process_time()
    conn = duckdb.connect(str(database))
    try:
        conn.execute("BEGIN TRANSACTION")
        result = sync_source(conn, source, root / "data" / "raw", work_dir=workdir)
        conn.execute("COMMIT")
    finally:
        conn.close()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    files = result.files
    database.unlink(missing_ok=True)
    return {
        "seconds": seconds,
        # CPU seconds of all the process's threads: on a shared machine, wall-clock time says as
        # much about the neighbours as about the ingest.
        "cpu_seconds": cpu,
        "rows": int(files["rows_read"].sum()),
        "unit": "lab rows read",
        "files": files.height,
        "files_failed": int((files["status"] != "loaded").sum()),
        "rows_loaded": int(files["rows_loaded"].sum()),
        "rows_rejected": int(files["rows_rejected"].sum()),
        "rows_duplicate": int(files["rows_duplicate"].sum()),
        "substeps": result.seconds,
    }


def _stage_prepare(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    _dagster_env(workdir)
    import dagster as dg

    from pipelines.definitions import defs

    graph = defs().resolve_asset_graph()
    keys = (
        dg.AssetSelection.groups("warehouse")
        | dg.AssetSelection.keys(f"ingest_{manifest['labs_source']}")
    ).resolve(graph)
    timer = Timer()
    _materialize(sorted(k.to_user_string() for k in keys), timer)
    return {
        "seconds": timer.steps.pop("total"),
        "rows": int(manifest["labs_rows"]),
        "unit": "lab rows",
        "assets": sorted(k.to_user_string() for k in keys),
    }


def _stage_analysis(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """(c): the step functions the Dagster assets call (pipelines/steps), one transaction each,
    as a first run makes them: diet_daily and exposure_windows in groups of people."""
    from pipelines.incremental import DAY_STATE_TABLE, STATE_TABLE
    from pipelines.project import Project
    from pipelines.steps.analysis import update_associations, update_exposure_windows
    from pipelines.steps.features import (
        update_diet_daily,
        update_diet_summary,
        update_food_taxonomy,
        update_marker_models,
    )

    project = Project(workdir / "project")
    config = project.config()
    settings = config.settings
    overrides = config.path.parent / settings.food_overrides if settings.food_overrides else None
    warehouse = project.warehouse()
    # In the job's order: (substep label, the step's name in the incremental state, the call).
    steps: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("food_taxonomy", "food_taxonomy", lambda conn: update_food_taxonomy(conn, overrides)),
        ("diet_daily", "diet_daily", lambda conn: update_diet_daily(conn, settings)),
        ("diet_summary", "diet_summary", update_diet_summary),
        ("marker_models", "marker_models", lambda conn: update_marker_models(conn, settings)),
        (
            "exposure_windows (+ window DII)",
            "exposure_windows",
            lambda conn: update_exposure_windows(conn, settings),
        ),
        ("associations", "associations", lambda conn: update_associations(conn, settings)),
    ]
    timer = Timer()
    _ready()
    start = time.perf_counter()
    for label, _, run in steps:
        with timer.step(label), warehouse.write() as conn:
            run(conn)
    seconds = time.perf_counter() - start
    with warehouse.write() as conn:
        # Forget what the steps recorded, so that (e) measures a first run, as before.
        names = [name for _, name, _ in steps]
        for table in (STATE_TABLE, DAY_STATE_TABLE):
            conn.execute(f"DELETE FROM {table} WHERE list_contains(?, step)", [names])
        row = conn.execute(
            "SELECT (SELECT count(*) FROM diet_entries), "
            "(SELECT count(DISTINCT person_id) FROM diet_entries), "
            "(SELECT count(*) FROM diet_daily), (SELECT count(*) FROM marker_draws), "
            "(SELECT count(*) FROM exposure_windows), (SELECT count(*) FROM associations), "
            "(SELECT count(*) FILTER (status = 'significant') FROM associations)"
        ).fetchone()
    assert row is not None
    entries, people, daily, draws, windows, tested, significant = (int(v) for v in row)
    return {
        "seconds": seconds,
        "rows": entries,
        "unit": "diet entries",
        "people": people,
        "diet_daily_rows": daily,
        "draws": draws,
        "exposure_window_rows": windows,
        "associations": tested,
        "significant": significant,
        "substeps": timer.steps,
    }


def _stage_dashboards(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    _dagster_env(workdir)
    from pipelines.project import Project
    from pipelines.reports.dashboards import write_dashboards
    from pipelines.steps.dashboards import load_dashboard_inputs

    project = Project(workdir / "project")
    timer = Timer()
    _ready()
    start = time.perf_counter()
    with timer.step("load_dashboard_inputs"):
        data = load_dashboard_inputs(project.warehouse())
    with timer.step("write_dashboards"):
        written = write_dashboards(project.dashboards_dir, data)
    pages = [p for p in written if p.suffix == ".html"]
    return {
        "seconds": time.perf_counter() - start,
        "rows": len([p for p in pages if p.name.startswith("person_")]),
        "unit": "person pages",
        "pages": len(pages),
        "html_mb": sum(p.stat().st_size for p in pages) / 1e6,
        "substeps": timer.steps,
    }


# Asset metadata that says how much of the work an incremental step did.
_WORK_METADATA = (
    "files_parsed",
    "people_recomputed",
    "days_recomputed",
    "pages_rendered",
    "changed",
    "refit",
)


def _stage_job(workdir: Path, manifest: dict[str, Any], downstream_only: bool) -> dict[str, Any]:
    """(e) to (h): the project's real `refresh_all` job, in-process, on the persistent instance.

    Per-step seconds come from Dagster's own step statistics for the run; the rest of the run's
    time (the per-run warehouse snapshot, run start and end) is reported as "other"."""
    _dagster_env(workdir)
    import dagster as dg

    from pipelines.definitions import defs

    definitions = defs()
    job = definitions.resolve_job_def("refresh_all")
    selection = (
        dg.AssetSelection.all() - dg.AssetSelection.groups("ingest", "warehouse")
        if downstream_only
        else dg.AssetSelection.all()
    )
    keys = sorted(selection.resolve(definitions.resolve_asset_graph()))
    instance = dg.DagsterInstance.get()
    _ready()
    start = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=None if not downstream_only else keys,
        raise_on_error=True,
    )
    seconds = time.perf_counter() - start
    if not result.success:
        raise RuntimeError("the refresh_all job failed")
    steps = {
        s.step_key: float(s.end_time - s.start_time)
        for s in instance.get_run_step_stats(result.run_id)
        if s.start_time is not None and s.end_time is not None
    }
    work: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        for name in _WORK_METADATA:
            value = materialization.metadata.get(name)
            if value is not None:
                work[f"{materialization.asset_key.to_user_string()}: {name}"] = value.value
    rows = int(manifest["diary_rows"]) if downstream_only else None
    return {
        "seconds": seconds,
        "rows": rows,
        "unit": "diary rows in the history" if downstream_only else "",
        "assets": len(keys),
        "steps": len(steps),
        "work": work,
        "substeps": _top_steps(steps, 8),
    }


def _top_steps(steps: dict[str, float], n: int) -> dict[str, float]:
    """The n slowest steps by name, and the rest summed, so the breakdown stays readable."""
    ranked = sorted(steps.items(), key=lambda kv: -kv[1])
    top = dict(ranked[:n])
    rest = sum(v for _, v in ranked[n:])
    if rest:
        top[f"{len(ranked) - n} other steps and checks"] = rest
    return top


def _stage_job_first(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return _stage_job(workdir, manifest, downstream_only=True)


def _stage_night(workdir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return _stage_job(workdir, manifest, downstream_only=False)


CHILD_STAGES: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "baseline": _stage_baseline,
    "baseline_schema": _stage_baseline_schema,
    "labs_baseline": _stage_labs_baseline,
    "labs_ingest": _stage_labs_ingest,
    "ingest": _stage_ingest,
    "incremental": _stage_ingest,
    "prepare": _stage_prepare,
    "analysis": _stage_analysis,
    "dashboards": _stage_dashboards,
    "job_first": _stage_job_first,
    "night_all": _stage_night,
    "night_tenth": _stage_night,
    "night_quiet": _stage_night,
}


def child_main(stage: str, workdir: Path, out: Path, profile: bool) -> int:
    manifest = json.loads((workdir / "project" / MANIFEST).read_text())
    run = CHILD_STAGES[stage]
    # Imported lazily by the first DuckDB -> Polars conversion; import it here so its ~1 s lands
    # outside the timed work, like every other import.
    import pyarrow  # noqa: F401

    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(run, workdir, manifest)
        prof = out.with_suffix(".prof.txt")
        profiler.dump_stats(out.with_suffix(".prof"))  # for pstats: callers, other sort orders
        with prof.open("w") as fh:
            pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(25)
        result["profile"] = str(prof)
    else:
        result = run(workdir, manifest)
    result["rss_self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pipelines = sys.modules.get("pipelines")
    where = getattr(pipelines, "__file__", None)
    result["code_path"] = str(Path(where).parent) if where else None
    result.update(_CHILD)
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0


# --------------------------------------------------------------------------------------------
# In the parent: orchestration, measurement, report


@dataclass
class StageResult:
    stage: str
    status: str = "skipped"  # ok | failed | timeout | skipped
    seconds: float | None = None
    peak_rss_mb: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def rows(self) -> int | None:
        return self.data.get("rows")

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds


def run_child(stage: str, workdir: Path, timeout_s: float, profile: bool = False) -> StageResult:
    """Run one stage in a fresh interpreter; its peak RSS comes from wait4 on that child only."""
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    out = logs / f"{stage}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.run", "--child", stage, "--workdir", str(workdir)]
    cmd += ["--child-out", str(out)] + (["--profile-child"] if profile else [])
    # The children import the pipeline from the snapshot taken when the run started (their working
    # directory, which `python -m` puts first on sys.path), so code edited while the benchmark
    # runs cannot make two stages measure different code.
    code = workdir / "code"
    paths = [str(code), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    result = StageResult(stage)
    print(f"  {LABELS[stage]} ...", end="", flush=True)
    started = time.perf_counter()
    with (logs / f"{stage}.log").open("wb") as log:
        cwd = code if code.is_dir() else REPO
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout_s:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    result.peak_rss_mb = usage.ru_maxrss / 1024  # Linux: KB
    if timed_out:
        result.status = "timeout"
        result.note = f"stopped after {elapsed:.0f} s (limit {timeout_s:.0f} s)"
    elif proc.returncode != 0 or not out.exists():
        result.status = "failed"
        tail = (logs / f"{stage}.log").read_text(errors="replace").strip().splitlines()[-15:]
        result.note = f"exit code {proc.returncode}; log: {logs / (stage + '.log')}"
        print("\n" + "\n".join("    | " + line for line in tail))
    else:
        result.status = "ok"
        result.data = json.loads(out.read_text())
        result.seconds = float(result.data["seconds"])
    shown = f"{result.seconds:.1f} s" if result.seconds is not None else result.status
    print(f" {shown}, peak {result.peak_rss_mb:,.0f} MB")
    return result


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_facts(load_before: str) -> dict[str, str]:
    facts = {
        "cores": str(os.cpu_count()),
        "load average (1, 5, 15 min) before / after": f"{load_before} / {_load()}",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["ram"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    from importlib.metadata import version

    for pkg in ("polars", "duckdb", "dagster"):
        with contextlib.suppress(Exception):
            facts[pkg] = version(pkg)
    return facts


def _fmt(value: float | None, spec: str = ",.1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def evaluate_targets(
    results: dict[str, StageResult], manifest: dict[str, Any]
) -> list[tuple[str, str, str, str]]:
    """(target, measured, verdict, note) rows. Verdicts: pass, FAIL, n/a."""
    rows: list[tuple[str, str, str, str]] = []
    base, ing, inc = results["baseline"], results["ingest"], results["incremental"]
    ana, dash = results["analysis"], results["dashboards"]
    full_rows = int(manifest["diary_rows"]) >= TARGET_ROWS
    full_people = int(manifest["people"]) >= TARGET_PEOPLE
    small = "" if full_rows else f"measured on {int(manifest['diary_rows']):,} rows, not 10 M"

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("pass" if ok else "FAIL")

    ratio = ing.seconds / base.seconds if ing.seconds and base.seconds else None
    rss_ok = ing.peak_rss_mb is not None and ing.peak_rss_mb < INGEST_MAX_RSS_MB
    tight = results["baseline_schema"]
    tight_ratio = ing.seconds / tight.seconds if ing.seconds and tight.seconds else None
    notes = [
        f"time {'within' if ratio is not None and ratio <= INGEST_MAX_RATIO else 'over'} 2x, "
        f"memory {'under' if rss_ok else 'over'} 4 GB",
        f"{_fmt(tight_ratio, '.1f')}x the schema-given read_csv",
        small or ing.note,
    ]
    rows.append(
        (
            "ingest <= 2x DuckDB read_csv time, peak RSS < 4 GB (10 M rows)",
            f"{_fmt(ratio, '.2f')}x, {_fmt(ing.peak_rss_mb, ',.0f')} MB",
            verdict(None if ratio is None else (ratio <= INGEST_MAX_RATIO and rss_ok)),
            "; ".join(n for n in notes if n),
        )
    )
    inc_ratio = inc.seconds / ing.seconds if inc.seconds and ing.seconds else None
    rows.append(
        (
            "nightly incremental ingest <= 10% of full ingest",
            f"{_fmt(None if inc_ratio is None else 100 * inc_ratio, '.0f')}%",
            verdict(None if inc_ratio is None else inc_ratio <= INCREMENTAL_MAX_RATIO),
            inc.note,
        )
    )
    full = [results[s].seconds for s in FULL_REBUILD]
    rebuild = sum(x for x in full if x) if all(full) else None
    for stage, who in (("night_all", "every person"), ("night_tenth", "a tenth of the people")):
        night = results[stage]
        share = night.seconds / rebuild if night.seconds and rebuild else None
        rows.append(
            (
                f"whole nightly job, {who} with a new day, <= 15% of a full rebuild",
                f"{_fmt(None if share is None else 100 * share, '.0f')}% "
                f"({_fmt(night.seconds)} s of {_fmt(rebuild)} s)",
                verdict(None if share is None else share <= NIGHTLY_MAX_SHARE),
                night.note or "full rebuild = (a) + prepare + (e)",
            )
        )
    rows.append(_labs_target(results, manifest))
    people = int(manifest["people"])
    quiet = results["night_quiet"]
    rows.append(
        (
            f"whole nightly job with nothing new, {QUIET_PEOPLE} people, < 5 s",
            f"{_fmt(quiet.seconds)} s",
            verdict(
                None
                if quiet.seconds is None or people != QUIET_PEOPLE
                else quiet.seconds < QUIET_MAX_S
            ),
            quiet.note
            or (
                ""
                if people == QUIET_PEOPLE
                else f"measured on {people:,} people; the target is for --people {QUIET_PEOPLE}"
            ),
        )
    )
    scale_note = "" if full_people else f"measured on {people:,} people, not 2,000"
    rows.append(
        (
            "features + windows + associations, 2,000 people < 60 s",
            f"{_fmt(ana.seconds)} s",
            verdict(None if ana.seconds is None else ana.seconds < ANALYSIS_MAX_S),
            scale_note or ana.note,
        )
    )
    rows.append(
        (
            "dashboards, 2,000 people < 2 min",
            f"{_fmt(dash.seconds)} s",
            verdict(None if dash.seconds is None else dash.seconds < DASHBOARDS_MAX_S),
            scale_note or dash.note,
        )
    )
    return rows


def _labs_target(results: dict[str, StageResult], manifest: dict[str, Any]) -> tuple[str, ...]:
    labs, floor = results["labs_ingest"], results["labs_baseline"]
    files = int(manifest.get("lab_portal_files", 0))
    ratio = labs.seconds / floor.seconds if labs.seconds and floor.seconds else None
    cpu = labs.data.get("cpu_seconds")
    notes = [
        f"DuckDB read_csv with the schema: {_fmt(floor.rows_per_s, ',.0f')} rows/s, "
        f"{_fmt(ratio, '.1f')}x faster",
        # Less sensitive than wall-clock time to what else runs on the machine.
        f"{_fmt(labs.rows / cpu if labs.rows and cpu else None, ',.0f')} rows per CPU second",
        "" if files >= LAB_PORTAL_FILES["full"] else f"measured on {files:,} files, not 20,000",
        labs.note,
    ]
    return (
        "labs ingest >= 100,000 rows/s on many small files",
        f"{_fmt(labs.rows_per_s, ',.0f')} rows/s ({files:,} files)",
        # Below the full set a run's fixed costs weigh more than they would: no verdict.
        "n/a"
        if labs.rows_per_s is None or files < LAB_PORTAL_FILES["full"]
        else pass_or_fail(labs.rows_per_s >= LABS_MIN_ROWS_PER_S),
        "; ".join(n for n in notes if n),
    )


def pass_or_fail(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def render_markdown(
    results: dict[str, StageResult],
    manifest: dict[str, Any],
    facts: dict[str, str],
    checks: dict[str, Any],
    command: str,
) -> str:
    base = results["baseline"]
    lines = [
        "# gutsignal scale benchmark: results",
        "",
        f"Written by `{command}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. "
        "Every stage ran in a fresh process; seconds are wall-clock time of the work (imports "
        "excluded), peak RSS is that process's high-water mark (imports included). Ratios "
        "compare stages measured in this same run. See bench/README.md for what each number "
        "means.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts.items()],
        "",
        "## Data",
        "",
        "| | |",
        "|---|---|",
        f"| people x days | {int(manifest['people']):,} x {manifest['days']} "
        f"({manifest['first_day']} to {manifest['last_day']}), seed {manifest['seed']} |",
        f"| diary rows (Cronometer servings) | {int(manifest['diary_rows']):,} |",
        f"| diary files (one per person per month) | {int(manifest['diary_files']):,} |",
        f"| diary size | {int(manifest['diary_bytes']) / 1e6:,.1f} MB |",
        f"| lab results (hs-CRP), files | {int(manifest['labs_rows']):,}, "
        f"{int(manifest['labs_files']):,} |",
        f"| next day (incremental case) | {int(manifest['next_day_rows']):,} rows in "
        f"{int(manifest['next_day_files']):,} files ({manifest['next_day']}) |",
        *[
            f"| {LABELS[folder]} | {int(manifest[f'{folder}_rows']):,} rows in "
            f"{int(manifest[f'{folder}_files']):,} files ({manifest['nights'][folder]}) |"
            for folder, _ in NIGHTS[1:]
            if f"{folder}_rows" in manifest and "nights" in manifest
        ],
        *(
            [
                f"| lab portal downloads (labs throughput) | "
                f"{int(manifest['lab_portal_rows']):,} results in "
                f"{int(manifest['lab_portal_files']):,} files of 10 to 100 "
                f"({int(manifest['lab_portal_bytes']) / 1e6:,.1f} MB) |"
            ]
            if "lab_portal_rows" in manifest
            else []
        ),
        f"| generator time | {manifest['seconds']} s |",
        "",
        "## Stages",
        "",
        "| stage | status | seconds | rows | rows/s | peak RSS MB | vs DuckDB read_csv "
        "| vs read_csv, schema given |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        r = results[stage]
        rows = "-" if r.rows is None else f"{r.rows:,} {r.data.get('unit', '')}"
        lines.append(
            f"| {LABELS[stage]} | {r.status} | {_fmt(r.seconds, ',.2f')} | {rows} | "
            f"{_fmt(r.rows_per_s, ',.0f')} | {_fmt(r.peak_rss_mb, ',.0f')} | "
            f"{_ratio(results, stage, 'baseline')} | {_ratio(results, stage, 'baseline_schema')} |"
        )
    lines += [
        "",
        "## Targets (issue 7)",
        "",
        "| target | measured | verdict | note |",
        "|---|---|---|---|",
        *[f"| {t} | {m} | {v} | {n} |" for t, m, v, n in evaluate_targets(results, manifest)],
        "",
        "## Nothing lost",
        "",
        *[f"- {line}" for line in checks.get("lines", [])],
        "",
        "## Where the time goes",
        "",
    ]
    for stage in STAGES:
        r = results[stage]
        subs = r.data.get("substeps") or {}
        if r.status != "ok" and r.note:
            lines.append(f"- **{LABELS[stage]}**: {r.status}, {r.note}")
            continue
        if not subs or not r.seconds:
            continue
        parts = sorted(subs.items(), key=lambda kv: -kv[1])
        other = r.seconds - sum(subs.values())
        text = "; ".join(
            f"{name} {sec:,.1f} s ({100 * sec / r.seconds:.0f}%)" for name, sec in parts
        )
        if other > 0.05 * r.seconds:
            text += f"; other (Dagster run, commit, checks) {other:,.1f} s"
        lines.append(f"- **{LABELS[stage]}**: {text}")
    extras = []
    if results["ingest"].data:
        d = results["ingest"].data
        extras.append(
            f"- ingest wrote a warehouse of {d.get('warehouse_mb', 0):,.0f} MB; DuckDB's own "
            f"table of the same rows is {base.data.get('table_mb', 0):,.0f} MB."
        )
    for stage in ("ingest", "incremental"):
        d = results[stage].data
        if d and "files_read" in d:
            settled = "all keys" if d["keys_settled"] < 0 else f"{d['keys_settled']:,} keys"
            extras.append(
                f"- {LABELS[stage]}: read {d['files_read']:,} of {d['files']:,} files, "
                f"settled ownership for {settled}."
            )
    if results["analysis"].data:
        d = results["analysis"].data
        extras.append(
            f"- analysis: {d['people']:,} people, {d['diet_daily_rows']:,} person-days, "
            f"{d['draws']:,} draws, {d['exposure_window_rows']:,} exposure-window rows, "
            f"{d['associations']:,} tested pairs ({d['significant']:,} significant)."
        )
    if results["dashboards"].data:
        d = results["dashboards"].data
        extras.append(f"- dashboards: {d['pages']:,} HTML pages, {d['html_mb']:,.1f} MB.")
    for stage in ("job_first", *(folder for folder, _ in NIGHTS[1:]), "night_quiet"):
        work = results[stage].data.get("work") or {}
        if work:
            extras.append(
                f"- {LABELS[stage]}: "
                + "; ".join(
                    f"{k} {v:,}"
                    if isinstance(v, int) and not isinstance(v, bool)
                    else f"{k} {str(v).lower()}"
                    for k, v in work.items()
                )
                + "."
            )
    rss = [
        f"{LABELS[s]} {results[s].data['rss_after_imports_mb']:,.0f} MB"
        for s in STAGES
        if results[s].data.get("rss_after_imports_mb") is not None
    ]
    if rss:
        extras.append("- RSS right after imports (part of each peak): " + "; ".join(rss) + ".")
    extras += [
        f"- {LABELS[name]} SQL: `{results[name].data['sql']}`"
        for name in BASELINES
        if results[name].data.get("sql")
    ]
    lines += ["", *extras, ""] if extras else [""]
    return "\n".join(lines)


def _ratio(results: dict[str, StageResult], stage: str, baseline: str) -> str:
    if stage == "labs_ingest" and baseline == "baseline_schema":
        baseline = "labs_baseline"  # the same lab files, read with their schema
    r, b = results[stage], results[baseline]
    if stage not in INGESTS or not r.seconds or not b.seconds:
        return "-"
    return f"{r.seconds / b.seconds:.2f}x"


def print_table(results: dict[str, StageResult], manifest: dict[str, Any]) -> None:
    header = (
        f"{'stage':40} {'status':8} {'seconds':>9} {'rows/s':>12} {'peak MB':>9} "
        f"{'vs duckdb':>10} {'vs schema':>10}"
    )
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        r = results[stage]
        print(
            f"{LABELS[stage]:40} {r.status:8} {_fmt(r.seconds, ',.2f'):>9} "
            f"{_fmt(r.rows_per_s, ',.0f'):>12} {_fmt(r.peak_rss_mb, ',.0f'):>9} "
            f"{_ratio(results, stage, 'baseline'):>10} "
            f"{_ratio(results, stage, 'baseline_schema'):>10}"
        )
    print()
    for target, measured, verdict, note in evaluate_targets(results, manifest):
        print(f"{verdict:5} {target}: {measured}" + (f" ({note})" if note else ""))


def snapshot_code(workdir: Path) -> str:
    """Copy the `pipelines` package into workdir/code; return a short digest of its files."""
    import hashlib

    dest = workdir / "code" / "pipelines"
    shutil.rmtree(dest.parent, ignore_errors=True)
    shutil.copytree(REPO / "pipelines", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
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
    load_before = _load()
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
                f"read_csv: {_fmt(floor.get('rows'), ',')} rows; generated: "
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
            checks["staging_rows"] = staging
            checks["duckdb_rows"] = duck
            checks["generated_rows"] = int(manifest["diary_rows"])
            d = results["ingest"].data
            checks["lines"].append(
                f"staging table `stg_{manifest['diary_source']}`: {staging:,} rows; DuckDB "
                f"read_csv of the same files: {_fmt(duck, ',')} rows; generated: "
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
                    for folder, _ in NIGHTS[1:]:
                        add_night(workdir, folder)
                        stage(folder)  # the nightly stages are named after their nights
                    stage("night_quiet")  # no new file
                    expected = int(checks.get("incremental_expected_rows") or 0) + sum(
                        int(manifest[f"{folder}_rows"]) for folder, _ in NIGHTS[1:]
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
