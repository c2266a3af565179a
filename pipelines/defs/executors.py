"""Where a run's steps execute, chosen by `settings.executor` in sources.yaml.

- `in_process` (the default): every step in the run's own process, Dagster's `in_process_executor`.
  Dagster initialises the resources once for the whole run, so `ProjectResource` enters the run
  guard (`pipelines.runs.guarded_run`) once, as it always has.
- `multiprocess`: Dagster's multiprocess executor, one process per step on this machine.
- `dask`: dagster-dask's executor on an existing Dask scheduler (`cluster: {existing: {address}}`).

With a process per step, every step initialises its own resources: the resource would enter the
guard once per step, and a step's snapshot and restore would undo the steps running beside it.
So for these two the executor enters the guard: `Executor.execute` runs in the one process that
orchestrates the run, starts before the first step and ends after the last step's outcome is
known. The run lock, healing, the nightly backup, the snapshot and the restore after a failed step
then mean exactly what they mean in one process. Each step stays safe on its own too: its writes
go through `Warehouse.write()` (a cross-process file lock and one transaction), so DuckDB's one
writer per file holds whichever machine the step runs on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode

# Both executors are subclassed rather than wrapped: dagster-dask checks that the run's executor
# *is* a DaskExecutor. Dagster does not re-export MultiprocessExecutor.
from dagster._core.executor.multiprocess import MultiprocessExecutor
from dagster_dask import dask_executor
from dagster_dask.executor import DaskExecutor
from dagster_shared.record import copy

from pipelines.config import ExecutorSettings
from pipelines.project import Project
from pipelines.runs import guarded_run


def run_had_failed_step(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether any step of the run has failed so far, by the run's event log."""
    return bool(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE))


@contextmanager
def _run_guard(plan_context: PlanOrchestrationContext) -> Iterator[list[bool]]:
    """`guarded_run` for the run being orchestrated; the caller flags a failed step it sees in
    the list it gets, on top of the event log's STEP_FAILUREs."""
    run = plan_context.dagster_run
    seen_failure = [False]
    with guarded_run(
        Project.from_env(),
        run.run_id,
        scheduled=bool(run.tags.get("dagster/schedule_name")),
        failed=lambda: seen_failure[0] or run_had_failed_step(plan_context.instance, run.run_id),
        log=plan_context.log.warning,
    ):
        yield seen_failure


def _guarded_events(
    plan_context: PlanOrchestrationContext, events: Iterator[dg.DagsterEvent]
) -> Iterator[dg.DagsterEvent]:
    with _run_guard(plan_context) as seen_failure:
        for event in events:
            if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                seen_failure[0] = True
            yield event


class RunGuardedMultiprocessExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor, the whole run inside one run guard."""

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        # The guard is entered on the first event asked for, before any step process starts.
        return _guarded_events(plan_context, super().execute(plan_context, execution_plan))


def _without_run_op_concurrency(plan_context: PlanOrchestrationContext) -> PlanOrchestrationContext:
    """The same orchestration context, its run without `run_op_concurrency`.

    dagster-dask (0.29.27) hands the run to `Client.submit`, and distributed (2025 on) walks every
    tuple among a task's arguments to find futures in them. A DagsterRun is a tuple, and the
    RunOpConcurrency in it (set because our assets name a pool) is a Dagster record, which
    refuses to be iterated: every submit failed. Only the run queue reads that field, to count
    a queued run's pools; a step never does, so the workers lose nothing."""
    run = copy(plan_context.dagster_run, run_op_concurrency=None)
    return PlanOrchestrationContext(
        plan_data=plan_context.plan_data._replace(dagster_run=run),
        log_manager=plan_context.log,
        executor=plan_context.executor,
        output_capture=plan_context.output_capture,
        resume_from_failure=plan_context.resume_from_failure,
    )


class RunGuardedDaskExecutor(DaskExecutor):
    """dagster-dask's executor, the whole run inside one run guard."""

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        events = super().execute(_without_run_op_concurrency(plan_context), execution_plan)
        return _guarded_events(plan_context, events)


@dg.executor(
    name="multiprocess",
    requirements=dg.multiple_process_executor_requirements(),
)
def run_guarded_multiprocess_executor(_init_context: dg.InitExecutorContext) -> dg.Executor:
    # Retries as Dagster's multiprocess executor has them by default; at most as many step
    # processes as cores (DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT overrides it). Step
    # processes fork from a server that has imported Dagster once, rather than each importing it
    # afresh. Only Dagster: with our modules preloaded too, the ingest steps hung in the forked
    # children (a module that runs Polars at import starts its thread pool in the server, and a
    # fork keeps the pool's locks but not its threads).
    return RunGuardedMultiprocessExecutor(
        retries=RetryMode.ENABLED,
        max_concurrent=None,
        start_method="forkserver",
        explicit_forkserver_preload=["dagster"],
    )


@dg.executor(
    name="dask",
    # dagster-dask's own schema: `cluster: {existing: {address: ...}}`, `{local: ...}`, `{kube:
    # ...}`; we configure `existing` below.
    config_schema=dask_executor.config_schema.as_field(),
    requirements=dg.multiple_process_executor_requirements(),
)
def run_guarded_dask_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    cluster = init_context.executor_config["cluster"]
    assert isinstance(cluster, Mapping)  # a selector: one cluster type and its configuration
    ((cluster_type, cluster_configuration),) = cluster.items()
    return RunGuardedDaskExecutor(cluster_type, cluster_configuration)


def executor_for(project: Project) -> dg.ExecutorDefinition:
    """The executor the project's `settings.executor` asks for (in_process without sources.yaml:
    `dg check defs` in a fresh checkout)."""
    settings = (
        project.config().settings.executor if project.sources_yaml.exists() else ExecutorSettings()
    )
    if settings.kind == "multiprocess":
        return run_guarded_multiprocess_executor
    if settings.kind == "dask":
        return run_guarded_dask_executor.configured(
            {"cluster": {"existing": {"address": settings.scheduler}}}
        )
    return dg.in_process_executor
