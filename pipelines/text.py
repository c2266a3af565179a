"""Text helpers of the core, shared by the adapters and the transforms: reading a number from a
cell (`number`) and building a reject reason or other text from cells (`format_text`).

Core: imports nothing from the pipeline, so every layer above may use it.
"""

from __future__ import annotations

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

# A plain number: what `number` reads by Polars' float parser (tests hold it to this pattern).
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
    s = pl.when(expr != "").then(expr)
    # A plain number is one Polars' own parser reads to a finite value: it reads exactly the
    # shapes of _NUMBER (ASCII digits, an optional point, an optional exponent) and otherwise
    # only "nan", "inf" and "infinity", which are not finite, nor is an overflow ("1e999"). So
    # no regex runs on the usual cell, where one per nutrient cell was much of a diary's parse.
    if decimal == ".":
        plain_value = s.cast(pl.Float64, strict=False)
    else:
        # "1.5" would parse, but with decimal "," it is no plain number.
        with_comma = pl.when(~s.str.contains(".", literal=True)).then(s)
        plain_value = with_comma.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    plain = plain_value.is_finite().fill_null(False)
    # Thousands separators only for the cells that are not plain numbers: the regex and the
    # replacements then skip (as nulls) the usual column where every cell is plain.
    rest = pl.when(~plain).then(s)
    grouped = rest.str.contains(_GROUPED[decimal])
    # replace_many rather than replace_all: both go through the cells a null hides, and
    # replace_many costs less on them (the usual column, where every cell is plain).
    separators = {thousands: ""} if decimal == "." else {thousands: "", ",": "."}
    grouped_text = rest.str.replace_many(list(separators), list(separators.values()))
    grouped_value = grouped_text.cast(pl.Float64, strict=False)
    # No measurement is infinite: a grouped number of hundreds of digits overflows, too.
    value = (
        pl.when(plain)
        .then(plain_value)
        .when(grouped & grouped_value.is_finite())
        .then(grouped_value)
    )
    return value, s.is_not_null() & value.is_null()
