"""HTML building blocks for the dashboards: escaping, formatting, labels, page shell, atomic writes.

Everything a page shows passes through `esc` (HTML) or `pesc` (Plotly text), because person ids,
food names, file paths and reasons are user text and a dashboard is opened in a browser.
Numbers are formatted here, once, so the index, person and cohort pages say the same thing the
same way. The bottom of the report flow: every page builder (`pages/`) and figure uses it.

Escaped text and raw HTML are `markupsafe.Markup`; a plain `str` is text. The page shell (a
Markup template), tables, cards and badges take Markup where they take HTML, so mypy refuses
unescaped text there; the places that wrap their own HTML in `Markup(...)` are where that trust
is decided.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache
from pathlib import Path
from typing import TypeGuard

from markupsafe import Markup

from pipelines.schema import CATEGORIES, NUTRIENTS

FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)

# Page-wide policy: no fetch/XHR/websocket, no remote fonts, images, frames or forms. Scripts are
# not restricted here because a strict script-src can refuse plotly.min.js on file:// pages in
# some browsers; we simply never emit a remote script.
CSP = (
    "connect-src 'none'; font-src 'none'; img-src data: blob:; media-src 'none'; "
    "frame-src 'none'; object-src 'none'; form-action 'none'; base-uri 'none'"
)

CSS = """
:root{--fg:#1f2933;--muted:#5f6b7a;--bg:#f5f7fa;--card:#fff;--line:#e1e6ed;--head:#1e3a5f;
--accent:#2457a6;--warn:#9a4a07;--warnbg:#fff7ed}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
"Noto Sans",sans-serif;color:var(--fg);background:var(--bg);line-height:1.5;font-size:15px}
a{color:var(--accent)}
header.top{background:var(--head);color:#fff;padding:14px 24px}
header.top a{color:#dbe7ff}
header.top .crumbs{font-size:.85rem;margin-bottom:2px}
header.top h1{font-size:1.45rem;margin:0;font-weight:650;word-break:break-word}
header.top .meta{font-size:.85rem;opacity:.85}
main{max-width:1200px;margin:0 auto;padding:12px 24px 32px}
h2{font-size:1.18rem;margin:30px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:1rem;margin:18px 0 6px}
p.lead{color:var(--muted);margin:4px 0 10px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px;
margin:12px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .label{font-size:.74rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.card .value{font-size:1.3rem;font-weight:650;margin:2px 0}
.card .sub{font-size:.84rem;color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card);font-size:.88rem;
border:1px solid var(--line);border-radius:8px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#edf1f6;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:hover td{background:#fafbfd}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.76rem;font-weight:600;
white-space:nowrap}
.c-low{background:#dcfce7;color:#14532d}.c-average{background:#fef3c7;color:#78350f}
.c-high{background:#fee2e2;color:#7f1d1d}.c-none{background:#e5e7eb;color:#374151}
.c-acute{background:#7f1d1d;color:#fff}
.s-significant{background:#d5f5ef;color:#0b4f49;border:1px solid #5eb8ab}
.s-not_significant{background:#eceff3;color:#3f4752}
.s-inconclusive{background:#fef3c7;color:#7c4a03}
.s-explained{background:#ede9fe;color:#4c1d95}
.s-insufficient_data{background:#f3f4f6;color:#6b7280;border:1px dashed #c7ccd3}
tr.row-significant td{background:#f3fbf9}
.caveat{display:inline-block;font-size:.76rem;color:#6b4e00;background:#fff8e1;border:1px solid
#f1d78a;border-radius:6px;padding:0 6px;margin-left:4px;white-space:nowrap}
.notice{background:#fff8e1;border:1px solid #f1d78a;border-radius:8px;padding:10px 14px;
margin:12px 0}
.warnlist{margin:4px 0;padding-left:18px;color:var(--warn)}
.ok{color:#166534}
.muted{color:var(--muted)}
.empty{color:var(--muted);font-style:italic;background:var(--card);border:1px dashed #c7ccd3;
padding:14px 16px;border-radius:8px;margin:8px 0}
.fig{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:4px;
margin:8px 0}
.finding{margin:6px 0;padding:8px 12px;background:var(--card);border-left:4px solid #5eb8ab;
border-radius:6px}
details{margin:8px 0}details>summary{cursor:pointer;color:var(--accent);font-weight:600}
footer{max-width:1200px;margin:0 auto;padding:14px 24px 30px;color:var(--muted);font-size:.82rem;
border-top:1px solid var(--line)}
footer dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}
footer dt{font-weight:600}footer dd{margin:0;word-break:break-word}
@media print{header.top{background:#fff;color:#000}.fig{break-inside:avoid}}
""".strip()

MARKER_LABELS: dict[str, str] = {
    "hscrp": "hs-CRP",
    "crp": "standard CRP",
    "esr": "ESR",
    "il6": "IL-6",
    "calprotectin": "Calprotectin",
    "ferritin": "Ferritin",
    "wbc": "WBC",
    "fibrinogen": "Fibrinogen",
    "tnf_alpha": "TNF-α",
    "albumin": "Albumin",
    "zonulin": "Zonulin",
}

MARKER_UNITS: dict[str, str] = {
    "hscrp": "mg/L",
    "crp": "mg/L",
    "esr": "mm/h",
    "il6": "pg/mL",
    "calprotectin": "µg/g",
    "ferritin": "ng/mL",
    "wbc": "10^3/µL",
}

# How a category reads inside a sentence ("per extra daily serving of <this>").
CATEGORY_NOUNS: dict[str, str] = {
    "fermented": "fermented food",
    "whole_grain": "whole grains",
    "legumes": "legumes",
    "vegetables": "vegetables",
    "fruit": "fruit",
    "nuts_seeds": "nuts and seeds",
    "oily_fish": "oily fish",
    "red_meat": "red meat",
    "processed_meat": "processed meat",
    "dairy": "dairy",
    "gluten_grains": "gluten grains",
    "added_sugar": "added-sugar foods",
    "alcohol": "alcoholic drinks",
    "ultra_processed": "ultra-processed food",
    "high_fodmap": "high-FODMAP food",
    "polyphenol_rich": "polyphenol-rich food",
    "refined_grains": "refined grains",
    "poultry": "poultry",
    "eggs": "eggs",
    "seafood": "other fish and seafood",
    "fats_oils": "fats and oils",
}

# Derived features that are neither a nutrient column nor a category: (axis label, noun in a
# sentence, the unit an effect is expressed per).
DERIVED_FEATURES: dict[str, tuple[str, str, str]] = {
    "dii": (
        "DII (score)",
        "Dietary Inflammatory Index (DII)",
        "per 1-point higher Dietary Inflammatory Index (DII)",
    ),
    "dii_window": (
        "DII of the window's mean intake",
        "DII of the window's mean intake",
        "per 1-point higher DII of the window's mean intake",
    ),
    "dii_no_alcohol": (
        "DII without alcohol",
        "DII without alcohol",
        "per 1-point higher DII without alcohol",
    ),
    "fiber_g_per_1000kcal": (
        "Fibre per 1000 kcal",
        "fibre per 1000 kcal",
        "per extra 1 g of fibre per 1000 kcal",
    ),
    "ultra_processed_energy_pct": (
        "Ultra-processed (% energy)",
        "energy from ultra-processed food",
        "per extra percentage point of energy from ultra-processed food",
    ),
}

UNIT_SUFFIXES: dict[str, str] = {"_g": "g", "_mg": "mg", "_ug": "µg", "_kcal": "kcal"}

# The parameters of the DII reference table (pipelines/data/dii_shivappa2014.csv; a test checks),
# and the features that are a DII: each is shown with how many of them it was computed from, as
# DIIs from different parameter sets are not comparable.
DII_PARAMETERS = 45
DII_FEATURES = frozenset({"dii", "dii_window", "dii_no_alcohol"})


def dii_params_text(counts: tuple[int, int] | list[int] | None) -> str:
    """'28 of 45 parameters', or '24-28 of 45 parameters' when days or people differ, from the
    fewest and most parameters behind the DIIs shown; '' when unknown."""
    if not counts:
        return ""
    lo, hi = int(counts[0]), int(counts[1])
    used = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"{used} of {DII_PARAMETERS} parameters"


STATUS_LABELS: dict[str, str] = {
    "significant": "significant after multiple testing",
    "not_significant": "not significant",
    "inconclusive": "cannot tell yet",
    "insufficient_data": "not enough data",
    "explained": "explained by co-occurring foods",
}

CATEGORY_LABELS: dict[str, tuple[str, str]] = {
    "<1": ("low", "c-low"),
    "1-3": ("average", "c-average"),
    ">3": ("high", "c-high"),
}

CAVEAT = "association, not causation"


def esc(value: object) -> Markup:
    """HTML-escape any value for element text or a quoted attribute.

    With `html.escape` (quotes as &quot; and &#x27;), not `markupsafe.escape` (&#34;, &#39;): the
    pages stay byte-identical to those written before. Beware `str + Markup`: markupsafe escapes
    the str side, so pieces are joined in f-strings or with "".join.
    """
    return Markup(esc_text(value))


def esc_text(value: object) -> str:
    """`esc` as a plain str, for code that joins many escaped pieces into one string of HTML and
    wraps that once (a Markup per piece cost as much as the escaping)."""
    return html.escape("" if value is None else str(value), quote=True)


def pesc(value: object) -> str:
    """Escape user text for Plotly labels, which render a subset of HTML tags (<a>, <b>, <br>).

    Plotly decodes &lt; &gt; &amp; back to characters when drawing, so the text shows literally.
    """
    return html.escape("" if value is None else str(value), quote=False)


def is_num(x: object) -> TypeGuard[int | float]:
    """True for a finite int/float (None, NaN and inf are 'not available')."""
    # A page asks this of ~2,000 values: a plain float or int is answered without the
    # isinstance checks (they cost more than the test itself); subclasses (numpy floats, bool)
    # take the general path.
    if type(x) is float or type(x) is int:
        return math.isfinite(x)
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# Half-up rather than banker's rounding, as people round, with precision for every digit of any
# double: an uninformative CI bound (a few draws, few degrees of freedom) can reach 1e30% and
# more, beyond the default context's 28 digits (the largest double has 309 digits before the
# point). One context for every call: a page formats thousands of percentages.
_PCT_CONTEXT = Context(prec=400, rounding=ROUND_HALF_UP)
_TENTH, _ONE = Decimal("0.1"), Decimal("1")


def fmt_pct(x: object, signed: bool = True) -> str:
    """A percentage with the precision a reader can use: 24%, -7%, +0.4%."""
    if not is_num(x):
        return "n/a"
    return _pct_text(float(x), signed)


# A page shows most of its percentages twice (a finding's sentence, its heatmap cell and hover)
# and rounds about a thousand: each distinct one is worked out once.
@lru_cache(maxsize=4096)
def _pct_text(v: float, signed: bool) -> str:
    if v == 0:
        return "0%"
    # One decimal below 10% (per-gram effects are small), whole numbers above; "7.0" reads as "7".
    step = _TENTH if abs(v) < 9.95 else _ONE
    text = str(Decimal(repr(abs(v))).quantize(step, context=_PCT_CONTEXT))
    text = text.removesuffix(".0")
    if text == "0":
        return "0%"
    sign = "-" if v < 0 else ("+" if signed else "")
    return f"{sign}{text}%"


def fmt_latest(value: object, censored: object) -> str:
    """A latest result as the lab reported it: "<5" for a result below the detection limit
    (stored as LOD/sqrt(2), see pipelines/analysis/draws.py), else `fmt_value`."""
    if censored == "<" and is_num(value):
        return "<" + fmt_value(float(value) * math.sqrt(2.0))
    return fmt_value(value)


def fmt_value(x: object) -> str:
    """A marker value with about two significant digits (0.45, 1.8, 24)."""
    if not is_num(x):
        return "n/a"
    v = float(x)
    if abs(v) < 1:
        return f"{v:.2f}"
    if abs(v) < 10:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_q(q: object) -> str:
    """A q- or p-value as people read them (0.03, 0.004, < 0.001)."""
    if not is_num(q):
        return "n/a"
    v = float(q)
    if v < 0.001:
        return "< 0.001"
    if v < 0.01:
        return f"{v:.3f}"
    return f"{v:.2f}"


def fmt_int(x: object) -> str:
    if not is_num(x):
        return "n/a"
    return f"{int(x):,}"


def marker_label(marker: object) -> str:
    m = "" if marker is None else str(marker)
    return MARKER_LABELS.get(m.lower(), m.upper() if m else "marker")


def marker_unit(marker: object) -> str:
    return MARKER_UNITS.get(("" if marker is None else str(marker)).lower(), "")


def _unit_of(column: str) -> str:
    for suffix, unit in UNIT_SUFFIXES.items():
        if column.endswith(suffix):
            return unit
    return ""


def feature_noun(feature: object) -> str:
    """What a feature is, as a noun phrase: 'fermented food', 'fibre', 'DII'."""
    return _feature_noun("" if feature is None else str(feature))


@lru_cache(maxsize=4096)
def _feature_noun(f: str) -> str:
    if f.endswith("_servings"):
        cat = f.removesuffix("_servings")
        return CATEGORY_NOUNS.get(cat, cat.replace("_", " "))
    if f in NUTRIENTS:
        name = NUTRIENTS[f]
        # Keep proper-noun-like names (Omega-3, Vitamin C) capitalised.
        return name if name.split()[0] in ("Omega-3", "Omega-6", "Vitamin") else name.lower()
    if f in DERIVED_FEATURES:
        return DERIVED_FEATURES[f][1]
    return f.replace("_", " ") or "feature"


def feature_label(feature: object) -> str:
    """A short axis label with the unit: 'Fermented food (servings/day)', 'Fibre (g/day)'."""
    return _feature_label("" if feature is None else str(feature))


@lru_cache(maxsize=4096)
def _feature_label(f: str) -> str:
    if f.endswith("_servings"):
        noun = feature_noun(f)
        return f"{noun[:1].upper()}{noun[1:]} (servings/day)"
    if f in NUTRIENTS:
        unit = _unit_of(f)
        return f"{NUTRIENTS[f]} ({unit}/day)" if unit else NUTRIENTS[f]
    if f in DERIVED_FEATURES:
        return DERIVED_FEATURES[f][0]
    text = f.replace("_", " ")
    return f"{text[:1].upper()}{text[1:]}" if text else "feature"


def per_unit_phrase(feature: object, per_unit: object = None) -> str:
    """'per extra daily serving of fermented food': the unit the effect is expressed per."""
    if isinstance(per_unit, str) and per_unit.strip():
        text = per_unit.strip()
        return text if text.startswith("per ") else f"per {text}"
    f = "" if feature is None else str(feature)
    if f.endswith("_servings"):
        return f"per extra daily serving of {feature_noun(f)}"
    if f in NUTRIENTS:
        unit = _unit_of(f)
        if unit:
            return f"per extra 1 {unit}/day of {feature_noun(f)}"
        return f"per unit of {feature_noun(f)}"
    if f in DERIVED_FEATURES:
        return DERIVED_FEATURES[f][2]
    return f"per unit of {feature_noun(f)}"


@lru_cache(maxsize=4096)
def feature_order(feature: str) -> tuple[int, str]:
    """Sort key that puts the headline gut features first, then categories, then nutrients."""
    headline = ["fermented_servings", "fiber_g", "ultra_processed_servings", "dii"]
    if feature in headline:
        return (headline.index(feature), feature)
    derived = ["ultra_processed_energy_pct", "dii_window", "dii_no_alcohol", "fiber_g_per_1000kcal"]
    if feature in derived:
        return (4 + derived.index(feature), feature)
    if feature.endswith("_servings") and feature.removesuffix("_servings") in CATEGORIES:
        return (10 + CATEGORIES.index(feature.removesuffix("_servings")), feature)
    if feature in NUTRIENTS:
        return (100 + list(NUTRIENTS).index(feature), feature)
    return (1000, feature)


def badge(text: str, css_class: str) -> Markup:
    return Markup(f'<span class="badge {esc(css_class)}">{esc(text)}</span>')


def status_badge(status: object) -> Markup:
    return _status_badge("" if status is None else str(status))


@lru_cache(maxsize=256)
def _status_badge(s: str) -> Markup:
    return badge(STATUS_LABELS.get(s, s or "unknown"), f"s-{s}" if s in STATUS_LABELS else "c-none")


def category_badge(category: object, acute: bool = False) -> Markup:
    """hs-CRP cardiovascular-risk category (AHA/CDC: <1 low, 1-3 average, >3 high)."""
    if acute:
        return badge("acute (>10 mg/L)", "c-acute")
    if isinstance(category, str) and category in CATEGORY_LABELS:
        word, css = CATEGORY_LABELS[category]
        return badge(f"{word} ({category} mg/L)", css)
    return badge("no category yet", "c-none")


_CAVEAT_HTML = f'<span class="caveat">{esc(CAVEAT)}</span>'


def caveat() -> str:
    return _CAVEAT_HTML


def empty(message: str) -> str:
    return f'<div class="empty">{esc(message)}</div>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Markup]],
    num_cols: Iterable[int] = (),
    row_classes: Sequence[str] | None = None,
) -> Markup:
    """A table from pre-rendered cell HTML (callers escape their cells); headers are text."""
    return table_around(headers, table_rows(rows, num_cols, row_classes))


def table_around(headers: Sequence[str], body: Markup) -> Markup:
    """A table of `headers` (text) around `body`, its rows' HTML (`table_rows`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return Markup(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def table_rows(
    rows: Iterable[Sequence[Markup]],
    num_cols: Iterable[int] = (),
    row_classes: Sequence[str] | None = None,
) -> Markup:
    """The rows of `table`, apart: a long table's rows can be written a part at a time."""
    nums = set(num_cols)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="num">{c}</td>' if j in nums else f"<td>{c}</td>" for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return Markup("".join(body))


# No HTML at all: the default of the optional HTML arguments.
NO_HTML = Markup()


def card(label: str, value_html: Markup, sub_html: Markup = NO_HTML) -> Markup:
    sub = f'<div class="sub">{sub_html}</div>' if sub_html else ""
    return Markup(
        f'<div class="card"><div class="label">{esc(label)}</div>'
        f'<div class="value">{value_html}</div>{sub}</div>'
    )


def footer(run_info: dict[str, str], fallback_window: str | None) -> Markup:
    """Provenance: data window, run time, code version and upstream assets travel with the page."""
    known = [
        ("Data window", run_info.get("data_window") or fallback_window or "unknown"),
        ("Run at", run_info.get("run_at") or "unknown"),
        ("Code version", run_info.get("code_version") or "unknown"),
        ("Upstream assets", run_info.get("upstream") or "unknown"),
    ]
    extra = [
        (k.replace("_", " ").capitalize(), v)
        for k, v in sorted(run_info.items())
        if k not in ("data_window", "run_at", "code_version", "upstream")
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in known + extra)
    return Markup(
        "<footer>"
        f"<dl>{items}</dl>"
        "<div>Generated by gutsignal. Results are associations, not causation, and are meant to "
        "start a conversation with a clinician, not to diagnose. This page works offline and makes "
        "no network requests.</div>"
        "</footer>"
    )


# The page shell, as a template: Markup.format escapes whatever is formatted into it unless it is
# Markup already. The title goes in through `esc`, whose quotes (&quot;) are the bytes the pages
# have always had (markupsafe's own escape writes &#34;).
_PAGE = Markup(
    "<!DOCTYPE html>\n"
    '<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<meta http-equiv="Content-Security-Policy" content="{csp}">'
    '<meta name="referrer" content="no-referrer">'
    "<title>{title}</title>"
    "<style>{css}</style>"
    '<script src="plotly.min.js"></script>'
    "</head><body>"
    '<header class="top">{heading}</header>'
    '<main><div id="plotly-missing" class="notice" hidden>The charts need the file '
    "plotly.min.js in the same folder as this page. Keep the dashboards folder together "
    "when you copy or share it.</div>"
    '<script>if(typeof Plotly==="undefined"){{'
    'document.getElementById("plotly-missing").hidden=false;}}</script>'
    "{body}</main>{footer}</body></html>\n"
)


def page(title: str, heading_html: Markup, body_html: Markup, footer_html: Markup) -> str:
    """A complete page: inline CSS, relative plotly.min.js, no external resources. The title is
    text; the heading, body and footer are HTML."""
    return str(
        _PAGE.format(
            csp=esc(CSP),
            title=esc(title),
            css=Markup(CSS),
            heading=heading_html,
            body=body_html,
            footer=footer_html,
        )
    )


def atomic_write(
    path: Path, data: str | bytes | Iterable[str] | Iterable[bytes], durable: bool = True
) -> None:
    """Write to a temp file next to `path`, then rename over it.

    os.replace is atomic on one filesystem, so a reader (or a crash) sees the old page or the new
    page, never half of one. `durable` also waits for the bytes to reach the disk before the
    rename; a caller writing many files may skip that and sync once after all of them. `data`
    may come in parts (text or bytes), each written as it comes: a page of megabytes need not be
    held whole, nor encoded whole.
    """
    parts = [data] if isinstance(data, str | bytes) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part.encode("utf-8") if isinstance(part, str) else part)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
