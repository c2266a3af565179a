"""Rendering the person pages, in this process or in spawned worker processes for big cohorts: the
pool, the tables shared with the workers as memory-mapped Arrow files, and `_person_pages`, which
summarises each person (the index and cohort page need everyone's summary) and renders the pages
and section files (`pages.section`) asked for, and any that is missing. Either way the same code
renders every file, so the files do not depend on where they were rendered.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import polars as pl

from pipelines.reports.html import atomic_write
from pipelines.reports.inputs import (
    EVERYONE,
    DashboardInputs,
    Renders,
    person_page_name,
    person_section_name,
)
from pipelines.reports.page_summary import PageSummary, page_summary
from pipelines.reports.pages.person import render_person_page
from pipelines.reports.pages.section import render_person_section
from pipelines.reports.people import _frames, _PersonFrames, _PersonRows, _summary

# Pages are written without an fsync each (each stalled its renderer) and synced together, where
# the OS offers a sync of everything (not on Windows: there each page is synced as it is written).
SYNC_ONCE = hasattr(os, "sync")
# Person pages are rendered in worker processes when there are at least this many to render (and
# more than one CPU): below it, starting the workers costs more than it saves. A kept page costs
# only its person's summary, under a millisecond.
PARALLEL_MIN_PAGES = 50
# And only for a run of at least this many people: a worker costs about half a CPU second to
# start (spawn and imports) and a person's page and section file a few milliseconds, so below it
# this process renders them for less CPU and hardly more time (a night on which a tenth of
# 2,000 people sync: 200 pages, half a CPU second here, four times that with two workers).
PARALLEL_MIN_PEOPLE = 250
# People per task sent to a worker: small enough to share the work out evenly, large enough
# that sending a task costs little next to rendering it.
PEOPLE_PER_TASK = 20
# How much lower the page workers run than the process that feeds them (a Unix nice increment).
# That process reads, plans and splits each group while the workers render the one before, and
# it is the step's bottleneck on a night when many people synced: at 10,000 people it spent
# 35-36 of the 40 s of rendering their pages on its groups, its reads and plans taking nearly
# twice as long as on an idle machine, because the two workers held the CPUs it needed to
# hand them the next group. With the workers lower, 30 s of 37.4-37.5 (alternating runs,
# two each). The workers still get every CPU it leaves idle.
WORKER_NICENESS = 10
# Where the tables the workers map are written, when the machine has it: Linux's shared-memory
# filesystem. Written to a disk-backed temp folder they cost the process that writes them a
# second of the run at 2,000 people (428 MB), while it is also building the next group.
SHARED_MEMORY = Path("/dev/shm")


def shared_tables_parent() -> str | None:
    """The folder to put the mapped tables' folder in: SHARED_MEMORY where it is a writable
    folder, else None (the system's temp folder)."""
    usable = SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK)
    return str(SHARED_MEMORY) if usable else None


# People whose tables are worked out and shared at a time (`people.page_table_groups`): small
# enough that the workers start early and the CPUs are not idle while the next group is built,
# large enough that filtering the page tables per group stays cheap. A group is most of this
# step's memory: it costs several times its tables while it is read and planned. In groups of
# 250 the step peaked at 660-672 MB on a first run at 2,000 people and 618-633 MB on a night
# when 1,000 of 10,000 people synced, against 505-515 on such a night at 2,000 people (200
# pages: groups of 50 and 150); in groups of 125, at 567-578, 574-575 and 505. The cost: a group's
# reads and plans take 60-110 ms whatever its size, about 0.2 s a group in all. Twice the groups
# made a first run at 2,000 people about a second longer, and at 10,000 people 8 s (79 -> 87 s
# of person pages), a night on which all 10,000 synced 11 s (50 -> 62 s).
RENDER_GROUP_PEOPLE = 125
# The first group is smaller: the workers start once it is worked out (when it has
# PARALLEL_MIN_PAGES pages to render), not after a whole group, and render it while the next
# group is read and worked out.
FIRST_GROUP_PEOPLE = PARALLEL_MIN_PAGES


@dataclass(frozen=True)
class _PageJob:
    """What every person page shares, besides the person's own frames."""

    out_dir: Path
    run_info: dict[str, str]
    rejected_summary: pl.DataFrame
    global_warnings: list[str]
    stale_everywhere: frozenset[str]
    # The people whose pages and whose section files to render (those asked for and those whose
    # file is missing, as `write_dashboards` decides per group).
    render: Renders = EVERYONE


@dataclass(frozen=True)
class _PageResult:
    summary: PageSummary  # what the index and cohort page show of the person
    page: str  # the names of the person's page and section file
    section: str
    written: tuple[str, ...]  # those of them written by this run


def _person_pages(people: list[_PersonFrames], job: _PageJob) -> list[_PageResult]:
    """Summarise each person, and render their section file and their page when `job.render`
    names them (the tables carry the figures' data of those people only, see
    `people._split_tables`). The section file is written before the page that loads it.

    Runs in the writing process or in a worker; either way the files come out the same.
    """
    # Person pages read only the run info and the rejected rows of the whole run.
    d = DashboardInputs(rejected_summary=job.rejected_summary, run_info=job.run_info)
    pages, sections = job.render
    out = []
    for frames in people:
        s = _summary(frames, job.stale_everywhere)
        pid = s.person_id
        page, section = person_page_name(pid), person_section_name(pid)
        written = []
        # Synced once for all files before the step records its plan (`_render_people`).
        if sections is None or pid in sections:
            atomic_write(job.out_dir / section, render_person_section(s), durable=not SYNC_ONCE)
            written.append(section)
        if pages is None or pid in pages:
            page_html = render_person_page(s, d, job.global_warnings)
            atomic_write(job.out_dir / page, page_html, durable=not SYNC_ONCE)
            written.append(page)
        out.append(_PageResult(page_summary(s), page, section, tuple(written)))
    return out


def _pool_size(n_people: int, workers: int | None) -> int:
    """Worker processes for the person pages of `n_people` people; 0 renders them in this
    process."""
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on every platform
            workers = os.cpu_count() or 1
    if workers < 2 or n_people < PARALLEL_MIN_PEOPLE or multiprocessing.current_process().daemon:
        # A daemonic process (e.g. a multiprocessing pool worker) may not start processes.
        return 0
    return min(workers, -(-n_people // PEOPLE_PER_TASK))


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _warm() -> None:
    """A no-op task: unpickling it imports this module in a new worker."""


def _lower_priority() -> None:
    """A worker's initializer: run WORKER_NICENESS lower than the process that started it
    (where the OS has priorities: not on Windows). A system that refuses it leaves the worker
    as it is: an initializer that raises would break the pool, and the pages with it."""
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass


@contextmanager
def _page_pool(size: int) -> Iterator[ProcessPoolExecutor | None]:
    if not size:
        yield None
        return
    # Spawned, not forked: a forked copy of a process that has run Polars can deadlock.
    pool = ProcessPoolExecutor(
        size, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
    )
    try:
        # The workers fill the CPUs, so each runs Polars on one thread: with a thread pool per
        # worker they ran a third slower. A spawned worker reads the variable from the
        # environment it starts with, and each submit here starts one.
        with _environ(POLARS_MAX_THREADS="1"):
            for _ in range(size):
                pool.submit(_warm)  # starts the workers now, while this process gathers the data
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _share_tables(tables: dict[str, pl.DataFrame], directory: Path) -> dict[str, str]:
    """Write the split tables as uncompressed Arrow files for the page workers to map.

    Pickling each person's frames to a worker cost more CPU than rendering their page (ten small
    frames a person, 200 kB); a mapped file is read by both workers without a copy."""
    files = {}
    for name, df in tables.items():
        path = directory / f"{name}.arrow"
        df.write_ipc(path, compression="uncompressed")
        files[name] = str(path)
    return files


@lru_cache(maxsize=32)
def _mapped_table(path: str) -> pl.DataFrame:
    return pl.read_ipc(path, memory_map=True)


def _mapped_person_pages(
    files: dict[str, str], people: list[_PersonRows], job: _PageJob
) -> list[_PageResult]:
    """`_person_pages` in a worker: the people's frames sliced from the mapped tables."""
    tables = {name: _mapped_table(path) for name, path in files.items()}
    return _person_pages([_frames(p, tables) for p in people], job)


def _rendered(people: list[_PersonRows], render: Renders) -> set[str]:
    """The people of `people` with a page or a section file to render."""
    ids = {p.person_id for p in people}
    pages, sections = (ids if r is None else ids & r for r in render)
    return pages | sections


def _render_people(
    groups: Iterable[tuple[list[_PersonRows], dict[str, pl.DataFrame], Renders]],
    job: _PageJob,
    shared_dir: Path,
    pool_size: int,
) -> list[_PageResult]:
    """Summarise every person of `groups`, in their order, and render the pages and section
    files of those each group names (None: all of the group's).

    `groups` is lazy: a group's tables are worked out (and, in the dashboards step, read and
    planned) when its turn comes, in this process, while the workers still render the group
    before. Which pages a group renders is known only then, so the `pool_size` workers are
    started once PARALLEL_MIN_PAGES pages are to be rendered: the groups before render here, and
    a night that renders a few pages starts no process. The files written are on disk when it
    returns (SYNC_ONCE: one sync per group)."""
    results: list[_PageResult] = []
    # A group's tasks, and its folder of tables to remove once they are done.
    pending: deque[tuple[list[Future[list[_PageResult]]], Path]] = deque()

    def finish_oldest() -> None:
        futures, group_dir = pending.popleft()
        for future in futures:
            results.extend(future.result())
        # The group's tables in shared memory are RAM: freed as soon as its pages are written
        # (a worker still mapping one keeps its pages until it lets go).
        shutil.rmtree(group_dir, ignore_errors=True)

    pages = 0
    with ExitStack() as stack:
        # Every page written is synced before this returns, and so before the step records its
        # plan: a crash before that renders the same pages next time. Synced in the background,
        # a group's pages while the next group renders, the last ones' while the workers stop.
        writeback = stack.enter_context(ThreadPoolExecutor(1)) if SYNC_ONCE else None
        pool: ProcessPoolExecutor | None = None
        for number, (people, tables, render) in enumerate(groups):
            pages += len(_rendered(people, render))
            if pool is None and pool_size and pages >= PARALLEL_MIN_PAGES:
                pool = stack.enter_context(_page_pool(pool_size))
            if pool is None:
                frames = [_frames(p, tables) for p in people]
                results.extend(_person_pages(frames, replace(job, render=render)))
                continue
            group_dir = shared_dir / f"group-{number}"
            group_dir.mkdir()
            files = _share_tables(tables, group_dir)
            futures = []
            for start in range(0, len(people), PEOPLE_PER_TASK):
                task = people[start : start + PEOPLE_PER_TASK]
                # Each task carries only its own people of `render`, not the whole sets.
                ids = {p.person_id for p in task}
                mine = Renders(*(None if r is None else r & ids for r in render))
                futures.append(
                    pool.submit(_mapped_person_pages, files, task, replace(job, render=mine))
                )
            pending.append((futures, group_dir))
            # What is left in flight is this group: the workers render it while the next is built.
            while len(pending) > 1:
                finish_oldest()
                if writeback is not None:
                    writeback.submit(os.sync)
        while pending:
            finish_oldest()
        if writeback is not None and any(r.written for r in results):
            writeback.submit(os.sync)
    return results
