"""Turning a figure into the HTML a page embeds (`figure_html`), without plotly.js: pages load the
shared plotly.min.js. Used by every page slot that shows a figure (`pages.common._fig`).
"""

from __future__ import annotations

import json
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

# What plotly.io.to_html writes: the config with the standard library's encoder (its spaces
# included), the data and layout with orjson (NaN as null, numpy arrays as lists), then with
# the characters that could end the <script> element or a JavaScript line written as \u escapes.
_CONFIG_JSON = json.dumps(CONFIG)
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SCRIPT_UNSAFE = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("/", "\\u002f"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _script_json(value: Any) -> str:
    """`value` as JSON that is safe inside <script>, byte for byte as plotly.io writes it."""
    out = orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    for unsafe, escaped in _SCRIPT_UNSAFE:
        if unsafe in out:
            out = out.replace(unsafe, escaped)
    return out


def figure_html(fig: Fig, div_id: str) -> str:
    """Embed a figure without plotly.js (pages load the shared plotly.min.js).

    The markup is plotly.io.to_html's (full_html=False, include_plotlyjs=False, width 100%,
    the layout's height or 450 px), its whitespace included, written here: figures are plain
    dicts built by this package, so plotly's validation and its encoder's fallbacks were work
    for nothing. A fixed div id keeps re-runs on the same data byte-identical.
    """
    height = int(fig.get("layout", {}).get("height") or 450)
    return (
        f'<div style="height:{height}px; width:100%;">                            '
        f'<div id="{div_id}" class="plotly-graph-div" style="height:100%; width:100%;"></div>'
        "            <script>                window.PLOTLYENV=window.PLOTLYENV || {};"
        f'                                if (document.getElementById("{div_id}")) {{'
        f'                    Plotly.newPlot(                        "{div_id}",'
        f"                        {_script_json(fig.get('data', []))},"
        f"                        {_script_json(fig.get('layout', {}))},"
        f"                        {_CONFIG_JSON}"
        "                    )                };            </script>        </div>"
    )


def _json_engine() -> str:
    """The engine figure JSON is encoded with, which the page key records (the bytes depend on
    it): orjson, always (`figure_html` calls it directly)."""
    return "orjson"
