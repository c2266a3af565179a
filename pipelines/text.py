"""Text helpers of the core, shared by the adapters and the transforms: reading a number from a
cell (`number`) and building a reject reason or other text from cells (`format_text`).

Core: imports nothing from the pipeline, so every layer above may use it.
"""

from __future__ import annotations

import math

import polars as pl

SHOWN_CHARS = 200


def format_text(template: str, *args: pl.Expr | str) -> pl.Expr:
    """Like `pl.format(template, *args)` (each "{}" takes the next argument; a null argument makes
    the result null), built on `pl.concat_str`, and with each argument cut to SHOWN_CHARS
    characters ("..." marks the cut): a text quoting a cell must not grow to 1 MB with a 1 MB
    cell (the whole row stays in `raw`).

    Polars 1.44's `pl.format` panics ("assertion failed: i < self.len()", a Rust panic that no
    `except Exception` catches) on frames whose columns are chunked differently after a filter,
    which hostile input reached (three rows of the same person in a covariates file). Every reason
    text in the adapters and transforms is built with this instead.
    """
    pieces = template.split("{}")
    if len(pieces) != len(args) + 1:
        raise ValueError(f"format_text: {template!r} needs {len(pieces) - 1} argument(s)")
    exprs: list[pl.Expr] = []
    for i, piece in enumerate(pieces):
        if piece:
            exprs.append(pl.lit(piece, dtype=pl.String))
        if i < len(args):
            arg = args[i]
            text = (pl.col(arg) if isinstance(arg, str) else arg).cast(pl.String)
            exprs.append(
                pl.when(text.str.len_chars() > SHOWN_CHARS)
                .then(pl.concat_str([text.str.slice(0, SHOWN_CHARS), pl.lit("...")]))
                .otherwise(text)
            )
    return pl.concat_str(exprs)


# ---- numbers -------------------------------------------------------------------------------------

_NUMBER = {
    ".": r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$",
    ",": r"^[+-]?(?:[0-9]+(?:,[0-9]*)?|,[0-9]+)(?:[eE][+-]?[0-9]+)?$",
}
# Thousands separators are accepted only in well-formed groups; "0.300" with decimal "," is not
# three hundred, it is a cell in the wrong convention, and gets rejected rather than guessed.
_GROUPED = {
    ".": r"^[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?$",
    ",": r"^[+-]?[1-9][0-9]{0,2}(?:\.[0-9]{3})+(?:,[0-9]+)?$",
}


def number(expr: pl.Expr, decimal: str) -> tuple[pl.Expr, pl.Expr]:
    """(value, invalid) for a string expression, honouring the decimal separator.

    value is Float64, null for blank and invalid cells; invalid is True for a non-blank cell that
    is not a plain, finite number written with ASCII digits ("abc", "1.5" when decimal is ",",
    "nan", "1e999", "١٢٣"). Cells are expected as the adapters' `read_csv_table` gives them:
    stripped, blank as null (an empty string also counts as blank).
    """
    thousands = "," if decimal == "." else "."
    s = expr.replace("", None)
    plain = s.str.contains(_NUMBER[decimal])
    # Thousands separators only for the cells that are not plain numbers: the regex and the
    # replacements then skip (as nulls) the usual column where every cell is plain.
    rest = pl.when(~plain).then(s)
    grouped = rest.str.contains(_GROUPED[decimal])
    grouped_text = rest.str.replace_all(thousands, "", literal=True)
    if decimal == ".":
        plain_value = s.cast(pl.Float64, strict=False)
    else:
        plain_value = s.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
        grouped_text = grouped_text.str.replace(",", ".", literal=True)
    parsed = (
        pl.when(plain)
        .then(plain_value)
        .when(grouped)
        .then(grouped_text.cast(pl.Float64, strict=False))
    )
    # "1e999" is written like a number but overflows to infinity: no measurement is infinite.
    # The patterns admit no "nan" or "inf", so an overflow is the only value that is not finite.
    value = parsed.replace([math.inf, -math.inf], None)
    return value, s.is_not_null() & value.is_null()
