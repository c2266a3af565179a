"""One rule engine for rejecting rows, shared by the adapters (`split_rejects` in
`pipelines/adapters/_csv/checks.py`), the lab mapping (`normalise_lab_rows`) and the plausibility
rules (`apply_plausibility`).

A rule is a `Check`. A row is rejected for its FIRST failing check, in the order given: the reject
carries that check's column, reason and value. Everything is a Polars expression, so a frame is
checked in one pass however many rules there are.

Core: imports nothing from the pipeline, so every layer above may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Check:
    """One validation rule: rows where `failed` is True are rejected with `column` and `reason`.

    `reason` is a stable category, the same text for every row it rejects (never the cell: one
    bad setting must give one reason with a count, not one reason per value); `value` is the
    offending cell, kept in the reject's own `value` column (None: no single cell is to blame).
    """

    failed: pl.Expr
    column: str | None
    reason: pl.Expr
    value: pl.Expr | None = None


def first_failing(checks: Sequence[Check]) -> pl.Expr:
    """The position in `checks` of the first check a row fails, null when it passes them all (a
    null `failed` counts as passing)."""
    return pl.coalesce(
        [pl.when(c.failed.fill_null(False)).then(pl.lit(i)) for i, c in enumerate(checks)]
    )


def pick(index: pl.Expr, exprs: Sequence[pl.Expr | None]) -> pl.Expr:
    """`exprs[i]` for rows whose `index` is i; null (String) where `index` is null or the entry is
    None.

    `index` should be a materialised column (`first_failing` stored with `with_columns`):
    repeating `first_failing` inside every branch would make the expression grow with the square
    of the number of checks.
    """
    out: pl.Expr = pl.lit(None, dtype=pl.String)
    for i, expr in reversed(list(enumerate(exprs))):
        if expr is not None:
            out = pl.when(index == i).then(expr).otherwise(out)
    return out


def reject_fields(checks: Sequence[Check], index: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(column, reason, value as text) of the check each row failed first, for rows whose `index`
    column holds `first_failing(checks)`; all null for rows that passed."""
    column = pick(index, [pl.lit(c.column, dtype=pl.String) for c in checks])
    reason = pick(index, [c.reason for c in checks])
    value = pick(index, [None if c.value is None else c.value.cast(pl.String) for c in checks])
    return column, reason, value
