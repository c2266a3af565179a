"""Plotly figures for the dashboards, built from small Polars frames: one module per figure.

Figures are plain Plotly JSON dicts rather than `go.Figure` objects: plotly.py validates every
property assignment, which made a page cost ~50 ms and a 3,000-person cross-sectional cohort
minutes. The structure is what `make_subplots` would produce; plotly.js applies the template.

Each function returns a figure or None when there is nothing to draw, so pages can say "no data
yet" instead of showing an empty axis. Values are rounded and diet is aggregated to weeks before
plotting: the JSON inside the page is the page's size. User text reaching a figure goes through
`pesc` because Plotly renders a subset of HTML in labels.
"""

from pipelines.reports.figures.cell_scatter import (
    CELL_SCRIPT,
    SCATTER_LAYOUT,
    cell_data,
    cell_fits,
    cell_key,
    cell_points,
    cell_scatter_data,
)
from pipelines.reports.figures.forest import forest_plot
from pipelines.reports.figures.heatmap import lag_heatmap
from pipelines.reports.figures.intake_calendar import category_calendar
from pipelines.reports.figures.logging_coverage import coverage_calendar
from pipelines.reports.figures.outcomes import (
    axis_sync_script,
    outcome_panel,
    outcome_points,
    page_span,
)
from pipelines.reports.figures.render import figure_html
from pipelines.reports.figures.small_multiples import crp_small_multiples
from pipelines.reports.figures.timeline import crp_timeline

__all__ = [
    "CELL_SCRIPT",
    "SCATTER_LAYOUT",
    "axis_sync_script",
    "category_calendar",
    "cell_data",
    "cell_fits",
    "cell_key",
    "cell_points",
    "cell_scatter_data",
    "coverage_calendar",
    "crp_small_multiples",
    "crp_timeline",
    "figure_html",
    "forest_plot",
    "lag_heatmap",
    "outcome_panel",
    "outcome_points",
    "page_span",
]
