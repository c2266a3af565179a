"""Turning a figure into the HTML a page embeds (`figure_html`), without plotly.js: pages load the
shared plotly.min.js. Used by every page slot that shows a figure (`pages.common._fig`).
"""

from __future__ import annotations

from typing import Any

import plotly.io as pio

from pipelines.reports.figures.base import Fig

# No "Edit in Chart Studio"/logo links, nothing that could phone home.
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


def figure_html(fig: Fig, div_id: str) -> str:
    """Embed a figure without plotly.js (pages load the shared plotly.min.js).

    A fixed div id keeps re-runs on the same data byte-identical. Plotly's JSON encoder escapes
    "</" (as \\u003c\\u002f) so text cannot close the surrounding <script> tag. Figures are
    plain dicts built by this package, so plotly's validation is skipped.
    """
    height = int(fig.get("layout", {}).get("height") or 450)
    out: str = pio.to_html(
        fig,
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        config=CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{height}px",
    )
    return out


def _json_engine() -> str:
    """The engine plotly.io encodes figure JSON with, which the page key records (the bytes
    depend on it): "auto" is orjson, installed with this project; "json" when a user sets
    plotly.io.json.config.default_engine so."""
    engine = str(pio.json.config.default_engine)
    return "orjson" if engine == "auto" else engine
