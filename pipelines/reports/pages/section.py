"""A person page's section file: the findings and the lag-window scan (its heatmaps, the data
behind each cell's scatter, each cell's title), written beside the page as person_<id>.lag.js
(`render_person_section`) and loaded by it with a plain <script src> (`section_slots`).

Why a file of its own: the findings and the lag scan are over half of what rendering a person
page costs and about 40% of its bytes, and they depend only on the person's findings, their
complete exposure windows and draws, and the range of DII parameters their sentences quote. A
night that adds a diary day and no lab draw changes none of these, so the dashboards step
rewrites the page (timeline, calendars, cards) and keeps the section file; its plan fingerprints
the section's inputs apart from the page's (`page_inputs.person_section_inputs`).

Why a script: pages are opened from file://, where a page may load a sibling script (as it loads
plotly.min.js) but not fetch a file. The file is one call, `gutsignalSection({...})`, whose
argument is JSON: the two sections' HTML (escaped as the page escapes it), the heatmaps to draw
and the cells' blob (`figures.cell_data`). The page defines the function (`SECTION_SCRIPT`): it
puts the HTML into the page's two slots, draws the heatmaps and the first cell's scatter, and
hooks the clicks, so the page looks and behaves as if the sections were written into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from pipelines.reports import figures
from pipelines.reports.figures.render import CONFIG, JSON_OPTIONS, script_json
from pipelines.reports.findings import _findings_block, _sentences, finding_sentence
from pipelines.reports.html import (
    empty,
    esc,
    feature_label,
    is_num,
    marker_label,
    marker_unit,
    pesc,
)
from pipelines.reports.inputs import person_section_name
from pipelines.reports.pages.common import _piece
from pipelines.reports.summaries import PersonSummary, _marker_order

FINDINGS_SLOT = "findings-section"
LAG_SLOT = "lag-section"

# Defined by the page before it loads its section file, which calls it. The HTML is the page's
# own escaped HTML (no script runs from innerHTML); the figures go to Plotly as data.
SECTION_SCRIPT = (
    "function gutsignalSection(S) {\n"
    f'  document.getElementById("{FINDINGS_SLOT}").innerHTML = S.findings;\n'
    f'  document.getElementById("{LAG_SLOT}").innerHTML = S.lag;\n'
    '  if (typeof Plotly === "undefined") return;\n'
    "  S.figures.forEach(function (f) { Plotly.newPlot(f.id, f.data, f.layout, S.config); });\n"
    "  if (S.cells) gutsignalCells(S.cells);\n"
    "}\n" + figures.CELL_SCRIPT
)


def section_slots(person_id: str) -> tuple[Markup, Markup, Markup]:
    """The page's side: the findings slot, the lag-scan slot (each saying where its content
    comes from until the section file fills it) and the scripts that load the file, to go after
    both slots."""
    name = esc(person_section_name(person_id))
    note = _piece("section_note")
    return (
        Markup(f'<div id="{FINDINGS_SLOT}">') + note(name) + Markup("</div>"),
        Markup(f'<div id="{LAG_SLOT}">') + note(name) + Markup("</div>"),
        Markup(f'<script>{SECTION_SCRIPT}</script><script src="{name}"></script>'),
    )


def _cell_title(
    row: dict[str, Any], label: str, sentence: Callable[[dict[str, Any]], str] = finding_sentence
) -> str:
    """A heatmap cell's scatter title as Plotly text: the feature and window, then the finding.

    `label` is the row's feature label, escaped with `pesc`."""
    w = row.get("window_days")
    when = f"previous {int(w)} days" if is_num(w) else "no window"
    return f"<b>{label} · {when}</b><br><span style='font-size:12px'>{pesc(sentence(row))}</span>"


def _lag_scan(
    s: PersonSummary, sentence: Callable[[dict[str, Any]], str]
) -> tuple[Markup, list[dict[str, Any]], dict[str, Any] | None]:
    """The lag-window heatmaps of a person: their slots' HTML, the figures to draw into them,
    and the data behind their cells (`figures.cell_data`)."""
    parts: list[str] = []
    plots: list[dict[str, Any]] = []
    markers = sorted(
        {str(r.get("marker")) for r in s.findings if r.get("marker")}, key=_marker_order
    )
    if not markers:
        parts.append(empty("No associations tested for this person yet."))
    cell_maps: dict[str, dict[str, Any]] = {}
    for k, m in enumerate(markers):
        # The findings as dicts, made once for the findings table: filtering the frame and
        # converting its rows again (for the heatmap, then for its cells) repeated that work.
        rows = [r for r in s.findings if r.get("marker") == m]
        fig = figures.lag_heatmap(rows, f"{marker_label(m)}: % change per unit, by exposure window")
        if fig is None:
            parts.append(empty(f"No estimable associations for {marker_label(m)} yet."))
            continue
        parts.append(_piece("fig")(Markup(figures.figure_html(fig, f"lag-{k}", plot=False))))
        plots.append({"id": f"lag-{k}", "data": fig.get("data", []), "layout": fig["layout"]})
        # A feature's label is the same in each of its windows' titles: escaped once.
        labels = {f: pesc(feature_label(f)) for f in {r["feature"] for r in rows}}
        cells = figures.cell_scatter_data(
            rows,
            s.cell_points,
            s.cell_fits,
            m,
            marker_label(m),
            marker_unit(m),
            {
                figures.cell_key(r["feature"], r["window_days"]): _cell_title(
                    r, labels[r["feature"]], sentence
                )
                for r in rows
                if r["feature"] is not None
            },
            f"scatter-{k}",
            s.initial_cells.get(m, ""),
        )
        if cells is None:
            parts.append(
                empty(
                    f"No {marker_label(m)} draw has a complete window yet, so there are no "
                    "points to plot behind the cells."
                )
            )
            continue
        cell_maps[f"lag-{k}"] = cells
        parts.append(_piece("scatter_slot")(f"scatter-{k}", figures.SCATTER_LAYOUT["height"]))
    # Figure slots, empty notes (escaped by `empty`) and scatter divs with numbers only.
    return Markup("".join(parts)), plots, figures.cell_data(cell_maps)


def render_person_section(s: PersonSummary) -> str:
    """A person's section file (person_<id>.lag.js): their findings and lag-window scan, as the
    call the page's `SECTION_SCRIPT` answers."""
    # Each finding's sentence is shown in the findings table and again as its cell's title:
    # worked out once.
    sentence = _sentences(s.findings, s.dii_params)
    lag, plots, cells = _lag_scan(s, sentence)
    payload = {
        # HTML built by findings.py, which escapes every sentence in it.
        "findings": _findings_block(s.findings, "this person", sentence),
        "lag": str(lag),
        "figures": plots,
        "config": CONFIG,
        "cells": cells,
    }
    # Loaded as a script file, not inside <script> in HTML: "<" and "/" need no escape, so the
    # HTML in it stays readable.
    return f"gutsignalSection({script_json(payload, (), JSON_OPTIONS)});\n"
