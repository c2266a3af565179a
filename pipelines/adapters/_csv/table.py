"""A CSV file read as strings (`CsvTable`), and finding its columns by header.

What every CSV adapter works on once a file is read (`read`) or several are stacked (`batch`):
one frame of cells with each row's line and raw text, and header matching that forgives case,
spacing, `µ`/`u` and units in parentheses (`CsvTable.find` / `CsvTable.require`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.adapters.base import FILE_INDEX, AdapterError
from pipelines.config import SourceConfig

LINE = "__line"
RAW = "__raw"
EXTRA = "__extra"


def cell(index: int) -> str:
    """The frame column holding the cells of header position `index`."""
    return f"c{index}"


def header_key(name: str) -> str:
    """A header reduced to what identifies it: no case, no whitespace, `µ`/`μ`/`mcg` as `u`/`ug`."""
    key = name.replace("\ufeff", "").lower().replace("µ", "u").replace("μ", "u")
    key = re.sub(r"\s+", "", key)
    return key.replace("mcg", "ug")


def _base_key(name: str) -> str:
    """`header_key` without parenthesised parts, so `Result (mg/L)` matches `Result`."""
    return header_key(re.sub(r"\([^)]*\)", "", name))


@dataclass(frozen=True)
class CsvTable:
    """One CSV file read as strings.

    `frame` has one column per header position (`cell(i)`: stripped text, null when blank) plus
    LINE (1-based physical line where the row starts), RAW (the row's text as in the file) and
    EXTRA (text of fields beyond the header's width, null when there are none). Blank lines and
    rows whose cells are all blank are not in it: they are not data.

    A table made by `stack_tables` holds several files: `files` maps each FILE_INDEX value found in
    `frame` to its file, and `path` is the first of them.
    """

    path: Path
    source: SourceConfig
    headers: tuple[str, ...]
    delimiter: str
    frame: pl.DataFrame
    files: Mapping[int, Path] | None = None

    @property
    def rows_read(self) -> int:
        return self.frame.height

    def find(self, names: Sequence[str]) -> int | None:
        """The position of the first header matching one of `names`, or None.

        An exact match (ignoring case, spaces, `µ` vs `u`) on any name wins over a match that
        ignores parenthesised units, so `Result` finds `Result (mg/L)` only if there is no
        plain `Result`. Not for nutrient columns, where the unit in parentheses matters.
        """
        keys = [header_key(h) for h in self.headers]
        for name in names:
            if header_key(name) in keys:
                return keys.index(header_key(name))
        bases = [_base_key(h) for h in self.headers]
        for name in names:
            base = _base_key(name)
            if base and base in bases:
                return bases.index(base)
        return None

    def require(self, names: Sequence[str], hint: str) -> int:
        """Like `find`, but a missing column is an AdapterError naming the file and the column."""
        found = self.find(names)
        if found is None:
            wanted = " or ".join(repr(n) for n in names)
            have = ", ".join(repr(h) for h in self.headers) or "none"
            raise AdapterError(
                f"{self.path}: required column {wanted} not found (columns in the file: {have}). "
                f"{hint}"
            )
        return found

    def mapped(
        self, defaults: Mapping[str, Sequence[str]], required: Sequence[str] = ()
    ) -> dict[str, int]:
        """Column position per field of a generic format: the header `columns:` in sources.yaml
        maps the field to (it must exist), else the first of the field's `defaults` found. A
        `required` field found neither way is an AdapterError saying how to map it."""
        source = self.source
        found: dict[str, int] = {}
        for key, names in defaults.items():
            if key in source.columns:
                found[key] = self.require(
                    [source.columns[key]],
                    f"Source {source.name!r} maps {key} to it (columns: in sources.yaml); fix the "
                    "name there or in the file.",
                )
                continue
            index = self.find(names)
            if index is None and key in required:
                self.require(
                    names,
                    f"Name the column holding {key} with 'columns: {{{key}: <header>}}' for "
                    f"source {source.name!r} in sources.yaml.",
                )
            if index is not None:
                found[key] = index
        return found


def file_index_schema(frame: pl.DataFrame) -> dict[str, pl.DataType | type[pl.DataType]]:
    """{FILE_INDEX: Int64} when `frame` stacks several files, else {}: what a transform adds to its
    output schemas so one code path serves a single file and a stack."""
    return {FILE_INDEX: pl.Int64} if FILE_INDEX in frame.columns else {}


def per_file(frame: pl.DataFrame) -> list[str]:
    """[FILE_INDEX] when `frame` stacks several files, else []: put in front of every key that must
    stay within one file (a per-file group, a join or sort on LINE, a duplicate check), so a
    transform's per-file logic gives a stack what it gives each file alone."""
    return [FILE_INDEX] if FILE_INDEX in frame.columns else []


def per_distinct(values: pl.Series, derive: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
    """`derive` applied to `values` (as its column), worked out once per distinct value and
    joined back: for columns such as a diary's days or amounts, which repeat, parsing text with
    regexes and formats costs far more than the join."""
    name = values.name
    distinct = values.unique().to_frame()
    derived = distinct.with_columns(derive(pl.col(name)).alias("__derived"))
    return (
        values.to_frame()
        .join(derived, on=name, how="left", nulls_equal=True, maintain_order="left")
        .get_column("__derived")
    )
