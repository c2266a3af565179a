"""Offline HTML dashboards: Polars frames in, self-contained pages out (see `write_dashboards`)."""

from pipelines.reports.dashboards import (
    DashboardInputs,
    finding_sentence,
    person_page_name,
    person_section_name,
    write_dashboards,
)

__all__ = [
    "DashboardInputs",
    "finding_sentence",
    "person_page_name",
    "person_section_name",
    "write_dashboards",
]
