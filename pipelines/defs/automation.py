"""Nightly refresh and the new-file sensor. Both start RUNNING: a user who runs `make dev` (the
UI plus the daemon) gets nightly runs without clicking anything."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from pipelines.defs.resources import ProjectResource
from pipelines.project import Project

NIGHTLY_CRON = "0 2 * * *"

refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all(),
    description="Ingest every source, rebuild the warehouse tables, analysis and dashboards.",
)


def configured_timezone(project: Project) -> str:
    """The schedule's timezone: `settings.timezone` in sources.yaml (the one place to change it)."""
    if not project.sources_yaml.exists():
        return "UTC"
    return project.config().settings.timezone


def raw_file_state(raw_dir: Path) -> dict[str, list[float]]:
    """(mtime, size) of every file under data/raw/, keyed by relative path."""
    if not raw_dir.exists():
        return {}
    state = {}
    for path in sorted(raw_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            state[str(path.relative_to(raw_dir))] = [stat.st_mtime, float(stat.st_size)]
    return state


@dg.sensor(
    job=refresh_all,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a refresh when files under data/raw/ are added or changed.",
)
def new_raw_files(context: dg.SensorEvaluationContext, project: ProjectResource):
    """Compare data/raw/ with the state stored in the cursor; one run per batch of changes."""
    previous = json.loads(context.cursor) if context.cursor else {}
    current = raw_file_state(project.project.raw_dir)
    changed = sorted(p for p, s in current.items() if previous.get(p) != s)
    if not changed:
        return dg.SkipReason("no new or changed files under data/raw/")
    digest = hashlib.sha256(json.dumps({p: current[p] for p in changed}).encode()).hexdigest()
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"raw-files-{digest[:16]}",
                tags={"gutsignal/changed_files": str(len(changed))},
            )
        ],
        cursor=json.dumps(current),
    )


@dg.definitions
def automation() -> dg.Definitions:
    nightly = dg.ScheduleDefinition(
        name="nightly_refresh",
        job=refresh_all,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=configured_timezone(Project.from_env()),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refreshes everything at 02:00 in the configured timezone.",
    )
    # A module with a @dg.definitions function contributes only what that function returns.
    return dg.Definitions(jobs=[refresh_all], schedules=[nightly], sensors=[new_raw_files])
