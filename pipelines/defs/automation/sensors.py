"""The new-file sensor. It starts RUNNING, like the nightly schedule."""

import hashlib
import json
from pathlib import Path

import dagster as dg

# Dagster collects every definition at the top level of a module: through its module, the job
# stays collected once, from jobs.py.
from pipelines.defs.automation import jobs
from pipelines.defs.partitions import all_partitions_tags
from pipelines.defs.resources import ProjectResource


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
    job=jobs.refresh_all,
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
                # Every person shard: a file's people are known only once it is parsed, in the
                # run; the per-person steps then recompute only the people whose rows changed.
                tags={
                    "gutsignal/changed_files": str(len(changed)),
                    **all_partitions_tags(project.project),
                },
            )
        ],
        cursor=json.dumps(current),
    )
