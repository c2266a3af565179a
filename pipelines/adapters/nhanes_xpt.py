"""NHANES SAS transport files (format `nhanes_xpt`): CRP and WBC, demographics, recall totals.

NHANES publishes one SAS transport (XPORT version 5, `.XPT`) file per topic and survey cycle, one
record per participant, keyed by `SEQN`. This module reads XPORT v5 itself (a small vectorised
reader, `read_xport`: IBM floating point to IEEE with NumPy), so it needs neither pandas nor
pyreadstat; a file that is not XPORT v5 is an AdapterError naming the file.

What a file holds is detected from its variables, using `pipelines/data/nhanes_variables.csv`
(table, kind, variable, canonical column or marker, unit, ...). The table names there are NHANES
file stems without the cycle suffix (`HSCRP` for HSCRP_J.XPT, `DR1TOT` for DR1TOT_J.XPT). Every
table of the source's kind whose variables appear in the file is read; `options: {table: HSCRP}`
(a cycle suffix such as `HSCRP_J` or prefix `P_` is accepted) reads only that table.

- kind `labs` (lab_results): `LBXHSCRP` (hs-CRP, mg/L, LOINC 30522-7), `LBXCRP` (CRP 1999-2010,
  mg/dL, converted to mg/L, LOINC 1988-5), `LBXWBCSI` (WBC, 10^3/uL). Marker and unit mapping go
  through `pipelines.transforms.labs.normalise_lab_rows`. hs-CRP below the limit of detection
  (`LBDHRPLC` = 1, or a value under 0.15 mg/L; NHANES fills those as 0.11) loads as 0.15 with
  censored "<" and the filled number in `value_raw`. A missing result is rejected ("no result
  (missing in NHANES)"). `collected_at` is null: NHANES is cross-sectional and publishes no dates.
- kind `persons` (persons): `RIDAGEYR` -> age in years (80 means "80 and over": NHANES top-codes
  it), `RIAGENDR` 1 -> "male", 2 -> "female" (missing -> null; any other code is rejected).
  The survey design: `WTMEC2YR` -> `weight` (with `weight_var` "WTMEC2YR"), `SDMVSTRA` ->
  `stratum`, `SDMVPSU` -> `psu` (codes as text); and the covariates `RIDRETH3` (or `RIDRETH1` in
  files without it) -> `race_eth` as a name ("non_hispanic_white", ...; another code is
  rejected), `INDFMPIR` -> `income_poverty` (5 means 5 and over). A negative weight is rejected.
- kind `diet` (diet_daily_reported): `DR1TOT`/`DR2TOT` recall totals -> nutrient columns, `day`
  null and `period` "recall_day1"/"recall_day2". `omega3_g`/`omega6_g` are sums of the fatty-acid
  variables (the dietaryindex N3FAT/N6FAT definitions); a column whose variables are not all in the
  file stays null. Records whose recall status (`DR1DRSTZ`/`DR2DRSTZ`) is not 1 ("reliable and met
  the minimum criteria") are rejected with what the status means in the reason and the code in
  `value`, as NHANES analyses do.

Person ids: `SEQN` (or the column named by `person: {column: ...}`) as text without ".0"
("93703"); a fixed `person:` id is used as given. `person: {from_folder: true}`, which is also what
sources.yaml assumes when `person:` is left out, reads `SEQN` too: an NHANES file holds thousands
of participants, never one.

`line` is the 1-based record (observation) number in the XPT file. `rows_read` counts the cells
considered: records x tables read for persons and diet (one row per record per recall day) and
records x marker variables for labs (a file with hs-CRP and WBC gives two rows per participant),
so rows_read == rows loaded + rows rejected as everywhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, reduce
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.adapters._csv import LINE, RAW, split_rejects
from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import (
    DIET_REPORTED_SCHEMA,
    LAB_RESULT_SCHEMA,
    NUTRIENTS,
    PERSON_SCHEMA,
    REJECT_SCHEMA,
    conform,
)
from pipelines.text import format_text
from pipelines.transforms.labs import LabTableError, lab_tables, normalise_lab_rows

VARIABLES_TABLE = Path(__file__).resolve().parent.parent / "data" / "nhanes_variables.csv"

SEQN = "SEQN"
KNOWN_OPTIONS = ("table",)
PERSON_COLUMNS = ("age", "sex", "weight", "stratum", "psu", "race_eth", "income_poverty")
SEX_CODES = {1: "male", 2: "female"}
# Race/Hispanic origin codes per variable (NHANES DEMO codebooks). RIDRETH3 (2011-12 on) splits
# out Non-Hispanic Asian; RIDRETH1 (every cycle) has it in "other".
RACE_ETH_CODES: dict[str, dict[int, str]] = {
    "RIDRETH1": {
        1: "mexican_american",
        2: "other_hispanic",
        3: "non_hispanic_white",
        4: "non_hispanic_black",
        5: "other_or_multiracial",
    },
    "RIDRETH3": {
        1: "mexican_american",
        2: "other_hispanic",
        3: "non_hispanic_white",
        4: "non_hispanic_black",
        6: "non_hispanic_asian",
        7: "other_or_multiracial",
    },
}
# Recall tables: the status variable (1 = reliable and met the minimum criteria) and the period.
RECALLS: dict[str, tuple[str, str]] = {
    "DR1TOT": ("DR1DRSTZ", "recall_day1"),
    "DR2TOT": ("DR2DRSTZ", "recall_day2"),
}
RECALL_STATUS = {
    2: "not reliable or did not meet the minimum criteria",
    4: "reported consuming breast-milk",
    5: "recall not done",
}

# --------------------------------------------------------------------------------------------
# XPORT v5 reader
# --------------------------------------------------------------------------------------------

_CARD = 80
_PREFIX = b"HEADER RECORD*******"
_LIBRARY = _PREFIX + b"LIBRARY HEADER RECORD!!!!!!!"
_LIBRARY_V8 = _PREFIX + b"LIBV8   HEADER RECORD!!!!!!!"
_MEMBER = _PREFIX + b"MEMBER  HEADER RECORD!!!!!!!"
_DESCRIPTOR = _PREFIX + b"DSCRPTR HEADER RECORD!!!!!!!"
_NAMESTR = _PREFIX + b"NAMESTR HEADER RECORD!!!!!!!"
_OBS = _PREFIX + b"OBS     HEADER RECORD!!!!!!!"
# SAS missing values: ".", ".A"-".Z" and "._" in the first byte, zeros after it.
_MISSING_FIRST = np.array([0x2E, 0x5F, *range(0x41, 0x5B)], dtype=np.uint8)


@dataclass(frozen=True)
class XportFile:
    """The first (and for NHANES, only) dataset of an XPORT v5 file.

    `frame` has one column per variable (numeric -> Float64, character -> String; SAS missing
    values -> null), in file order; `labels` maps variable names to their SAS labels.
    """

    dataset: str
    frame: pl.DataFrame
    labels: dict[str, str]


def read_xport(path: Path) -> XportFile:
    """Read an XPORT v5 file; AdapterError naming the file when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be read: {exc}") from exc
    not_xpt = (
        f"{path}: not a SAS transport (XPORT version 5) file, which is how NHANES publishes its "
        "data (.XPT)"
    )
    if data.startswith(_LIBRARY_V8):
        raise AdapterError(
            f"{path}: SAS transport version 8 files are not supported; nhanes_xpt reads XPORT "
            "version 5, the format NHANES publishes."
        )
    if not data.startswith(_LIBRARY):
        raise AdapterError(f"{not_xpt}: it does not start with a LIBRARY header record.")

    def card(offset: int, prefix: bytes) -> bytes:
        record = data[offset : offset + _CARD]
        if len(record) < _CARD or not record.startswith(prefix):
            name = prefix[len(_PREFIX) : len(_PREFIX) + 7].decode().strip()
            raise AdapterError(
                f"{not_xpt}, or it is truncated: no {name} header record at byte {offset}."
            )
        return record

    member = card(3 * _CARD, _MEMBER)
    card(4 * _CARD, _DESCRIPTOR)
    try:
        namestr_len = int(member[74:78])
        descriptor = data[5 * _CARD : 7 * _CARD]
        dataset = descriptor[8:16].decode("latin-1").strip()
        nvars = int(card(7 * _CARD, _NAMESTR)[54:58])
    except ValueError:
        raise AdapterError(f"{not_xpt}: its member header is malformed.") from None
    if namestr_len not in (136, 140):
        raise AdapterError(f"{not_xpt}: unexpected variable descriptor size {namestr_len}.")

    start = 8 * _CARD
    names: list[str] = []
    labels: dict[str, str] = {}
    layout: list[tuple[str, bool, int, int]] = []  # name, numeric, length, position
    for i in range(nvars):
        ns = data[start + i * namestr_len : start + (i + 1) * namestr_len]
        if len(ns) < namestr_len:
            raise AdapterError(f"{not_xpt}, or it is truncated in its variable descriptors.")
        name = ns[8:16].decode("latin-1").strip()
        names.append(name)
        labels[name] = ns[16:56].decode("latin-1").strip()
        ntype = int.from_bytes(ns[0:2], "big")
        length = int.from_bytes(ns[4:6], "big")
        position = int.from_bytes(ns[84:88], "big")
        numeric = ntype == 1
        if numeric and not 2 <= length <= 8:
            raise AdapterError(f"{not_xpt}: numeric variable {name} has length {length}.")
        layout.append((name, numeric, length, position))
    # Names are matched without regard to case (see parse), so SEQN and seqn are the same name.
    if len({n.upper() for n in names}) != len(names):
        raise AdapterError(f"{not_xpt}: a variable name appears twice.")
    namestr_end = start + -(-nvars * namestr_len // _CARD) * _CARD
    card(namestr_end, _OBS)

    obs_start = namestr_end + _CARD
    obs_end = len(data)
    next_member = _next_member(data, obs_start)
    if next_member is not None:
        raise AdapterError(
            f"{path}: holds more than one dataset; nhanes_xpt reads files with one dataset, as "
            "NHANES publishes them."
        )
    record_len = max((pos + length for _, _, length, pos in layout), default=0)
    body = data[obs_start:obs_end]
    nobs = len(body) // record_len if record_len else 0
    # The last 80-byte card is padded with blanks; short records can leave blank "records" there.
    while (
        nobs > 0
        and len(body) - (nobs - 1) * record_len <= _CARD
        and body[(nobs - 1) * record_len : nobs * record_len].strip(b" ") == b""
    ):
        nobs -= 1
    records = np.frombuffer(body, dtype=np.uint8, count=nobs * record_len).reshape(nobs, record_len)
    columns: list[pl.Series] = []
    for name, numeric, length, position in layout:
        block = records[:, position : position + length]
        if numeric:
            columns.append(pl.Series(name, _ibm_to_ieee(block), nan_to_null=True))
        else:
            text = [bytes(row).decode("latin-1").rstrip(" \x00") or None for row in block]
            columns.append(pl.Series(name, text, dtype=pl.String))
    return XportFile(dataset=dataset, frame=pl.DataFrame(columns), labels=labels)


def _next_member(data: bytes, obs_start: int) -> int | None:
    """The offset of a second MEMBER header (on an 80-byte boundary) after the data, if any."""
    at = data.find(_MEMBER, obs_start)
    while at != -1:
        if (at - obs_start) % _CARD == 0:
            return at
        at = data.find(_MEMBER, at + 1)
    return None


def _ibm_to_ieee(block: np.ndarray) -> np.ndarray:
    """IBM System/360 floats (big-endian, 2-8 bytes, truncated) to float64; SAS missing -> NaN."""
    n, length = block.shape
    full = np.zeros((n, 8), dtype=np.uint8)
    full[:, :length] = block
    word = full.view(">u8")[:, 0].astype(np.uint64)
    fraction = word & np.uint64(0x00FFFFFFFFFFFFFF)
    exponent = ((word >> np.uint64(56)) & np.uint64(0x7F)).astype(np.int64)
    negative = (word >> np.uint64(63)).astype(bool)
    # value = 0.fraction (56 bits) x 16^(exponent - 64)
    value = np.ldexp(fraction.astype(np.float64), (4 * (exponent - 64) - 56).astype(np.int32))
    value = np.where(negative, -value, value)
    missing = (fraction == 0) & np.isin(full[:, 0], _MISSING_FIRST)
    return np.where(missing, np.nan, value)


# --------------------------------------------------------------------------------------------
# The variable table
# --------------------------------------------------------------------------------------------


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


def _select_tables(
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
                f"variables in the file: {_listing(frame.columns)}."
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
            f"{_listing(frame.columns)}.{hint}"
        )
    return found


def _listing(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "") or "none"


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one NHANES XPT file as `source`; see the module docstring."""
    xpt = read_xport(path)
    # Variable names are matched case-insensitively; NHANES spells them in capitals.
    frame = xpt.frame.rename({c: c.upper() for c in xpt.frame.columns})
    tables = _select_tables(path, source, frame)
    _require_numeric(path, frame, tables)
    person, person_check = _person(path, source, frame)
    frame = frame.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(LINE),
        person.alias("person_id"),
    )
    if source.kind == "labs":
        return _labs(path, frame, tables, person_check)
    if source.kind == "persons":
        return _persons(frame, tables, person_check)
    return _diet(frame, tables, person_check)


def _require_numeric(path: Path, frame: pl.DataFrame, tables: dict[str, list[Variable]]) -> None:
    """NHANES publishes results, flags and codes as numbers; a character variable is not NHANES."""
    names = {v.variable for vs in tables.values() for v in vs}
    names |= {v.lod_flag for vs in tables.values() for v in vs if v.lod_flag}
    names |= {status for table in tables for status, _ in [RECALLS.get(table, ("", ""))]}
    text = sorted(n for n in names if n in frame.columns and frame.schema[n] == pl.String)
    if text:
        raise AdapterError(
            f"{path}: variable(s) {', '.join(text)} hold text, but NHANES publishes them as "
            "numbers; is this file an NHANES file, or was it converted by another program?"
        )


def _person(path: Path, source: SourceConfig, frame: pl.DataFrame) -> tuple[pl.Expr, Check | None]:
    """The person id expression, and the check rejecting records without one."""
    if source.person.fixed is not None:
        return pl.lit(source.person.fixed, dtype=pl.String), None
    column = (source.person.column or SEQN).upper()
    if column not in frame.columns:
        raise AdapterError(
            f"{path}: the person column {column!r} is not in the file (variables: "
            f"{_listing(frame.columns)}); set person: {{column: SEQN}} for source "
            f"{source.name!r}."
        )
    value = pl.col(column)
    if frame.schema[column] == pl.String:
        ident = value.str.strip_chars().replace("", None)
    else:
        ident = _number_text(value)
    # The check reads the materialised person_id column that parse() adds.
    return ident, Check(
        pl.col("person_id").is_null(), column, pl.lit(f"participant id ({column}) is missing")
    )


def _number_text(expr: pl.Expr) -> pl.Expr:
    """A number as NHANES documents it: 93703 rather than 93703.0, 0.11 as 0.11."""
    whole = expr.cast(pl.Int64, strict=False).cast(pl.String)
    # Beyond Int64 (a corrupt 1e70) the number is shown as Polars prints it, never lost.
    return (
        pl.when(expr == expr.round(0))
        .then(pl.coalesce(whole, expr.cast(pl.String)))
        .otherwise(expr.cast(pl.String))
    )


def _cell_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A record's value as text for `raw` ("." for missing, as SAS prints it)."""
    text = pl.col(name) if frame.schema[name] == pl.String else _number_text(pl.col(name))
    return text.fill_null(".")


def _raw(frame: pl.DataFrame, names: list[str]) -> pl.Expr:
    """`raw` for a reject: the record's id and the variables concerned, e.g. "SEQN=93703, ..."."""
    parts: list[pl.Expr] = []
    for i, name in enumerate(names):
        parts += [pl.lit(("" if i == 0 else ", ") + f"{name}="), _cell_text(frame, name)]
    return pl.concat_str(parts)


def _with_raw(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    shown = [n for n in dict.fromkeys([SEQN, *names]) if n in frame.columns]
    return frame.with_columns(_raw(frame, shown).alias(RAW))


def _labs(
    path: Path,
    frame: pl.DataFrame,
    tables: dict[str, list[Variable]],
    person_check: Check | None,
) -> ParseResult:
    variables = [v for vs in tables.values() for v in vs]
    good: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    for order, v in enumerate(variables):
        value = pl.col(v.variable)
        below = pl.lit(False)
        if v.lod is not None:
            below = value < v.lod
            if v.lod_flag is not None and v.lod_flag in frame.columns:
                below = below | (pl.col(v.lod_flag).round(0) == 1)
        below = below.fill_null(False) & value.is_not_null()
        shown = [v.variable] + ([v.lod_flag] if v.lod_flag in frame.columns else [])
        checks = [c for c in (person_check,) if c is not None]
        checks.append(
            Check(pl.col("__missing"), v.variable, pl.lit("no result (missing in NHANES)"))
        )
        cells = _with_raw(frame, shown).select(
            pl.col(LINE),
            pl.col(RAW),
            pl.lit(order).alias("__order"),
            pl.col("person_id"),
            pl.lit(v.variable).alias("test_name_raw"),
            pl.lit(v.column).alias("marker"),
            pl.lit(v.loinc, dtype=pl.String).alias("loinc"),
            pl.lit(v.unit).alias("unit_raw"),
            pl.when(below).then(pl.lit(v.lod)).otherwise(value).alias("value"),
            pl.when(below).then(pl.lit("<")).alias("censored"),
            _number_text(value).alias("value_raw"),
            value.is_null().alias("__missing"),
        )
        passed, rejects = split_rejects(cells, checks)
        good.append(passed)
        rejected.append(rejects)
    # One row per record and marker variable, in record order.
    rows = pl.concat(good, how="vertical").sort(LINE, "__order")
    try:
        loaded, unmapped = normalise_lab_rows(rows.rename({LINE: "line", RAW: "raw"}))
    except LabTableError as exc:
        raise AdapterError(f"{path}: cannot map lab results: {exc}") from exc
    rejects = pl.concat([*rejected, unmapped], how="vertical").sort("line", maintain_order=True)
    return ParseResult(
        rows=conform(loaded, LAB_RESULT_SCHEMA),
        rejects=conform(rejects, REJECT_SCHEMA),
        rows_read=frame.height * len(variables),
    )


def _persons(
    frame: pl.DataFrame, tables: dict[str, list[Variable]], person_check: Check | None
) -> ParseResult:
    # Later rows of nhanes_variables.csv win for the same column: RIDRETH3 over RIDRETH1.
    variables = {v.column: v for vs in tables.values() for v in vs}
    columns: dict[str, pl.Expr] = {}
    checks = [c for c in (person_check,) if c is not None]
    if "age" in variables:
        columns["age"] = pl.col(variables["age"].variable) * variables["age"].factor
    coded = {"sex": (SEX_CODES, "not an NHANES sex code (1 male, 2 female)")}
    if "race_eth" in variables:
        codes = RACE_ETH_CODES[variables["race_eth"].variable]
        listing = ", ".join(f"{k} {v}" for k, v in codes.items())
        coded["race_eth"] = (codes, f"not an NHANES race/ethnicity code ({listing})")
    for column, (codes, reason) in coded.items():
        if column not in variables:
            continue
        name = variables[column].variable
        code = pl.col(name)
        columns[column] = code.replace_strict(
            {float(k): v for k, v in codes.items()}, default=None, return_dtype=pl.String
        )
        checks.append(
            Check(
                code.is_not_null() & ~code.is_in([float(k) for k in codes]),
                name,
                pl.lit(reason),
                _number_text(code),
            )
        )
    if "weight" in variables:
        weight = variables["weight"]
        columns["weight"] = pl.col(weight.variable) * weight.factor
        columns["weight_var"] = pl.when(pl.col(weight.variable).is_not_null()).then(
            pl.lit(weight.variable)
        )
        checks.append(
            Check(
                pl.col(weight.variable) < 0,
                weight.variable,
                pl.lit("negative survey weight"),
                _number_text(pl.col(weight.variable)),
            )
        )
    for column in ("stratum", "psu"):
        if column in variables:
            columns[column] = _number_text(pl.col(variables[column].variable))
    if "income_poverty" in variables:
        income = variables["income_poverty"]
        columns["income_poverty"] = pl.col(income.variable) * income.factor
    shown = [v.variable for v in variables.values()]
    good, rejects = split_rejects(_with_raw(frame, shown), checks)
    rows = good.select(
        pl.col("person_id"),
        *[e.alias(c) for c, e in columns.items()],
        pl.col(LINE).alias("line"),
    )
    return ParseResult(
        rows=conform(rows, PERSON_SCHEMA),
        rejects=conform(rejects, REJECT_SCHEMA),
        rows_read=frame.height,
    )


def _diet(
    frame: pl.DataFrame, tables: dict[str, list[Variable]], person_check: Check | None
) -> ParseResult:
    loaded: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    for order, (table, variables) in enumerate(tables.items()):
        status, period = RECALLS.get(table, (None, table.lower()))
        by_column: dict[str, list[Variable]] = {}
        for v in nhanes_variables():
            if v.table == table:
                by_column.setdefault(v.column, []).append(v)
        present = {v.variable for v in variables}
        nutrients: dict[str, pl.Expr] = {}
        for column, parts in by_column.items():
            if all(p.variable in present for p in parts):
                terms = [pl.col(p.variable) * p.factor for p in parts]
                nutrients[column] = reduce(lambda a, b: a + b, terms)
        checks = [c for c in (person_check,) if c is not None]
        shown = []
        if status is not None and status in frame.columns:
            code = pl.col(status).round(0)
            # Not strict: a corrupt status (1e70) is an unknown code, not a crash.
            meaning = code.cast(pl.Int64, strict=False).replace_strict(
                RECALL_STATUS, default="unknown status code", return_dtype=pl.String
            )
            checks.append(
                Check(
                    code.is_null() | (code != 1),
                    status,
                    pl.when(code.is_null())
                    .then(pl.lit(f"dietary recall status ({status}) is missing"))
                    .otherwise(
                        format_text(
                            "dietary recall not usable ({}); only status 1 (reliable and met "
                            "the minimum criteria) is loaded",
                            meaning,
                        )
                    ),
                    _number_text(pl.col(status)),
                )
            )
            shown.append(status)
        if nutrients:
            checks.append(
                Check(
                    pl.all_horizontal([pl.col(p).is_null() for p in sorted(present)]),
                    None,
                    pl.lit(f"no nutrient values for {period} (missing in NHANES)"),
                )
            )
        shown += [v.variable for v in variables[:1]]
        marked = _with_raw(frame, shown).with_columns(pl.lit(order).alias("__order"))
        good, rejects = split_rejects(marked, checks)
        rejected.append(rejects.with_columns(pl.lit(order).alias("__order")))
        loaded.append(
            good.select(
                pl.col("person_id"),
                pl.lit(None, dtype=pl.Date).alias("day"),
                pl.lit(period).alias("period"),
                *[e.alias(c) for c, e in nutrients.items()],
                pl.col(LINE).alias("line"),
                pl.col("__order"),
            )
        )
    rows = pl.concat([conform(f, {**DIET_REPORTED_SCHEMA, "__order": pl.Int32}) for f in loaded])
    rejects = pl.concat(
        [conform(f, {**REJECT_SCHEMA, "__order": pl.Int32}) for f in rejected], how="vertical"
    )
    return ParseResult(
        rows=conform(rows.sort("line", "__order"), DIET_REPORTED_SCHEMA),
        rejects=conform(rejects.sort("line", "__order"), REJECT_SCHEMA),
        rows_read=frame.height * len(tables),
    )
