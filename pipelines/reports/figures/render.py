"""Turning a figure into the HTML a page embeds (`figure_html`), without plotly.js: pages load the
shared plotly.min.js. Used by every page slot that shows a figure (`pages.common._fig`).
"""

from __future__ import annotations

from typing import Any

import orjson

from pipelines.reports.figures.base import Fig

# No "Edit in Chart Studio"/logo links, nothing that could phone home.
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
_CONFIG_JSON = orjson.dumps(CONFIG).decode()

# NaN as null, numpy arrays as lists: what plotly.js reads.
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# The characters that could end a <script> element, written as \u escapes.
FIGURE_ESCAPES = (b"<", b">", b"/")


def script_json(value: Any, escapes: tuple[bytes, ...], option: int | None = None) -> str:
    """`value` as JSON to put inside <script>: the ASCII characters `escapes` and the line
    separators U+2028 and U+2029 (which end a line of older JavaScript) as \\u escapes.

    The ASCII ones are replaced in orjson's bytes, the separators in the text: a str with any
    non-ASCII character (a page's "·", "√", "–") is searched several times slower than bytes,
    but a str whose characters all lie below U+2028 is known not to hold one without a search.
    """
    data = orjson.dumps(value, option=option)
    for char in escapes:
        if char in data:
            data = data.replace(char, b"\\u%04x" % ord(char))
    text = data.decode()
    for separator in ("\u2028", "\u2029"):
        if separator in text:
            text = text.replace(separator, f"\\u{ord(separator):04x}")
    return text


def figure_html(fig: Fig, div_id: str, plot: bool = True) -> str:
    """Embed a figure without plotly.js (pages load the shared plotly.min.js): a div of the
    layout's height (450 px by default) and one `Plotly.newPlot` call; without the call when
    `plot` is false (a person page's section file draws its figures itself, see
    `pages.section`).

    Figures are plain dicts built by this package, so they are serialised as they are, without
    plotly.py's validation. A fixed div id keeps re-runs on the same data byte-identical.
    """
    height = int(fig.get("layout", {}).get("height") or 450)
    if plot:
        data = script_json(fig.get("data", []), FIGURE_ESCAPES, JSON_OPTIONS)
        layout = script_json(fig.get("layout", {}), FIGURE_ESCAPES, JSON_OPTIONS)
        draw = f'<script>Plotly.newPlot("{div_id}", {data}, {layout}, {_CONFIG_JSON});</script>'
    else:
        draw = ""
    return (
        f'<div style="height:{height}px; width:100%;">'
        f'<div id="{div_id}" class="plotly-graph-div" style="height:100%; width:100%;"></div>'
        f"{draw}</div>"
    )
