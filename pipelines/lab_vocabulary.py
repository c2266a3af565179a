"""The lab vocabulary of the core, shared by the lab adapters and the lab transforms: the CRP
markers, how a lab writes a censored result ("<0.3", ">= 150") and a reference range ("0.0-3.0").

Which test names and codes are which marker, and the units, are data (`pipelines/data/markers.csv`
and `units.csv`, read by `pipelines.transforms.labs`).

Core: imports only the core's text helpers, so every layer above may use it.
"""

from __future__ import annotations

import polars as pl

from pipelines.text import number

# hs-CRP and standard CRP are two markers, never pooled (pipelines/transforms/labs.py).
HSCRP, CRP = "hscrp", "crp"
CRP_MARKERS = (HSCRP, CRP)

# A result with a comparator: group 1 the comparator, group 2 the number after it.
CENSORED = r"^(<=|>=|=<|=>|<|>|≤|≥)\s*(.*)$"
# Comparators of a lower bound (censored ">"); every other comparator is an upper bound ("<").
LOW_BOUND = (">", ">=", "=>", "≥")


def reference_range(expr: pl.Expr, decimal: str) -> tuple[pl.Expr, pl.Expr]:
    """(low, high) from "0.0-3.0", "<3.0", "<=3.0", ">=40" or ">40"; null where not given.

    A reference range is context, not a result: one that cannot be read leaves the limits null
    rather than rejecting the row. Trailing text such as a unit is ignored.
    """
    low_text, high_text = reference_range_text(expr)
    low, _ = number(low_text, decimal)
    high, _ = number(high_text, decimal)
    return low, high


def reference_range_text(expr: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The (low, high) limits of a reference range as written, for `number`: `reference_range` in
    two steps, so a caller can compute these columns first. `number` reads its input several
    times, and each read of these expressions runs their regexes again."""
    num = r"([+-]?[0-9][0-9.,]*|[.,][0-9]+)"
    dash = r"\s*(?:-|–|—|to)\s*"
    between = expr.str.extract_groups(rf"^\s*{num}{dash}{num}")
    below = expr.str.extract(rf"^\s*(?:<=?|=<|≤)\s*{num}", 1)
    above = expr.str.extract(rf"^\s*(?:>=?|=>|≥)\s*{num}", 1)
    return pl.coalesce(between.struct.field("1"), above), pl.coalesce(
        between.struct.field("2"), below
    )
