"""NHANES SAS transport files (format `nhanes_xpt`): CRP and WBC, demographics, recall totals.

NHANES publishes one SAS transport (XPORT version 5, `.XPT`) file per topic and survey cycle, one
record per participant, keyed by `SEQN`. The adapter reads XPORT v5 itself (a small vectorised
reader, `read_xport` in xport.py: IBM floating point to IEEE with NumPy), so it needs neither
pandas nor pyreadstat; a file that is not XPORT v5 is an AdapterError naming the file.

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

The flow: xport.py reads the file, nhanes_tables.py picks the tables it holds, and this module
turns their variables into lab, person or diet rows and rejects.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import LINE, RAW, split_rejects
from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.adapters.nhanes_tables import (
    Variable,
    listing,
    nhanes_variables,
    select_tables,
)
from pipelines.adapters.xport import read_xport
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import (
    DIET_REPORTED_SCHEMA,
    LAB_RESULT_SCHEMA,
    PERSON_SCHEMA,
    REJECT_SCHEMA,
    conform,
)
from pipelines.text import format_text
from pipelines.transforms.labs import LabTableError, normalise_lab_rows

SEQN = "SEQN"
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


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one NHANES XPT file as `source`; see the module docstring."""
    xpt = read_xport(path)
    # Variable names are matched case-insensitively; NHANES spells them in capitals.
    frame = xpt.frame.rename({c: c.upper() for c in xpt.frame.columns})
    tables = select_tables(path, source, frame)
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
            f"{listing(frame.columns)}); set person: {{column: SEQN}} for source "
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
