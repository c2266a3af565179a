"""One run of the pipeline as a unit: exclusive, and all-or-nothing for the warehouse.

Dagster commits each step on its own, so on its own a run that fails half-way would leave new
ingest tables beside old analysis tables. `guarded_run` wraps a whole run, however it was started
(the nightly schedule, the new-file sensor, `gutsignal run`, or a materialisation from the UI;
`ProjectResource` enters it once per run):

- Runs are serialised by a run lock held from the run's start to its end: steps of two runs
  never interleave.
- A run killed outright (kill -9, power cut) leaves its snapshot behind; the next run finds it and
  restores it before doing anything, so the half-finished run leaves no trace.
- A warehouse file DuckDB cannot open is moved aside and replaced by the newest backup that opens,
  or rebuilt from data/raw/ (`pipelines.backups.heal`); one log line says which.
- Scheduled (nightly) runs keep a backup copy first (`pipelines.backups`).
- The warehouse is snapshotted when the run starts and put back when the run ends with a failed
  step (or the run itself raises): the warehouse is then exactly as it was before the run, its
  Parquet store (`pipelines.store`) included. A
  scheduled run's snapshot is its backup under a second name, not a second copy. Another run's
  is made from the last one's, kept as `.warehouse.duckdb.spare` between runs, by rewriting
  only the parts of the file that changed since (`Warehouse.snapshot`).

Who enters it depends on where the steps execute (`settings.executor`). In one process, the
resource does, once: Dagster initialises it once for the whole run. With a process per step
(multiprocess, Dask) every step initialises its own resources, so the run's orchestrating
process enters the guard around all of them (`pipelines.defs.executors`) and marks the run as
guarded in the project folder (`is_guarded`); a step that finds the mark leaves it at that.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.backups import heal, take_backup
from pipelines.project import Project
from pipelines.store import beside as store_beside
from pipelines.store_copies import link_tree, remove_tree
from pipelines.warehouse import Warehouse

# A nightly refresh of a large cohort can take a while; a second run waits rather than fails.
RUN_LOCK_TIMEOUT_S = 6 * 3600


def _guard_mark(project: Project, run_id: str) -> Path:
    return project.processed_dir / f"run-{run_id}.guarded"


def is_guarded(project: Project, run_id: str) -> bool:
    """Whether a guard for this run is held, by this process or another one (the process that
    orchestrates the run's step processes): a file beside the warehouse, so that a step on a
    Dask worker sharing the project folder sees it too."""
    return _guard_mark(project, run_id).exists()


def _snapshot(warehouse: Warehouse, snapshot: Path, backup: Path | None) -> bool:
    """Snapshot the warehouse for the run; False when there is none yet.

    A scheduled run's backup, taken a moment ago under the run lock, holds the same bytes: the
    snapshot is a second name for that file (a hard link) rather than a second copy of the whole
    warehouse, and its store a second tree of links to the backup's. Both are only ever read (a
    restore copies from them), so either name can go without the other. Where the folder cannot
    hold a link to the backup, the snapshot is copied. The store is linked before the file
    takes its name: a snapshot file that exists has its store.
    """
    if backup is not None:
        try:
            snapshot.unlink(missing_ok=True)
            link_tree(store_beside(backup), store_beside(snapshot))
            os.link(backup, snapshot)
            return True
        except OSError:
            pass
    return warehouse.snapshot(snapshot)


def _drop_snapshot(warehouse: Warehouse, snapshot: Path) -> None:
    """The run is done with its snapshot: its file is kept as the next run's spare (see
    `Warehouse.snapshot`), unless it is a scheduled run's backup under a second name."""
    warehouse.retire(snapshot)
    remove_tree(store_beside(snapshot))


@contextmanager
def guarded_run(
    project: Project,
    run_id: str,
    *,
    scheduled: bool,
    failed: Callable[[], bool],
    log: Callable[[str], None],
) -> Iterator[None]:
    """Hold the run lock, heal, back up (scheduled runs) and snapshot the warehouse; on leaving,
    put the snapshot back when `failed()` says a step failed (asked only then, when every step's
    outcome is known) or the body raised."""
    processed = project.processed_dir
    processed.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(processed / "run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log("another gutsignal run is in progress; waiting for it to finish")
        lock.acquire(timeout=RUN_LOCK_TIMEOUT_S)
    mark = _guard_mark(project, run_id)
    try:
        # Only a killed run leaves its mark; a step of this run must not mistake one for its own.
        for stale in processed.glob("run-*.guarded"):
            stale.unlink(missing_ok=True)
        mark.touch()
        warehouse = project.warehouse()
        for leftover in sorted(processed.glob("warehouse.run-*.duckdb")):
            # Only a killed run leaves its snapshot: we hold the run lock, nobody else is running.
            log(f"a previous run was interrupted; restoring {leftover.name}")
            warehouse.restore(leftover)
            _drop_snapshot(warehouse, leftover)
        healed = heal(warehouse)
        if healed is not None:
            log(healed)
        snapshot = processed / f"warehouse.run-{run_id[:8]}.duckdb"
        backup = (
            take_backup(warehouse, keep=project.config().settings.backups_keep)
            if scheduled
            else None
        )
        had_warehouse = _snapshot(warehouse, snapshot, backup)
        body_raised = False
        try:
            yield
        except BaseException:
            body_raised = True
            raise
        finally:
            if body_raised or failed():
                if had_warehouse:
                    warehouse.restore(snapshot)
                else:
                    warehouse.path.unlink(missing_ok=True)
                    remove_tree(warehouse.store)
            _drop_snapshot(warehouse, snapshot)
    finally:
        mark.unlink(missing_ok=True)
        lock.release()
