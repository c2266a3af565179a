"""Turning a figure into the HTML a page embeds (`figure_html`), without plotly.js: pages load the
shared plotly.min.js. The fast path writes the same text as `plotly.io.to_html` from its own
template and JSON engine; a figure it cannot encode takes plotly's path. Used by every page slot
that shows a figure (`pages.common._fig`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import orjson
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
    "</" (as \\u003c\\u002f) so text cannot close the surrounding <script> tag.
    """
    height = int(fig.get("layout", {}).get("height") or 450)
    fast = _fast_figure_html(fig, div_id, f"{height}px")
    if fast is not None:
        return fast
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


# `figure_html` without plotly.io's per-call overhead: the same text, from the same template.
# Plotly encodes with orjson when it is installed (a dependency: five times faster than json on
# the pages' figure data), else with json.dumps plus a `default` for non-JSON types and a second
# pass when the text has NaN or Infinity. The fast path encodes as plotly's engine does; a figure
# it cannot encode (frames, types that need plotly's cleaning, NaN under json) takes plotly's path.
_JSON = json.JSONEncoder(separators=(",", ":"))
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# Characters plotly.io escapes in its JSON, so that it can sit inside a <script> element.
_SWAP_JSON: tuple[tuple[str, str], ...] = (("<", "\\u003c"), (">", "\\u003e"), ("/", "\\u002f"))
_SWAP_ORJSON = (*_SWAP_JSON, ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_SLOTS = ("@@data@@", "@@layout@@", "@@id@@", "@@width@@", "@@height@@")


@lru_cache(maxsize=1)
def _figure_template() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """pio.to_html's text for our options, cut at the figure's own parts: (text pieces, the
    index in _SLOTS of the part that follows each piece but the last)."""
    data, layout, div_id, width, height = _SLOTS
    text: str = pio.to_html(
        {"data": data, "layout": {"width": width, "height": height}},
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        config=CONFIG,
        div_id=div_id,
    )
    engine = _json_engine()
    text = text.replace(_plotly_json(data, engine) or "", data)
    text = text.replace(_plotly_json({"width": width, "height": height}, engine) or "", layout)
    pieces, order = [], []
    while True:
        found = [(text.find(slot), k) for k, slot in enumerate(_SLOTS) if slot in text]
        if not found:
            pieces.append(text)
            break
        at, k = min(found)
        pieces.append(text[:at])
        order.append(k)
        text = text[at + len(_SLOTS[k]) :]
    return tuple(pieces), tuple(order)


def _json_engine() -> str:
    """The engine plotly.io encodes with: "auto" is orjson, which is installed with this
    project; "json" when a user sets plotly.io.json.config.default_engine so."""
    engine = str(pio.json.config.default_engine)
    return "orjson" if engine == "auto" else engine


def _plotly_json(obj: object, engine: str) -> str | None:
    """plotly.io.json.to_json_plotly(obj, engine=engine), or None when that needs plotly."""
    try:
        if engine == "orjson":
            text = orjson.dumps(obj, option=_ORJSON_OPTIONS).decode()
            swaps = _SWAP_ORJSON
        else:
            text = _JSON.encode(obj)
            if "NaN" in text or "Infinity" in text:
                return None
            swaps = _SWAP_JSON
    except (TypeError, ValueError):
        return None
    for unsafe, safe in swaps:
        if unsafe in text:
            text = text.replace(unsafe, safe)
    return text


def _css_size(value: Any) -> str:
    """A div size as plotly.io writes it: numbers in px, anything else as it is."""
    try:
        float(value)
    except (ValueError, TypeError):
        return str(value)
    return f"{value}px"


def _fast_figure_html(fig: Fig, div_id: str, default_height: str) -> str | None:
    layout = fig.get("layout", {})
    engine = _json_engine()
    if not isinstance(layout, dict) or fig.get("frames") or engine not in ("json", "orjson"):
        return None
    template = layout.get("template", {})
    template_layout = template.get("layout", {}) if isinstance(template, dict) else None
    if not isinstance(template_layout, dict):
        return None
    data_json = _plotly_json(fig.get("data", []), engine)
    layout_json = _plotly_json(layout, engine)
    if data_json is None or layout_json is None:
        return None
    width = layout.get("width", template_layout.get("width", "100%"))
    height = layout.get("height", template_layout.get("height", default_height))
    parts = (data_json, layout_json, div_id, _css_size(width), _css_size(height))
    pieces, order = _figure_template()
    out = [pieces[0]]
    for k, piece in zip(order, pieces[1:], strict=True):
        out.append(parts[k])
        out.append(piece)
    return "".join(out)
