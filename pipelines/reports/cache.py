"""The incremental page cache: the key of what a person page shows (`person_page_key`, written to
the .pages.json manifest), the kept sections of a page (findings and lag scan, wrapped in comments
with the key of their inputs, `page_sections`), and the fingerprint of this package and of the
library versions whose output is in the pages (`reports_code_fingerprint`). A page or section
whose key is unchanged is not rendered again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import plotly
import polars as pl

from pipelines.fingerprint import fingerprint
from pipelines.reports.figures.render import _json_engine
from pipelines.reports.inputs import DashboardInputs
from pipelines.reports.summaries import PersonSummary

# Sections of a person page that are copied from the page's previous version when what they show
# is unchanged: the findings and the lag scan, about half of a page's rendering, depend on the
# person's draws and associations only, so a night that adds a diet day keeps them. Each is
# wrapped in comments naming it and the key of its inputs; user text is escaped and JSON has "<"
# as \u003c, so the end comment cannot occur inside a section.
_SECTION_START = "<!--gs:"
_SECTION_HEAD = re.compile(r"([a-z]+) ([0-9a-f]{64})")


def _section(name: str, key: str, html: str) -> str:
    return f"{_SECTION_START}{name} {key}-->{html}<!--/gs:{name}-->"


def page_sections(html: str) -> dict[str, tuple[str, str]]:
    """The kept sections of a written person page: name -> (key, html).

    Found with str.find: a regular expression over a page of a few hundred kB took longer.
    """
    out: dict[str, tuple[str, str]] = {}
    at = html.find(_SECTION_START)
    while at >= 0:
        head_end = html.find("-->", at)
        head = _SECTION_HEAD.fullmatch(html, at + len(_SECTION_START), max(head_end, 0))
        if head is None:
            break
        close = f"<!--/gs:{head.group(1)}-->"
        end = html.find(close, head_end)
        if end < 0:
            break
        out[head.group(1)] = (head.group(2), html[head_end + 3 : end])
        at = html.find(_SECTION_START, end + len(close))
    return out


def _kept(
    kept: dict[str, tuple[str, str]], names: tuple[str, ...], key: str
) -> tuple[str, ...] | None:
    """The named sections' html from the previous page when all have this key, else None."""
    found = [kept.get(n) for n in names]
    if all(f is not None and f[0] == key for f in found):
        return tuple(f[1] for f in found if f is not None)
    return None


def _section_key(s: PersonSummary, names: tuple[str, ...]) -> str:
    """A hash of the named summary fields, this code and the Polars version (see
    `person_page_key`); unique when a field cannot be hashed, so the section is built."""
    digest = hashlib.sha256(reports_code_fingerprint().encode())
    try:
        for name in names:
            _hash_value(digest, s, name, getattr(s, name))
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return hashlib.sha256(str(time.time_ns()).encode()).hexdigest()
    return digest.hexdigest()


PAGES_MANIFEST = ".pages.json"  # person page -> person_page_key of its current content
# Dates and day counts in freshness texts move with the clock and with other people's data.
_CLOCK_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d+ days\b")
# Source-wide facts on a person page that change whenever anyone syncs, or every day.
_CLOCK_FIELDS = ("file_age", "data_age", "newest_file_at")


def _unclocked(text: str) -> str:
    return _CLOCK_TEXT.sub("#", text)


# Summary fields worked out from other fields (n_findings and significant from findings_df, trend
# from trends, crp from all_draws, row_hashes from the frames): hashing those covers them.
_DERIVED_FIELDS = frozenset({"trend", "crp", "n_findings", "significant", "row_hashes"})


def person_page_key(s: PersonSummary, d: DashboardInputs, global_warnings: list[str]) -> str:
    """A hash of what a person page shows, leaving out what moves with the clock.

    Included: the person's summary (frames row by row, everything else as JSON), the stale flags
    of their sources, the warnings, the rejected-row table, the footer's code version and the
    version of this code and of Polars (whose row hashes are stable only within a version).
    Left out: the run's time and data window, source ages, the source-wide newest file, and the
    dates and day counts inside freshness warnings. A page kept from an earlier run therefore
    shows those as of the run that wrote it (its footer says which), and it is rendered again when
    anything of the person's own changes or a source turns stale or fresh. Anything that cannot be
    hashed makes the key unique, so the page is rendered: when in doubt, render.
    """
    digest = hashlib.sha256(reports_code_fingerprint().encode())
    try:
        for f in fields(s):
            if f.name in _DERIVED_FIELDS:
                continue
            value = getattr(s, f.name)
            if f.name == "sources":
                value = [
                    {
                        **{k: v for k, v in r.items() if k not in _CLOCK_FIELDS},
                        "reasons": [_unclocked(x) for x in r["reasons"]],
                    }
                    for r in value
                ]
            if f.name == "warnings":
                value = [_unclocked(w) for w in value]
            _hash_value(digest, s, f.name, value)
        rejected = d.rejected_summary
        digest.update(repr(rejected.schema).encode())
        if rejected.height:
            digest.update(rejected.hash_rows().to_numpy().tobytes())
    except (TypeError, ValueError, KeyError, pl.exceptions.PolarsError):
        return f"unhashable-{time.time_ns()}"
    digest.update(json.dumps([_unclocked(w) for w in global_warnings]).encode())
    footer_info = {k: v for k, v in d.run_info.items() if k not in ("run_at", "data_window")}
    digest.update(json.dumps(footer_info, sort_keys=True).encode())
    return digest.hexdigest()


def _hash_value(digest: Any, s: PersonSummary, name: str, value: object) -> None:
    """Feed a field of `s` to a hash: a frame row by row (with its schema), else as JSON.

    A frame's row hashes are kept on `s`: the page key and the section keys share them.
    """
    digest.update(name.encode() + b"\0")
    if isinstance(value, pl.DataFrame):
        known = s.row_hashes
        if name not in known:
            rows = value.hash_rows().to_numpy().tobytes() if value.height else b""
            known[name] = repr(value.schema).encode() + rows
        digest.update(known[name])
    else:
        digest.update(json.dumps(value, default=str, sort_keys=True).encode())


@cache
def reports_code_fingerprint() -> str:
    here = Path(__file__).resolve().parent
    # The libraries whose output is in the pages: Polars (row hashes), plotly (its HTML around
    # each figure) and orjson (the figures' JSON).
    versions = [pl.__version__, plotly.__version__, orjson.__version__, _json_engine()]
    # Every module of the package, subpackages included: a page builder or a figure changes pages.
    return fingerprint(sorted(here.rglob("*.py")), *versions)


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no manifest (or a damaged one): every page is rendered
    return loaded if isinstance(loaded, dict) else {}


def _old_sections(path: Path) -> dict[str, tuple[str, str]]:
    try:
        return page_sections(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}  # no page yet, or an unreadable one: every section is built
