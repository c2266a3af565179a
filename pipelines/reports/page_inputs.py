"""What the person pages and their section files are built from, for the dashboards step's plan
(`pipelines.incremental`).

A person page shows the person's own rows of the page tables (`people._page_tables`), their
sources' freshness, and a context every page shares. The step gets both: per group of people
rendered, the group's tables (`person_page_inputs`, each with a person_id; the step fingerprints
every person's rows in DuckDB, as every other step does) and, once, the shared context as one
string (`shared_page_inputs`, the plan's salt: when it changes, every page is rendered).
A page's section file (findings and lag-window scan, `pages.section`) is planned the same way
from its own, fewer inputs (`person_section_inputs`, `shared_section_inputs`): a new diary day
renders the page again, not the section file. Nothing here reads a page or a section file back:
which to render is decided from the inputs alone.

What moves with the clock is left out, so a night on which nobody's data changed renders no
person page: the run's time and data window in the footer, source ages, a source's newest file
(other people's syncs move it) and the dates and day counts inside freshness texts. A page kept
from an earlier run therefore shows those as of the run that wrote it (its footer says which).
Whether a source is stale is included, for the cohort (shared) and per person (their own).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import plotly
import polars as pl

from pipelines.fingerprint import fingerprint
from pipelines.reports.inputs import DashboardInputs, Renders, normalise
from pipelines.reports.pages.common import _global_quality
from pipelines.reports.sources import run_time, source_status

# Dates and day counts in freshness texts move with the clock and with other people's data.
_CLOCK_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d+ days\b")

# A person's sources as their page shows them, less the clock (see the module docstring).
SOURCES_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "source": pl.String,
    "latest_day": pl.Date,
    "stale": pl.Boolean,
    "demo": pl.Boolean,
    "reasons": pl.String,
}


def _unclocked(text: str) -> str:
    return _CLOCK_TEXT.sub("#", text)


@cache
def reports_code_fingerprint() -> str:
    """A hash of this package and of the library versions whose output is in the pages."""
    here = Path(__file__).resolve().parent
    # Polars (the frames pages are built from), plotly (the plotly.min.js shipped beside the pages)
    # and orjson (the figures' JSON).
    versions = [pl.__version__, plotly.__version__, orjson.__version__]
    # Every module of the package, subpackages included, and the page templates: a page builder,
    # a figure or a template's text changes pages.
    return fingerprint(sorted([*here.rglob("*.py"), *here.rglob("*.html")]), *versions)


@dataclass(frozen=True)
class PageInputs:
    """Per person: their rows of every table their page shows (`tables`, each with a person_id)
    and of every table their section file shows (`sections`); for everyone: a hash of what every
    person page shares (`shared`) and of what every section file shares (`sections_shared`)."""

    tables: dict[str, pl.DataFrame]
    shared: str
    sections: dict[str, pl.DataFrame]
    sections_shared: str


# The step's plan, handed each group's people, page inputs (`person_page_inputs`) and section
# inputs (`person_section_inputs`) before the group is rendered: the people of the group whose
# pages and whose section files to render.
PagePlan = Callable[[list[str], dict[str, pl.DataFrame], dict[str, pl.DataFrame]], Renders]

# The page tables (`people._page_tables`) only a person's section file shows: the complete
# exposure windows behind the lag-heatmap cells.
_SECTION_ONLY = ("windows",)
# What a section file is built from, of the page tables: the findings (its table, heatmaps and
# the cells' titles), the draws (the points and fits behind the cells, with the windows) and the
# range of DII parameters the findings' sentences quote (`summaries.dii_params_ranges`). Its
# windows are not among them: the dashboards step reads a group's windows only for the section
# files it renders (`PersonGroups.windows`), and its plan fingerprints everyone's in the
# warehouse instead (`pipelines.steps.pages.plan_pages`).
_SECTION_TABLES = ("findings", "draws", "dii_params")


def person_section_inputs(page_tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """What each section file of a group is built from, of the group's page tables, but the
    windows (see `_SECTION_TABLES`)."""
    return {name: page_tables[name] for name in _SECTION_TABLES}


def person_page_inputs(
    page_tables: dict[str, pl.DataFrame], sources: dict[str, list[dict[str, Any]]]
) -> dict[str, pl.DataFrame]:
    """What each person page of a group is built from: the group's page tables
    (`people._page_tables`) but those only the section file shows, and its people's sources
    (`sources`, theirs of `person_sources`)."""
    # "crp" is the draws again, sorted: fingerprinting "draws" covers it.
    tables = {
        name: df for name, df in page_tables.items() if name != "crp" and name not in _SECTION_ONLY
    }
    tables["sources"] = person_sources_frame(sources)
    return tables


def person_sources_frame(sources: dict[str, list[dict[str, Any]]]) -> pl.DataFrame:
    """People's sources (`person_sources`) as their pages show them, less the clock: one row
    per person and source (`SOURCES_SCHEMA`)."""
    return pl.DataFrame(
        [
            {
                "person_id": pid,
                "source": r["source"],
                "latest_day": r["latest_day"],
                "stale": r["stale"],
                "demo": r["demo"],
                "reasons": "\n".join(_unclocked(x) for x in r["reasons"]),
            }
            for pid, rows in sources.items()
            for r in rows
        ],
        schema=SOURCES_SCHEMA,
    )


def shared_page_inputs(data: DashboardInputs, out_dir: Path) -> str:
    """A hash of what every person page shares, as `write_dashboards` builds it from `data`."""
    d = normalise(data)
    sources = source_status(d, run_time(d.run_info))
    shared = {
        "code": reports_code_fingerprint(),
        # A stale source is a warning on every page (and not repeated per person).
        "stale": sorted(r["source"] for r in sources if r["stale"]),
        "warnings": [_unclocked(w) for w in _global_quality(d, sources)],
        "rejected": d.rejected_summary.to_dicts(),
        # The footer, less the run's time and its data window (moved by anyone's new day).
        "footer": {k: v for k, v in d.run_info.items() if k not in ("run_at", "data_window")},
        "pseudonymise": d.pseudonymise_cohort,
        "demo": sorted(d.demo_sources),
        # Pages written into another folder are not the ones this plan knows about.
        "out_dir": str(Path(out_dir).resolve()),
    }
    text = json.dumps(shared, default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shared_section_inputs(out_dir: Path) -> str:
    """A hash of what every section file shares: the code that renders it and its folder. The
    rest of what every page shares (warnings, rejected rows, the footer) is not in it."""
    shared = {"code": reports_code_fingerprint(), "out_dir": str(Path(out_dir).resolve())}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()
