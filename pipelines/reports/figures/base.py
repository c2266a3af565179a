"""What every figure shares: the small template, colours and log ticks, layout and panel helpers,
and the rounding of values (the JSON inside a page is the page's size, so values are rounded to
a few significant digits before plotting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from pipelines.reports.html import (
    FONT_STACK,
    is_num,
)

Fig = dict[str, Any]

_AXIS = {
    "gridcolor": "#edf0f4",
    "linecolor": "#b8c1cc",
    "zeroline": False,
    "showline": True,
    "automargin": True,
}

# A tiny template instead of plotly's default: the default is ~6 kB of JSON per figure.
TEMPLATE: dict[str, Any] = {
    "layout": {
        "font": {"family": FONT_STACK, "size": 13, "color": "#1f2933"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": ["#2457a6", "#d9480f", "#0f766e", "#7048e8", "#c2255c", "#5c940d", "#e67700"],
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"align": "left"},
        "title": {"x": 0.01, "xanchor": "left", "font": {"size": 16}},
        "margin": {"l": 64, "r": 24, "t": 64, "b": 48},
    }
}

BAND_FILL = {
    "<1": "rgba(34,197,94,0.13)",
    "1-3": "rgba(234,179,8,0.17)",
    ">3": "rgba(239,68,68,0.12)",
}

LOG_TICKS = [0.1, 0.3, 1, 3, 10, 30, 100, 300]


def _r(x: object, digits: int = 3) -> float | None:
    """Round to `digits` significant digits (values near zero keep 2 decimals)."""
    if not is_num(x):
        return None
    v = float(x)
    if v == 0:
        return 0
    out = round(v, max(2, digits - 1 - math.floor(math.log10(abs(v)))))
    # 2 rather than 2.0: whole servings are common and every character is page weight.
    return int(out) if out.is_integer() and abs(out) < 1e15 else out


# Exact powers of ten as doubles (10**22 is the largest one a double holds exactly).
_POW10 = np.array([float(10**k) for k in range(23)])


def _r_many(values: np.ndarray | pl.Series | Sequence[float | None], digits: int = 3) -> list[Any]:
    """`_r` of every value (None and NaN read as missing), as a list of the same shape (a 2-D
    array gives a list of rows): `_r_array` as lists."""
    return _r_array(values, digits).tolist()  # type: ignore[no-any-return]


def _r_array(
    values: np.ndarray | pl.Series | Sequence[float | None], digits: int = 3
) -> np.ndarray:
    """`_r` of every value (None and NaN read as missing), as an array of Python objects of the
    same shape (for a caller that places them in a grid: a list would be turned back into one).

    A page rounds thousands of values (a calendar is every day of every food group), too many
    for `_r` one by one: the values `_r` rounds unambiguously are rounded in numpy, the rest by
    `_r` itself. Each element is exactly what `_r` gives (same value, same int/float type), so
    the JSON text is the same (tested on ties, powers of ten, huge, tiny and random values).

    How: whole numbers stay as they are
    (`_r` rounds to at least 2 decimals). Otherwise `round(v, nd)` is the double nearest to the
    decimal obtained by rounding the exact v at nd decimals; numpy reproduces it when v * 10**nd
    (one rounding, error under 2**-13 below 2**40) is far from a .5 tie, 10**nd is exact
    (nd <= 22) and N / 10**nd is one correctly rounded division. log10 is only trusted away from
    integers (numpy's and libm's may differ by an ulp). Near-ties, values near powers of ten and
    huge or tiny magnitudes go through `_r`.
    """
    a = np.asarray(values, dtype=np.float64)
    shape, a = a.shape, a.ravel()
    with np.errstate(all="ignore"):
        finite = np.isfinite(a)
        whole_in = finite & (a == np.floor(a))
        lg = np.log10(np.abs(a))
        nd = np.maximum(2.0, (digits - 1) - np.floor(lg))
        ok = finite & ~whole_in & (np.abs(lg - np.rint(lg)) > 1e-9) & (nd <= 22)
        scale = _POW10[np.where(ok, nd, 0).astype(np.intp)]
        y = a * scale
        ok &= (np.abs(y) < 2.0**40) & (np.abs(y - np.floor(y) - 0.5) > 1e-3)
        res = np.where(whole_in, a, np.rint(y) / scale)
        ok |= whole_in
        whole = ok & (res == np.floor(res)) & (np.abs(res) < 1e15)
    # Whole numbers as Python ints: an object array takes them in one assignment.
    out = res.astype(object)
    out[whole] = res[whole].astype(np.int64)
    out[~finite] = None
    for i in np.flatnonzero(~ok & finite).tolist():
        out[i] = _r(float(a[i]), digits)
    return out.reshape(shape)


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {"template": TEMPLATE, "title": {"text": title}, "height": height, **extra}


def _panel_title(text: str, x: float, y: float) -> dict[str, Any]:
    """A subplot title as make_subplots draws it: centred just above the panel."""
    return {
        "text": text,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14},
    }


def _hband(y0: float, y1: float, color: str, xname: str = "x", yname: str = "y") -> dict[str, Any]:
    """A full-width band; shapes on log axes take data values (plotly converts them)."""
    return {
        "type": "rect",
        "xref": f"{xname} domain",
        "x0": 0,
        "x1": 1,
        "yref": yname,
        "y0": y0,
        "y1": y1,
        "fillcolor": color,
        "line": {"width": 0},
        "layer": "below",
    }
