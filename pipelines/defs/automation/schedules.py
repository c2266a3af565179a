"""Nightly refresh. It starts RUNNING: a user who runs `make dev` (the UI plus the daemon) gets
nightly runs without clicking anything."""

import dagster as dg

from pipelines.defs.automation import jobs
from pipelines.defs.partitions import all_partitions_tags
from pipelines.project import Project

NIGHTLY_CRON = "0 2 * * *"


def configured_timezone(project: Project) -> str:
    """The schedule's timezone: `settings.timezone` in sources.yaml (the one place to change it)."""
    if not project.sources_yaml.exists():
        return "UTC"
    return project.config().settings.timezone


@dg.definitions
def schedules() -> dg.Definitions:
    # Built at load time, as the timezone comes from the project's sources.yaml. A module with a
    # @dg.definitions function contributes only what that function returns.
    project = Project.from_env()

    @dg.schedule(
        name="nightly_refresh",
        job=jobs.refresh_all,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=configured_timezone(project),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refreshes everything at 02:00 in the configured timezone.",
    )
    def nightly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # Every person shard in the one run (a ScheduleDefinition may not set Dagster's tags).
        return dg.RunRequest(tags=all_partitions_tags(project))

    return dg.Definitions(schedules=[nightly_refresh])
