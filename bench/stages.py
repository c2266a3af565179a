"""The benchmark's stages and what each one measures, in its own child process.

The stage names and labels, the child's timing helpers (`Timer`, `_ready`), one `_stage_<name>`
function per stage, and `child_main`, which `python -m bench.run --child <stage>` runs (see
`bench.measure.run_child`). Everything of `pipelines` is imported inside the stage functions, so
the child imports it from the run's code snapshot and the imports stay out of the timed work.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.generate import LAB_PORTAL_DIR, LAB_PORTAL_GLOB, LAB_PORTAL_SOURCE, MANIFEST

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


def _proc_status_mb(key: str) -> float | None:
    """VmHWM / VmRSS of this process in MB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stage_peak_mb() -> float | None:
    """The stage's peak RSS in MB: the high-water mark of this process since it started its
    program (VmHWM), or of a child it waited for (the job's page workers), whichever is larger.
    Not `getrusage` of this process: Linux starts a forked process's maximum at its parent's
    RSS, so a stage run from a bench holding 855 MB showed at least 855 MB, whatever it used.
    A page worker's maximum starts at this process's RSS when it was started, which is below
    this process's own high-water mark."""
    own = _proc_status_mb("VmHWM")
    if own is None:
        return None
    own = max(own, _HWM_BEFORE_RESETS["mb"])
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


# The highest VmHWM read just before a `StepPeaks` reset it, so the stage's own peak survives.
_HWM_BEFORE_RESETS = {"mb": 0.0}


class StepPeaks:
    """Each Dagster step's own peak RSS in an in-process run, exact rather than sampled: the
    process's high-water mark (VmHWM) is reset when a step starts (writing 5 to
    `/proc/self/clear_refs` sets it to the RSS of the moment) and read when the step ends. Steps
    run one after the other in the run's process, so each mark is one step's (its page workers,
    separate processes, not included). Hooked on the instance's event log, where Dagster stores
    STEP_START before the step's work and STEP_SUCCESS after its outputs are written."""

    def __init__(self) -> None:
        self.peaks_mb: dict[str, float] = {}
        self.start_mb: dict[str, float] = {}

    def watch(self, instance: Any) -> None:
        storage = instance.event_log_storage
        store = storage.store_event

        def watched(entry: Any) -> None:
            self._on(entry)
            store(entry)

        storage.store_event = watched

    def _on(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None or not entry.step_key:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            mark = _proc_status_mb("VmHWM") or 0.0
            _HWM_BEFORE_RESETS["mb"] = max(_HWM_BEFORE_RESETS["mb"], mark)
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:  # not Linux, or not allowed: the marks are then the stage's so far
                pass
            self.start_mb[entry.step_key] = _proc_status_mb("VmRSS") or 0.0
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            end = _proc_status_mb("VmHWM")
            if end is not None:
                self.peaks_mb[entry.step_key] = max(self.peaks_mb.get(entry.step_key, 0.0), end)

    def top(self, n: int) -> dict[str, dict[str, float]]:
        """The n steps with the highest peaks: each one's peak and its RSS when it started."""
        ranked = sorted(self.peaks_mb.items(), key=lambda kv: -kv[1])[:n]
        return {
            key: {"peak_mb": peak, "start_mb": self.start_mb.get(key, 0.0)} for key, peak in ranked
        }


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


# The project's Dagster instance settings, as users' runs read them from their DAGSTER_HOME.
INSTANCE_SETTINGS = "dagster.yaml"


def _dagster_env(workdir: Path) -> None:
    """The stage's project and Dagster instance: the run's snapshot of `dagster.yaml`
    (`bench.run.snapshot_code`) in the workdir's DAGSTER_HOME, so the runs store their history
    as users' do (a workdir from before the snapshot had it keeps Dagster's defaults)."""
    project = workdir / "project"
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    settings = workdir / "code" / INSTANCE_SETTINGS
    if settings.is_file() and not (home / INSTANCE_SETTINGS).is_file():
        shutil.copyfile(settings, home / INSTANCE_SETTINGS)
    os.environ["GUTSIGNAL_PROJECT_DIR"] = str(project)
    os.environ["DAGSTER_HOME"] = str(home)


def _materialize(keys: list[str], timer: Timer) -> None:
    """Materialize asset keys through the project's real `refresh_all` job, in-process, on a
    persistent instance (so state a later run could use survives between stages)."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.defs.partitions import all_partitions_tags
    from pipelines.project import Project

    definitions = defs()
    job = definitions.resolve_job_def("refresh_all")
    instance = dg.DagsterInstance.get()
    _ready()
    with timer.step("total"):
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in keys],
            raise_on_error=True,
            tags=all_partitions_tags(Project.from_env()),
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

    from pipelines import store
    from pipelines.adapters import FORMATS
    from pipelines.config import parse_project_config
    from pipelines.ingest import sync_source
    from pipelines.store_copies import remove_tree

    root = workdir / LAB_PORTAL_DIR
    config = parse_project_config(root / "sources.yaml", FORMATS)
    source = next(s for s in config.sources if s.name == LAB_PORTAL_SOURCE)
    database = workdir / "lab_portal.duckdb"
    database.unlink(missing_ok=True)
    remove_tree(store.beside(database))
    _ready()
    start, cpu = time.perf_counter(), time.process_time()
    conn = duckdb.connect(str(database))
    try:
        store.attach(conn, store.beside(database), read_only=False)  # its raw and staging tables
        conn.execute("BEGIN TRANSACTION")
        result = sync_source(conn, source, root / "data" / "raw")
        conn.execute("COMMIT")
    finally:
        conn.close()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    files = result.summary
    database.unlink(missing_ok=True)
    remove_tree(store.beside(database))
    return {
        "seconds": seconds,
        # CPU seconds of all the process's threads: on a shared machine, wall-clock time says as
        # much about the neighbours as about the ingest.
        "cpu_seconds": cpu,
        "rows": files.rows_read,
        "unit": "lab rows read",
        "files": files.files,
        "files_failed": files.not_loaded,
        "rows_loaded": files.rows_loaded,
        "rows_rejected": files.rows_rejected,
        "rows_duplicate": files.rows_duplicate,
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
    from pipelines.steps.daily import update_daily_effects
    from pipelines.steps.features import (
        update_diet_daily,
        update_diet_summary,
        update_marker_models,
    )
    from pipelines.steps.taxonomy import update_food_taxonomy
    from pipelines.store_writes import forget

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
        ("daily_effects", "daily_effects", lambda conn: update_daily_effects(conn, settings)),
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
        conn.execute(f"DELETE FROM {STATE_TABLE} WHERE list_contains(?, step)", [names])
        # The per-day records are a store table: their parts are rewritten without them.
        steps_sql = ", ".join("'" + name.replace("'", "''") + "'" for name in names)
        forget(conn, DAY_STATE_TABLE, f"t.step IN ({steps_sql})")
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
    from pipelines.defs.partitions import all_partitions_tags
    from pipelines.project import Project

    definitions = defs()
    job = definitions.resolve_job_def("refresh_all")
    selection = (
        dg.AssetSelection.all() - dg.AssetSelection.groups("ingest", "warehouse")
        if downstream_only
        else dg.AssetSelection.all()
    )
    keys = sorted(selection.resolve(definitions.resolve_asset_graph()))
    instance = dg.DagsterInstance.get()
    peaks = StepPeaks()
    peaks.watch(instance)
    _ready()
    start, cpu = time.perf_counter(), _cpu_with_workers()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=None if not downstream_only else keys,
        raise_on_error=True,
        tags=all_partitions_tags(Project.from_env()),
    )
    seconds, cpu = time.perf_counter() - start, _cpu_with_workers() - cpu
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
        "cpu_seconds": cpu,
        "rows": rows,
        "unit": "diary rows in the history" if downstream_only else "",
        "assets": len(keys),
        "steps": len(steps),
        "work": work,
        "substeps": _top_steps(steps, 8),
        "step_peaks": peaks.top(6),
    }


def _cpu_with_workers() -> float:
    """CPU seconds (user + system) of this process and of its ended children: the job's page
    workers, which have exited by the time the dashboards step returns. On a shared machine
    this, unlike the wall-clock seconds, does not count the neighbours' work."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
    result["peak_rss_mb"] = stage_peak_mb()
    pipelines = sys.modules.get("pipelines")
    where = getattr(pipelines, "__file__", None)
    result["code_path"] = str(Path(where).parent) if where else None
    result.update(_CHILD)
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0
