"""NHANES variable table (pipelines/data/nhanes_variables.csv) and which tables a file holds.

The middle step of the `nhanes_xpt` adapter: after xport.py has read the file, select_tables
decides from its variables which NHANES tables of the source's kind to read; nhanes_xpt.py then
turns those variables into canonical rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from pipelines.adapters.base import AdapterError
from pipelines.config import SourceConfig
from pipelines.schema import (
    NUTRIENTS,
)
from pipelines.transforms.labs import LabTableError, lab_tables

VARIABLES_TABLE = Path(__file__).resolve().parent.parent / "data" / "nhanes_variables.csv"

KNOWN_OPTIONS = ("table",)
PERSON_COLUMNS = ("age", "sex", "weight", "stratum", "psu", "race_eth", "income_poverty")


@dataclass(frozen=True)
class Variable:
    """One row of nhanes_variables.csv."""

    table: str
    kind: str
    variable: str
    column: str
    unit: str
    factor: float
    loinc: str | None
    lod_flag: str | None
    lod: float | None


class NhanesTableError(ValueError):
    """nhanes_variables.csv is malformed."""


@cache
def nhanes_variables() -> tuple[Variable, ...]:
    """Load and check pipelines/data/nhanes_variables.csv (once per process)."""
    try:
        table = pl.read_csv(VARIABLES_TABLE, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise NhanesTableError(f"{VARIABLES_TABLE}: cannot be read: {exc}") from exc
    required = ("table", "kind", "variable", "column", "unit", "factor", "loinc", "lod_flag", "lod")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise NhanesTableError(f"{VARIABLES_TABLE}: missing column(s) {missing}")
    try:
        markers = set(lab_tables().canonical_units)
    except LabTableError as exc:
        raise NhanesTableError(str(exc)) from exc
    allowed = {"labs": markers, "persons": set(PERSON_COLUMNS), "diet": set(NUTRIENTS)}
    out: list[Variable] = []
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(table.iter_rows(named=True), start=2):
        where = f"{VARIABLES_TABLE}, line {line}"
        cells = {k: (row[k] or "").strip() for k in required}
        kind, column = cells["kind"], cells["column"]
        if not cells["table"] or not cells["variable"]:
            raise NhanesTableError(f"{where}: table and variable are required")
        if kind not in allowed:
            raise NhanesTableError(f"{where}: kind {kind!r} is not one of {sorted(allowed)}")
        if column not in allowed[kind]:
            raise NhanesTableError(f"{where}: {column!r} is not a known {kind} column or marker")
        key = (cells["table"].upper(), cells["variable"].upper())
        if key in seen:
            raise NhanesTableError(f"{where}: {key[1]} is listed twice for table {key[0]}")
        seen.add(key)
        try:
            factor = float(cells["factor"] or 1)
            lod = float(cells["lod"]) if cells["lod"] else None
        except ValueError:
            raise NhanesTableError(f"{where}: factor and lod must be numbers") from None
        if not factor > 0:
            raise NhanesTableError(f"{where}: factor must be positive")
        out.append(
            Variable(
                table=key[0],
                kind=kind,
                variable=key[1],
                column=column,
                unit=cells["unit"],
                factor=factor,
                loinc=cells["loinc"] or None,
                lod_flag=cells["lod_flag"].upper() or None,
                lod=lod,
            )
        )
    return tuple(out)


def _table_key(name: str) -> str:
    """An NHANES file stem as nhanes_variables.csv names it: HSCRP_J -> HSCRP, P_HSCRP -> HSCRP."""
    key = name.strip().upper()
    key = re.sub(r"^P_", "", key)
    return re.sub(r"_[A-Z]$", "", key)


def select_tables(
    path: Path, source: SourceConfig, frame: pl.DataFrame
) -> dict[str, list[Variable]]:
    """The tables of the source's kind to read from this file, with their variables present."""
    unknown = sorted(set(source.options) - set(KNOWN_OPTIONS))
    if unknown:
        raise AdapterError(
            f"{path}: source {source.name!r} has unknown option(s) {unknown} for format "
            f"nhanes_xpt; known options: {list(KNOWN_OPTIONS)}."
        )
    if source.columns:
        raise AdapterError(
            f"{path}: source {source.name!r} sets 'columns', which nhanes_xpt does not use: it "
            "maps NHANES variables by name (pipelines/data/nhanes_variables.csv). Remove it."
        )
    try:
        variables = nhanes_variables()
    except NhanesTableError as exc:
        raise AdapterError(f"{path}: cannot map NHANES variables: {exc}") from exc
    present = {c.upper() for c in frame.columns}
    tables: dict[str, list[Variable]] = {}
    for v in variables:
        tables.setdefault(v.table, [])
        if v.variable in present:
            tables[v.table].append(v)
    kinds = {v.table: v.kind for v in variables}
    of_kind = [t for t in tables if kinds[t] == source.kind]

    forced = source.options.get("table")
    if forced is not None:
        key = _table_key(str(forced))
        if key not in of_kind:
            raise AdapterError(
                f"{path}: source {source.name!r}, option 'table': {forced!r} is not an NHANES "
                f"table of kind {source.kind} (known: {of_kind})."
            )
        if not tables[key]:
            wanted = sorted({v.variable for v in variables if v.table == key})
            raise AdapterError(
                f"{path}: has none of the variables of NHANES table {key} ({', '.join(wanted)}); "
                f"variables in the file: {listing(frame.columns)}."
            )
        return {key: tables[key]}

    found = {t: tables[t] for t in of_kind if tables[t]}
    if not found:
        wanted = [
            f"{t}: {', '.join(v.variable for v in variables if v.table == t)}"
            if sum(v.table == t for v in variables) <= 3
            else f"{t}: {', '.join([v.variable for v in variables if v.table == t][:3])}, ..."
            for t in of_kind
        ]
        other = sorted({kinds[t] for t, vs in tables.items() if vs and kinds[t] != source.kind})
        hint = (
            f" It looks like a {' / '.join(other)} file: check the source's kind."
            if other
            else " Is it the right file for this source?"
        )
        raise AdapterError(
            f"{path}: source {source.name!r} (kind {source.kind}) found none of the NHANES "
            f"variables it reads ({'; '.join(wanted)}); variables in the file: "
            f"{listing(frame.columns)}.{hint}"
        )
    return found


def listing(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "") or "none"
