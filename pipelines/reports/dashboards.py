"""Write the offline HTML dashboards: index.html, one page per person, cohort.html, plotly.min.js.

The entry point of the report flow, and its public face. Pure Python: Polars frames in, files out
(no Dagster, no DuckDB), so the report can be rebuilt or tested from any frames. The flow:
`inputs` conforms the frames (`DashboardInputs`), `sources` judges each source's freshness
against the run's time, `people` splits the tables by person and `summaries` sums each person up;
`workers` renders the person pages (in spawned processes for big cohorts), those the caller asks
for, a group of people at a time; `page_inputs` says what each person page is built from, for
the step that decides which to render (`pipelines.steps.dashboards`), which also hands over the
person tables a group at a time (`PersonGroups`), so its memory does not grow with the people;
`pages` holds the page builders (index, person, cohort) and `figures` the Plotly figures; `html`
the escaping, formatting and page shell. Every frame may be empty or miss optional columns; the
pages then say what is missing instead of failing, because a nightly run that produces no page at
all is worse than a page that says "no data yet".

Privacy: pages load plotly.js from a sibling file (written once), embed no remote resource and
escape every piece of user text. Honesty: every effect is printed with its n, 95% CI, q and the
caveat "association, not causation". Staleness (a source's newest file or latest day of data more
than STALE_AFTER_DAYS before the run) is judged against `run_info["run_at"]`, except for the
sources in `demo_sources` (`demo: true` in sources.yaml), whose data ends on a fixed day.
"""

from __future__ import annotations

import filecmp
import tempfile
import time
from collections.abc import Callable, Collection
from importlib.resources import as_file, files
from pathlib import Path

import polars as pl

# The public names other layers import from here (pipelines/defs, bench, tests).
from pipelines.reports.findings import finding_sentence, sufficiency_short
from pipelines.reports.html import atomic_write
from pipelines.reports.inputs import (
    COHORT,
    INDEX,
    PERSON_PREFIX,
    PLOTLY_JS,
    SECTION_SUFFIX,
    DashboardInputs,
    PersonGroups,
    Renders,
    _data_window,
    _person_ids,
    diet_columns_shown,
    normalise,
    person_order,
    person_page_name,
    person_section_name,
)
from pipelines.reports.page_inputs import (
    PageInputs,
    PagePlan,
    person_page_inputs,
    person_section_inputs,
    reports_code_fingerprint,
    shared_page_inputs,
    shared_section_inputs,
)
from pipelines.reports.page_summary import PageSummary, summaries_frame, summaries_from
from pipelines.reports.pages.cohort import render_cohort
from pipelines.reports.pages.common import _global_quality
from pipelines.reports.pages.index import index_parts
from pipelines.reports.pages.person import render_person_page
from pipelines.reports.pages.section import render_person_section
from pipelines.reports.people import (
    _person_rows,
    _split_tables,
    build_summaries,
    page_table_groups,
    with_section_windows,
)
from pipelines.reports.sources import person_sources, run_time, source_status
from pipelines.reports.summaries import PersonSummary
from pipelines.reports.workers import (
    FIRST_GROUP_PEOPLE,
    RENDER_GROUP_PEOPLE,
    _PageJob,
    _pool_size,
    _render_people,
    shared_tables_parent,
)

__all__ = [
    "DashboardInputs",
    "PageInputs",
    "PagePlan",
    "PageSummary",
    "PersonGroups",
    "PersonSummary",
    "build_summaries",
    "diet_columns_shown",
    "finding_sentence",
    "person_page_inputs",
    "person_page_name",
    "person_section_inputs",
    "person_section_name",
    "render_person_page",
    "render_person_section",
    "reports_code_fingerprint",
    "run_time",
    "shared_page_inputs",
    "shared_section_inputs",
    "sufficiency_short",
    "summaries_frame",
    "summaries_from",
    "write_dashboards",
    "write_index_pages",
    "write_person_pages",
    "write_plotly_js",
]


def write_plotly_js(out_dir: Path) -> Path:
    """One shared copy of plotly.js; rewritten only when the bundled version changes.

    The file plotly's `get_plotlyjs()` reads, compared and copied a chunk at a time: as text it
    was held three times over (the text, its bytes and the old copy's), about 15 MB more in
    every dashboards step."""
    path = out_dir / PLOTLY_JS
    with as_file(files("plotly") / "package_data" / PLOTLY_JS) as bundled:
        if path.is_file() and filecmp.cmp(bundled, path, shallow=False):
            return path
        with bundled.open("rb") as src:
            atomic_write(path, iter(lambda: src.read(1 << 20), b""))
    return path


def _clean_out_dir(out_dir: Path, keep: set[str], owned: Collection[str] | None = None) -> None:
    """Drop the pages and section files of people no longer in the data, and temp files left by a
    crashed run (of both kinds: a temp file is named after the file it becomes).

    `owned` names the people whose files this run may drop (those of its person shards that had
    a page); None: every person file in the folder. Only names this module writes are touched,
    so other files in the folder are safe. Temp files younger than an hour may belong to a
    concurrent run and are left alone.
    """
    if owned is None:
        old = [
            p
            for pattern in ("*.html", f"*{SECTION_SUFFIX}")
            for p in out_dir.glob(PERSON_PREFIX + pattern)
        ]
    else:
        old = [out_dir / name(p) for p in owned for name in (person_page_name, person_section_name)]
    for path in old:
        if path.name not in keep:
            path.unlink(missing_ok=True)
    cutoff = time.time() - 3600
    for tmp in out_dir.glob(".*.tmp"):
        base = tmp.name[1:].split(".tmp")[0]
        ours = base.startswith((PERSON_PREFIX, INDEX, COHORT, PLOTLY_JS))
        try:
            if ours and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def write_dashboards(
    out_dir: Path,
    data: DashboardInputs,
    workers: int | None = None,
    render: Collection[str] | PagePlan | None = None,
) -> list[Path]:
    """Write index.html, one person page per person (person_<safe id>.html) with its section file
    beside it (person_<safe id>.lag.js: the findings and lag-window scan the page loads, see
    `pages.section`), cohort.html and the shared plotly.min.js into out_dir; return the written
    paths: `write_person_pages` for everyone, then `write_index_pages` from their summaries."""
    written, summaries = write_person_pages(out_dir, data, workers, render)
    return written + write_index_pages(out_dir, data, summaries)


def write_person_pages(
    out_dir: Path,
    data: DashboardInputs,
    workers: int | None = None,
    render: Collection[str] | PagePlan | None = None,
    owned: Collection[str] | None = None,
) -> tuple[list[Path], list[PageSummary]]:
    """Write the person pages and their section files of the people of `data`, and the shared
    plotly.min.js they load; return the written paths and every person's `PageSummary` (what
    the index and cohort page show of them, `write_index_pages`), in page order.

    `render` names the people whose pages and section files to render (None: everyone), or is
    the step's plan (`PagePlan`), handed each group's page and section inputs before the group
    is rendered (`page_inputs`, planned with `pipelines.incremental`), which says which pages
    and which section files to render. The others are kept as they are, unless missing: a
    nightly run re-renders the pages of the people with new data and the section files of those
    with new findings or draws, plus everyone's when something every page (or section) shows
    changes. A kept page is a consistent snapshot: its "N days before this run" count from the
    run time in its own footer. The files of people no longer in the data are removed (of the
    people `owned`, when given: a run of some person shards removes only theirs). Each file is
    written atomically, a section file before its page, so no page links to a file that does
    not exist yet.

    People are worked out and rendered RENDER_GROUP_PEOPLE at a time, read group by group when
    `data.people` is set. With PARALLEL_MIN_PAGES pages to render or more, of
    PARALLEL_MIN_PEOPLE people or more, person pages are rendered by `workers` processes
    (default: one per CPU; 1 renders here); the files are the same either way. They are
    spawned, so a script calling this needs the usual `if __name__ == "__main__":` guard.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = _with_window(data)
    now = run_time(d.run_info)
    ids = _person_ids(d)
    sources_by_person = person_sources(d, now)

    def rendering(group: list[str], tables: dict[str, pl.DataFrame]) -> Renders:
        """The group's pages and section files rendered: those asked for (or planned) and any
        that is missing (a first run, a deleted file, another output folder). Decided once per
        group, here: only their figures' data is worked out."""
        if callable(render):
            mine = {p: sources_by_person[p] for p in group if p in sources_by_person}
            chosen = render(group, person_page_inputs(tables, mine), person_section_inputs(tables))
        else:
            asked = None if render is None else frozenset(render)
            chosen = Renders(asked, asked)

        def with_missing(
            asked: Collection[str] | None, name: Callable[[str], str]
        ) -> frozenset[str] | None:
            if asked is None:
                return None
            return frozenset(p for p in group if p in asked or not (out_dir / name(p)).exists())

        return Renders(
            with_missing(chosen.pages, person_page_name),
            with_missing(chosen.sections, person_section_name),
        )

    # The tables the page workers map go to shared memory, else the system's temp folder (the
    # OS clears what a killed run leaves in either). The workers are shut down, and their mapped
    # tables closed, before the folder goes.
    with tempfile.TemporaryDirectory(
        prefix="gutsignal-pages-", dir=shared_tables_parent(), ignore_cleanup_errors=True
    ) as tmp:
        written = [write_plotly_js(out_dir)]
        sources = source_status(d, now)
        job = _PageJob(
            out_dir,
            d.run_info,
            d.rejected_summary,
            _global_quality(d, sources),
            frozenset(r["source"] for r in sources if r["stale"]),
        )
        groups = (
            (
                _person_rows(splits, group, sources_by_person),
                {n: s.df for n, s in splits.items()},
                chosen,
            )
            for group, tables in page_table_groups(d, ids, RENDER_GROUP_PEOPLE, FIRST_GROUP_PEOPLE)
            for chosen in [rendering(group, tables)]
            for splits in [_split_tables(d, chosen, with_section_windows(d, group, tables, chosen))]
        )
        results = _render_people(groups, job, Path(tmp), _pool_size(len(ids), workers))
    # `data.people` hands the people over in the order it reads them; theirs go out in page order.
    at = {pid: i for i, pid in enumerate(person_order(ids))}
    results.sort(key=lambda r: at[r.summary.person_id])
    written.extend(out_dir / name for r in results for name in r.written)
    _clean_out_dir(out_dir, {name for r in results for name in (r.page, r.section)}, owned)
    return written, [r.summary for r in results]


def write_index_pages(
    out_dir: Path, data: DashboardInputs, summaries: list[PageSummary]
) -> list[Path]:
    """Write cohort.html and index.html from everyone's `summaries` (in page order) and what
    `data` holds across everyone (the draws, the cohort findings, files, rejects, freshness);
    return their paths. The index is written last: it links to the pages written before."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = _with_window(data)
    sources = source_status(d, run_time(d.run_info))
    global_warnings = _global_quality(d, sources)
    cohort = out_dir / COHORT
    atomic_write(cohort, render_cohort(summaries, d, global_warnings))
    index = out_dir / INDEX
    atomic_write(index, index_parts(summaries, d, global_warnings, sources))
    return [cohort, index]


def _with_window(data: DashboardInputs) -> DashboardInputs:
    """`data` conformed (`normalise`), with the run's data window in its run info: every page's
    footer shows it."""
    d = normalise(data)
    if not d.run_info.get("data_window"):
        d.run_info["data_window"] = _data_window(d) or "unknown"
    return d
