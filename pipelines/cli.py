"""`gutsignal`: the command-line interface the Makefile and users call.

    gutsignal run [--project-dir DIR]                     materialize everything, in-process
    gutsignal validate FILE --source NAME [--project-dir DIR]   dry-run one file through a source
    gutsignal demo [--project-dir DIR] [--seed N]         write the bundled demo data
    gutsignal sources [--project-dir DIR]                 list sources and the files they match
    gutsignal open [--project-dir DIR]                    open dashboards/index.html in a browser
    gutsignal service install|uninstall|status            the Dagster daemon without a terminal
    gutsignal backup | restore [NAME] [--list]            warehouse backups
    gutsignal check-methods [--replicates N] [--scale full|small]   calibration study (README)
    gutsignal sufficiency-table [--replicates N]          regenerate the draws-needed lookup

Errors are one human paragraph and a non-zero exit, never a traceback: the people running this
are tracking their own health, not debugging Python.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipelines.config import ConfigError, check_source_files
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.schema import REJECT_EXAMPLES, REJECT_VALUE_SHOWN
from pipelines.service import DEFAULT_PORT
from pipelines.warehouse import DAMAGED, Warehouse, WarehouseBusy

DEMO_SOURCES_YAML = """\
# gutsignal sources: which files to read and how. See README.md, "Add your own data source".
# Paths are globs relative to data/raw/.
settings:
  timezone: UTC          # the nightly refresh runs at 02:00 in this timezone

sources:
  - name: demo_cronometer
    kind: diet
    format: cronometer_servings
    path: demo/cronometer/*/servings.csv
    person: {from_folder: true}
    demo: true             # a fixed sample ending 2026-10-25: labelled demo data, not stale

  - name: demo_labs
    kind: labs
    format: csv
    path: demo/labs/*.csv
    person: {column: Patient}
    demo: true
    columns:
      collected_at: Collected
      marker: Test
      value: Result
      unit: Units
      reference_range: Reference Range
      flag: Flag
    datetime_format: "%Y-%m-%d %H:%M"

  - name: demo_bearable
    kind: outcomes
    format: bearable
    path: demo/bearable/*/*.csv
    person: {from_folder: true}
    demo: true

  - name: demo_oura
    kind: outcomes
    format: oura_trends
    path: demo/oura/*/*.csv
    person: {from_folder: true}
    demo: true
"""


class CliError(Exception):
    """A problem to explain to the user, with the exit code to leave with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _project(args: argparse.Namespace) -> Project:
    project = Project(Path(args.project_dir).resolve())
    os.environ[PROJECT_DIR_ENV] = str(project.root)
    return project


def _load_config(project: Project):
    if not project.sources_yaml.exists():
        raise CliError(
            f"No sources.yaml in {project.root}. gutsignal needs one to know which exports to "
            "read. To try it on the bundled demo, run `gutsignal demo --project-dir "
            f"{project.root}` and then `gutsignal run --project-dir {project.root}`; to use your "
            "own exports, copy sources.yaml from the gutsignal repository and follow the README "
            "section 'Add your own data source'.",
            code=2,
        )
    try:
        return project.config()
    except ConfigError as exc:
        raise CliError(f"Configuration error: {exc}", code=2) from exc


def cmd_run(args: argparse.Namespace) -> int:
    project = _project(args)
    project.ensure_dirs()
    config = _load_config(project)
    if not config.sources:
        raise CliError(f"{project.sources_yaml} lists no sources; add one (see README).", code=2)
    for source in config.sources:
        try:
            check_source_files(source, project.raw_dir)
        except ConfigError as exc:
            raise CliError(f"Configuration error: {exc}", code=2) from exc

    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.defs.partitions import all_partitions_tags

    definitions = defs()
    job = definitions.resolve_job_def("refresh_all")
    total = len(job.graph.node_defs)
    print(f"gutsignal: refreshing {project.root} ({total} steps)", file=sys.stderr)
    run_config = {"loggers": {"progress": {"config": {"total_steps": total}}}}
    executor = config.settings.executor.kind
    if executor == "in_process":
        instance = (
            dg.DagsterInstance.get()
            if os.environ.get("DAGSTER_HOME")
            else dg.DagsterInstance.ephemeral()
        )
        # A failed run puts the warehouse back as it was (ProjectResource, defs/resources.py).
        result: dg.ExecuteInProcessResult | dg.ExecuteJobResult = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            tags=all_partitions_tags(project),
        )
    else:
        if not os.environ.get("DAGSTER_HOME"):
            raise CliError(
                f"settings.executor kind {executor} runs steps in other processes, which log to "
                "a Dagster instance on disk: set DAGSTER_HOME to a folder (make run sets "
                ".dagster_home), or use kind: in_process.",
                code=2,
            )
        # Reconstructable by the step processes, the project folder named in it. The executor
        # holds the run guard (defs/executors.py).
        recon = dg.build_reconstructable_job(
            "pipelines.definitions", "refresh_all_job", reconstructable_args=(str(project.root),)
        )
        with dg.execute_job(
            recon,
            instance=dg.DagsterInstance.get(),
            run_config=run_config,
            raise_on_error=False,
            tags=all_partitions_tags(project),
        ) as result:
            pass
    if not result.success:
        failures = [
            e for e in result.all_events if e.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")
        ]
        detail = ""
        for event in failures:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                while error.cause is not None:  # Dagster wraps the user's exception
                    error = error.cause
                detail = f" Step {event.step_key or 'run'} failed: {error.message.strip()}"
                break
        raise CliError(
            f"The run did not complete.{detail} The warehouse was put back as it was before the "
            "run; fix the problem and run again.",
            code=1,
        )
    _print_ingest_summary(project.warehouse())
    index = project.dashboards_dir / "index.html"
    print(f"Dashboards written. Open: {index}")
    return 0


def _print_ingest_summary(warehouse: Warehouse) -> None:
    """Counts per run, and every file that could not be read, so nothing fails quietly."""
    files = warehouse.table("ingest_files")
    if files.is_empty():
        return
    totals = {
        c: int(files[c].sum())
        for c in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
    }
    print(
        f"Input: {files.height} file(s), {totals['rows_read']} rows read, "
        f"{totals['rows_loaded']} loaded, {totals['rows_rejected']} rejected "
        f"(see rejected_rows), {totals['rows_duplicate']} duplicate."
    )
    for path, source, error in (
        files.filter(files["status"] == "error").select("path", "source", "error").rows()
    ):
        print(f"warning: {path} (source {source!r}) was not loaded: {error}", file=sys.stderr)


@dataclass(frozen=True)
class RejectGroup:
    """The rejects of one reason: how many, in which columns, and the first few as
    (line, column, value)."""

    reason: str
    n: int
    columns: list[str]
    examples: list[tuple[int, str | None, str | None]]


def reject_groups(rejects: pl.DataFrame, examples: int = REJECT_EXAMPLES) -> list[RejectGroup]:
    """The rejects (REJECT_SCHEMA) grouped by reason, most frequent first (then by first line):
    one bad setting is one reason with a count, not a screenful of the same message."""
    groups = (
        rejects.sort("line", maintain_order=True)
        .group_by("reason", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            pl.col("column").drop_nulls().unique(maintain_order=True).alias("columns"),
            pl.col("line").head(examples).alias("lines"),
            pl.col("column").head(examples).alias("example_columns"),
            pl.col("value").head(examples).alias("values"),
        )
        .sort("n", descending=True, maintain_order=True)
    )
    return [
        RejectGroup(
            g["reason"],
            g["n"],
            g["columns"],
            list(zip(g["lines"], g["example_columns"], g["values"], strict=True)),
        )
        for g in groups.iter_rows(named=True)
    ]


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.adapters import FORMATS, AdapterError
    from pipelines.adapters.base import lines_of
    from pipelines.ingest import plausible, target_table

    project = _project(args)
    config = _load_config(project)
    try:
        source = config.source(args.source)
    except ConfigError as exc:
        raise CliError(str(exc), code=2) from exc
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file.", code=2)
    try:
        result = FORMATS[source.format].parse(path, source)
    except AdapterError as exc:
        raise CliError(f"{path} cannot be read as {source.format}: {exc}", code=1) from exc
    # The same plausibility rules as a real ingest, so "would load" means what it says.
    result = plausible(target_table(source), result, date.today())
    print(f"{path} as source {source.name!r} ({source.format}, {source.kind}):")
    print(f"  rows read:      {result.rows_read}")
    loaded = lines_of(result.rows)
    summed = f" (as {result.rows.height} rows)" if loaded != result.rows.height else ""
    print(f"  would load:     {loaded}{summed}")
    print(f"  would reject:   {result.rejects.height}")
    if result.rows.height:
        people = result.rows["person_id"].unique().sort().to_list()
        print(f"  people:         {', '.join(str(p) for p in people[:10])}")
    if result.rejects.height:
        print("  rejected rows, by reason (count, column, example lines and values):")
        for group in reject_groups(result.rejects):
            print(f"    {group.n:>6} x {group.reason}")
            label = "columns" if len(group.columns) > 1 else "column"
            print(f"             {label}: {', '.join(group.columns) or '-'}")
            for line, column, value in group.examples:
                if value is not None and len(value) > REJECT_VALUE_SHOWN:
                    value = value[:REJECT_VALUE_SHOWN] + "..."
                cell = "" if value is None else f": {value!r}"
                where = f" ({column})" if column and len(group.columns) > 1 else ""
                print(f"             line {line}{where}{cell}")
    print("Nothing was written.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import generate_demo

    project = _project(args)
    project.ensure_dirs()
    marker = project.raw_dir / "demo"
    if marker.exists() and not args.force:
        print(f"Demo data already in {marker} (use --force to rewrite it).")
    else:
        files = generate_demo(project.root, seed=args.seed)
        print(f"Wrote {len(files)} demo files under {marker}.")
    if not project.sources_yaml.exists():
        project.sources_yaml.write_text(DEMO_SOURCES_YAML, encoding="utf-8")
        print(f"Wrote {project.sources_yaml} for the demo.")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from pipelines.backups import take_backup

    project = _project(args)
    keep = project.config().settings.backups_keep if project.sources_yaml.exists() else 7
    try:
        path = take_backup(project.warehouse(), keep=keep)
    except WarehouseBusy as exc:
        raise CliError(f"{exc} No backup was taken.", code=1) from exc
    except DAMAGED as exc:
        # A copy of a file DuckDB cannot open would only push a good backup out of the last N.
        raise CliError(
            f"The warehouse could not be read ({' '.join(str(exc).split())}); no backup was "
            "taken. `gutsignal restore --list` shows the backups to go back to.",
            code=1,
        ) from exc
    if path is None:
        raise CliError(f"No warehouse yet in {project.processed_dir}; nothing to back up.", 2)
    print(f"Backup written: {path}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pipelines.backups import list_backups, restore_backup

    project = _project(args)
    warehouse = project.warehouse()
    backups = list_backups(warehouse)
    if args.list or not backups:
        if not backups:
            print(f"No backups in {project.processed_dir / 'backups'}.")
        for b in backups:
            print(b.name)
        return 0 if backups or args.list else 2
    try:
        chosen = restore_backup(warehouse, args.name)
    except FileNotFoundError as exc:
        raise CliError(str(exc), code=2) from exc
    except WarehouseBusy as exc:
        raise CliError(f"{exc} Nothing was restored.", code=1) from exc
    print(f"Restored {chosen.name} into {warehouse.path}.")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    project = _project(args)
    config = _load_config(project)
    for s in config.sources:
        files = s.files(project.raw_dir)
        print(f"{s.name}: {s.kind}/{s.format}, data/raw/{s.path} -> {len(files)} file(s)")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    import webbrowser

    project = _project(args)
    index = project.dashboards_dir / "index.html"
    if not index.is_file():
        raise CliError(
            f"No dashboards yet: {index} does not exist. Run `gutsignal run --project-dir "
            f"{project.root}` first (or `make run`), then `gutsignal open` again.",
            code=2,
        )
    # False means Python found no browser to start (a headless server, an SSH session): the
    # path is still useful, to copy to a machine that has one.
    if webbrowser.open(index.as_uri()):
        print(f"Opened {index}")
    else:
        print(f"No browser found to open it; open this file by hand: {index}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    """Install, remove or check the daemon as a systemd user unit or a launchd agent."""
    from pipelines import service, service_install

    try:
        platform = args.platform or service.host_platform()
        target = service_install.resolve_target(platform)
        if args.action == "status":
            lines, code = service_install.status(target)
        elif args.action == "uninstall":
            lines, code = service_install.uninstall(target, dry_run=args.dry_run), 0
        else:
            if not 0 < args.port < 65536:
                raise CliError(f"--port {args.port}: a port is a number from 1 to 65535.", 2)
            project = _project(args)
            # The daemon loads sources.yaml for the ingest assets: a broken one is said now,
            # not in the journal at 02:00.
            _load_config(project)
            home = Path(args.dagster_home) if args.dagster_home else None
            paths = service.resolve_paths(project.root, dagster_home=home)
            comps = service.components(paths, webserver=args.webserver, port=args.port)
            service.check_ready(paths, comps)
            lines, code = service_install.install(target, paths, comps, dry_run=args.dry_run), 0
    except service.ServiceError as exc:
        raise CliError(str(exc), code=2) from exc
    print("\n".join(lines))
    return code


REPO_ROOT = Path(__file__).resolve().parents[1]


def _commit(root: Path) -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def cmd_check_methods(args: argparse.Namespace) -> int:
    """Run the calibration study (the markers' scenarios and the daily outcomes') and write its
    tables to the README (each between its own markers) and docs/calibration.md."""
    from dataclasses import replace

    from pipelines.analysis import calibration as cal
    from pipelines.analysis import calibration_daily as daily

    size, daily_size = cal.SCALES[args.scale], daily.SCALES[args.scale]
    if args.replicates is not None:
        size = replace(size, replicates=args.replicates)
        daily_size = replace(daily_size, replicates=args.replicates)
    if size.replicates < 2:
        raise CliError("--replicates: at least 2 are needed for a Monte Carlo error", code=2)
    names = args.scenario or [*cal.BY_NAME, *daily.BY_NAME]
    unknown = [n for n in names if n not in cal.BY_NAME and n not in daily.BY_NAME]
    if unknown:
        raise CliError(
            f"--scenario: unknown {', '.join(unknown)} "
            f"(known: {', '.join([*cal.BY_NAME, *daily.BY_NAME])})",
            code=2,
        )
    commit, day = _commit(REPO_ROOT), date.today().isoformat()
    blocks: list[tuple[str, tuple[str, str]]] = []
    rows = []
    for name in (n for n in names if n in cal.BY_NAME):
        print(f"check-methods: {name}, {size.replicates} replicates ...", flush=True)
        rows += cal.run_scenario(name, size, seed=args.seed, workers=args.workers)
    if rows:
        blocks.append((cal.report_block(rows, size, args.seed, commit, day), cal.MARKERS))
    daily_rows = []
    for name in (n for n in names if n in daily.BY_NAME):
        print(f"check-methods: {name}, {daily_size.replicates} replicates ...", flush=True)
        daily_rows += daily.run_scenario(name, daily_size, seed=args.seed, workers=args.workers)
    if daily_rows:
        block = daily.report_block(daily_rows, daily_size, args.seed, commit, day)
        blocks.append((block, daily.MARKERS))
    for block, _ in blocks:
        print(block)
    if args.no_write:
        return 0
    readme = Path(args.readme)
    try:
        text = readme.read_text()
        for block, markers in blocks:
            text = cal.replace_between_markers(text, block, markers)
        readme.write_text(text)
    except (OSError, ValueError) as exc:
        raise CliError(f"{readme}: {exc}") from exc
    written = [str(readme)]
    if rows:
        docs = Path(args.docs)
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(cal.docs_page(blocks[0][0]))
        written.append(str(docs))
    print(f"Wrote the tables to {' and '.join(written)}.")
    return 0


def cmd_sufficiency_table(args: argparse.Namespace) -> int:
    """Regenerate pipelines/data/sufficiency_draws.csv by simulation."""
    from pipelines.analysis import sufficiency

    table = sufficiency.simulate_table(replicates=args.replicates, seed=args.seed)
    out = Path(args.out)
    table.write_csv(out)
    print(f"Wrote {table.height} rows to {out}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gutsignal", description="Which foods move your chronic inflammation?"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_project(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--project-dir",
            # The variable `make` and the Dagster service set, so a shell that has it needs no flag.
            default=os.environ.get(PROJECT_DIR_ENV) or ".",
            help=f"project folder (default: ${PROJECT_DIR_ENV} when set, else .)",
        )
        return p

    run = with_project(sub.add_parser("run", help="run the whole pipeline once"))
    run.set_defaults(func=cmd_run)
    val = with_project(sub.add_parser("validate", help="dry-run one file through a source"))
    val.add_argument("file")
    val.add_argument("--source", required=True, help="the source name in sources.yaml")
    val.set_defaults(func=cmd_validate)
    demo = with_project(sub.add_parser("demo", help="write the bundled demo data"))
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--force", action="store_true", help="rewrite existing demo files")
    demo.set_defaults(func=cmd_demo)
    bak = with_project(
        sub.add_parser("backup", help="copy the warehouse to data/processed/backups")
    )
    bak.set_defaults(func=cmd_backup)
    res = with_project(sub.add_parser("restore", help="put a warehouse backup back in place"))
    res.add_argument("name", nargs="?", help="backup file name (default: the newest)")
    res.add_argument("--list", action="store_true", help="list the backups and exit")
    res.set_defaults(func=cmd_restore)
    src = with_project(sub.add_parser("sources", help="list sources and matched files"))
    src.set_defaults(func=cmd_sources)
    opn = with_project(
        sub.add_parser("open", help="open the dashboards (index.html) in the default browser")
    )
    opn.set_defaults(func=cmd_open)
    svc = sub.add_parser(
        "service",
        help="keep the Dagster daemon (nightly schedule, new-file sensor) running without a "
        "terminal: systemd user unit or launchd agent",
    )
    svc_sub = svc.add_subparsers(dest="action", required=True)
    svc_install = with_project(
        svc_sub.add_parser("install", help="write the unit (or plist) and start it")
    )
    svc_install.add_argument(
        "--webserver", action="store_true", help="also run the UI on 127.0.0.1 (as make dev)"
    )
    svc_install.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"UI port (default: {DEFAULT_PORT})"
    )
    svc_install.add_argument(
        "--dagster-home", help="Dagster instance folder (default: <checkout>/.dagster_home)"
    )
    svc_uninstall = svc_sub.add_parser("uninstall", help="stop the service and remove its files")
    svc_status = svc_sub.add_parser("status", help="is it installed, for which project, running")
    for p in (svc_install, svc_uninstall, svc_status):
        p.add_argument(
            "--platform",
            choices=["linux", "macos"],
            help="systemd (linux) or launchd (macos); default: this machine's",
        )
        p.set_defaults(func=cmd_service)
    for p in (svc_install, svc_uninstall):
        p.add_argument(
            "--dry-run",
            "--print",
            dest="dry_run",
            action="store_true",
            help="print what would be written and run; change nothing",
        )
    chk = sub.add_parser(
        "check-methods",
        help="simulation study of the association methods; writes the table to the README",
    )
    chk.add_argument(
        "--replicates", type=int, help="replicates per scenario (default: the scale's)"
    )
    chk.add_argument(
        "--scale",
        choices=["full", "small"],
        default="full",
        help="cohort size: full (40 people x 12 draws, 200 replicates; daily: 12 people x 180 "
        "days, 400) or small (the tests')",
    )
    chk.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    chk.add_argument("--seed", type=int, default=16)
    chk.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    chk.add_argument("--readme", default=str(REPO_ROOT / "README.md"))
    chk.add_argument("--docs", default=str(REPO_ROOT / "docs" / "calibration.md"))
    chk.add_argument("--no-write", action="store_true", help="print the table only")
    chk.set_defaults(func=cmd_check_methods)
    suf = sub.add_parser(
        "sufficiency-table", help="regenerate the draws-needed lookup table by simulation"
    )
    suf.add_argument("--replicates", type=int, default=400, help="simulated people per point")
    suf.add_argument("--seed", type=int, default=5)
    suf.add_argument(
        "--out", default=str(REPO_ROOT / "pipelines" / "data" / "sufficiency_draws.csv")
    )
    suf.set_defaults(func=cmd_sufficiency_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"gutsignal: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(
            "gutsignal: interrupted; the warehouse keeps its last complete state.", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
