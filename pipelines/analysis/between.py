"""Between-person models: one value per person (cross-sectional cohorts such as NHANES, or
person-level features), OLS of the log marker on the feature with age, sex and energy. See
`pipelines.analysis.associations`; survey designs are in `pipelines.analysis.survey`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.model_frame import (
    ENERGY,
    MIN_PERSONS_FOR_COVARIATES,
    TAUTOLOGICAL,
    conform_results,
    effects,
    ols,
)
from pipelines.analysis.multiple_testing import add_fdr_and_status
from pipelines.config import Settings
from pipelines.schema import RESULT_SCHEMA


def between_rows(
    data: pl.DataFrame, persons: pl.DataFrame | None, settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    """One draw per person: between-person OLS with energy, age and sex (`_cohort_row`)."""
    keys = ["marker", "feature", "window_days"]
    used = data.filter(pl.col("use"))
    energy = used.filter(pl.col("feature") == ENERGY).select(
        "_draw", "window_days", pl.col("x").alias("energy")
    )
    used = used.join(energy, on=["_draw", "window_days"], how="left")
    age, sex = person_arrays(data, persons)
    arrays = dict(iter_tests(used, keys, age, sex))
    none = TestData(pid=np.array([], dtype=np.int64), x=np.array([]), y=np.array([]))
    rows = []
    for marker, feature, window in data.select(keys).unique().sort(keys).iter_rows():
        row = _cohort_row(
            arrays.get((marker, feature, window), none), feature, settings, energy_adjust
        )
        rows.append(
            row
            | {
                "scope": "cohort",
                "marker": marker,
                "feature": feature,
                "window_days": window,
                "method": row.get("method", "ols_between"),
                "family": f"{marker}|cohort",
            }
        )
    return conform_results(finish_rows(rows))


# --------------------------------------------------------------------------------------------------
# Cohort tests


@dataclass
class TestData:
    """One cohort test's rows as arrays; `pid` are integer person codes, missing values are NaN
    (energy, age) or -1 (sex codes)."""

    pid: np.ndarray
    x: np.ndarray
    y: np.ndarray
    energy: np.ndarray | None = None
    age: np.ndarray | None = None
    sex: np.ndarray | None = None


def iter_tests(
    data: pl.DataFrame,
    keys: list[str],
    age_by_pid: np.ndarray | None,
    sex_by_pid: np.ndarray | None,
) -> Iterator[tuple[tuple[Any, ...], TestData]]:
    """Yield (key values, arrays) for each test; one sort and contiguous slices instead of a
    partition per test, which matters with millions of window rows."""
    data = data.sort([*keys, "_pid"])
    sizes = data.group_by(keys, maintain_order=True).agg(pl.len().alias("_n"))
    ends = np.cumsum(sizes["_n"].to_numpy())
    starts = ends - sizes["_n"].to_numpy()
    pid = data["_pid"].to_numpy()
    x = data["x"].to_numpy()
    y = data["y"].to_numpy()
    energy = data["energy"].fill_null(math.nan).to_numpy() if "energy" in data.columns else None
    for key, a, b in zip(sizes.select(keys).iter_rows(), starts, ends, strict=True):
        p = pid[a:b]
        yield (
            key,
            TestData(
                pid=p,
                x=x[a:b],
                y=y[a:b],
                energy=None if energy is None else energy[a:b],
                age=None if age_by_pid is None else age_by_pid[p],
                sex=None if sex_by_pid is None else sex_by_pid[p],
            ),
        )


def person_arrays(
    data: pl.DataFrame, persons: pl.DataFrame | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Age (NaN when missing) and sex code (-1 when missing) indexed by `_pid`."""
    if persons is None or persons.height == 0:
        return None, None
    ids = data.select("_pid", "person_id").unique(subset="_pid").sort("_pid")
    cov = persons.select(
        pl.col("person_id").cast(pl.String),
        *([pl.col("age").cast(pl.Float64)] if "age" in persons.columns else []),
        *([_normalise_sex(pl.col("sex"))] if "sex" in persons.columns else []),
    ).unique(subset="person_id", keep="first")
    joined = ids.join(cov, on="person_id", how="left").sort("_pid")
    size = int(ids["_pid"].to_numpy().max()) + 1
    age = sex = None
    if "age" in joined.columns:
        age = np.full(size, math.nan)
        age[joined["_pid"].to_numpy()] = joined["age"].fill_null(math.nan).to_numpy()
    if "sex" in joined.columns:
        sex = np.full(size, -1, dtype=np.int64)
        codes = (pl.col("sex").rank("dense") - 1).cast(pl.Int64).fill_null(-1)
        sex[joined["_pid"].to_numpy()] = joined.select(codes).to_series().to_numpy()
    return age, sex


def _person_covariates(td: TestData, n_persons: int) -> tuple[list[np.ndarray], list[str]]:
    """Age and sex columns when every person in the test has them and there are enough persons."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    if n_persons < MIN_PERSONS_FOR_COVARIATES:
        return cols, names
    if td.age is not None and not np.isnan(td.age).any() and np.ptp(td.age) > 0:
        cols.append(td.age.astype(float))
        names.append("age")
    if td.sex is not None and (td.sex >= 0).all():
        levels = np.unique(td.sex)
        cols.extend((td.sex == level).astype(float) for level in levels[1:])
        if levels.size > 1:
            names.append("sex")
    return cols, names


def insufficient(note: str) -> dict[str, Any]:
    return {"note": note}


def between_test(
    y: np.ndarray, x: np.ndarray, extra: list[np.ndarray], adjusted: list[str]
) -> dict[str, Any]:
    X = np.column_stack([np.ones_like(x), x, *extra])
    try:
        beta, cov, dof = ols(y, X)
    except np.linalg.LinAlgError:
        return insufficient("covariates are collinear with the feature")
    if dof < 1:
        return insufficient("no residual degrees of freedom")
    note = "between persons (one draw each)"
    if adjusted:
        note += "; adjusted for " + ", ".join(adjusted)
    return {
        "method": "ols_between",
        "beta": float(beta[1]),
        "se": math.sqrt(cov[1, 1]),
        "df": dof,
        "note": note,
    }


def _cohort_row(
    td: TestData, feature: str, settings: Settings, energy_adjust: bool
) -> dict[str, Any]:
    """One between-person test (one value per person: cross-sectional cohorts)."""
    n = td.x.size
    _, groups = np.unique(td.pid, return_inverse=True)
    n_persons = int(groups.max()) + 1 if n else 0
    row: dict[str, Any] = {"n": n, "n_persons": n_persons}
    x_all = td.x
    row["sd_feature"] = float(np.std(x_all, ddof=1)) if n > 1 else None
    if n_persons < 2:
        return row | insufficient(f"{n_persons} person(s) with complete windows; at least 2 needed")
    if n < settings.min_n_cohort:
        return row | insufficient(f"{n} complete windows; at least {settings.min_n_cohort} needed")
    y = td.y
    if not (row["sd_feature"] or 0.0) > 1e-6 * max(1.0, abs(float(np.mean(x_all)))):
        return row | insufficient("the feature did not vary")
    energy = None
    adjusted: list[str] = []
    if (
        energy_adjust
        and (feature, ENERGY) not in TAUTOLOGICAL
        and td.energy is not None
        and not np.isnan(td.energy).any()
        and float(np.ptp(td.energy)) > 0
    ):
        energy = td.energy
        adjusted.append("energy (kcal)")
    person_cols, names = _person_covariates(td, n_persons)
    adjusted += names
    fit = between_test(y, x_all, ([energy] if energy is not None else []) + person_cols, adjusted)
    fit["covariates"] = ",".join(([ENERGY] if energy is not None else []) + names)
    return row | fit


def finish_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Turn per-test dicts (with beta, se, df or just a note) into RESULT_SCHEMA rows."""
    records = []
    for r in rows:
        rec = {c: r.get(c) for c in RESULT_SCHEMA}
        if r.get("beta") is not None and r.get("se") is not None and r["se"] > 0:
            rec |= {k: float(v) for k, v in effects(r["beta"], r["se"], r["df"]).items()}
        else:
            rec["beta"] = rec["se"] = None
        records.append(rec)
    return pl.DataFrame(records, schema=RESULT_SCHEMA)


def _normalise_sex(expr: pl.Expr) -> pl.Expr:
    s = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(s.is_in(["m", "male", "man", "1"]))
        .then(pl.lit("male"))
        .when(s.is_in(["f", "female", "woman", "2"]))
        .then(pl.lit("female"))
        .when(s == "")
        .then(None)
        .otherwise(s)
        .alias("sex")
    )


def cross_sectional(
    draws_or_frame: pl.DataFrame,
    features_frame: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    features: list[str] | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Between-person OLS of the log marker on each person-level feature (scope "cohort",
    method "ols_between", window_days null), with age, sex and energy covariates when available.

    `draws_or_frame`: marker draws (chronic rows are used) or any frame with person_id, marker and
    value or log_value. A person with several values contributes their mean log value (geometric
    mean). `features_frame`: wide (person_id plus one numeric column per feature) or long
    (person_id, feature, value).
    """
    response = person_response(draws_or_frame)
    long = person_features(features_frame, features)
    energy = long.filter(pl.col("feature") == ENERGY).select(
        "person_id", pl.col("value").alias("energy")
    )
    data = (
        response.join(long, on="person_id", how="inner")
        .rename({"value": "x"})
        .filter(pl.col("x").is_not_null() & pl.col("x").is_finite())
        .join(energy, on="person_id", how="left")
        .with_columns((pl.col("person_id").rank("dense") - 1).cast(pl.Int64).alias("_pid"))
    )
    age, sex = person_arrays(data, persons)
    rows = []
    for (marker, feature), td in iter_tests(data, ["marker", "feature"], age, sex):
        row = _cohort_row(td, feature, settings, energy_adjust)
        rows.append(
            row
            | {
                "scope": "cohort",
                "person_id": None,
                "marker": marker,
                "feature": feature,
                "window_days": None,
                "method": row.get("method", "ols_between"),
                "family": f"{marker}|cohort",
            }
        )
    return add_fdr_and_status(finish_rows(rows), settings)


def person_response(draws_or_frame: pl.DataFrame) -> pl.DataFrame:
    """person_id, marker, y: each person's mean log marker (chronic rows only), for
    between-person models. Accepts marker draws or any frame with person_id, marker and value or
    log_value."""
    response = draws_or_frame
    if "excluded_reason" in response.columns:
        response = response.filter(pl.col("excluded_reason").is_null())
    y_expr = (
        pl.col("log_value")
        if "log_value" in response.columns
        else pl.when(pl.col("value") > 0).then(pl.col("value").log())
    )
    return (
        response.select("person_id", "marker", y_expr.alias("y"))
        .filter(pl.col("y").is_not_null() & pl.col("y").is_finite())
        .group_by("person_id", "marker")
        .agg(pl.col("y").mean())
    )


def person_features(features_frame: pl.DataFrame, features: list[str] | None) -> pl.DataFrame:
    """person_id, feature, value (the person's mean) from a wide (person_id plus one numeric
    column per feature) or long (person_id, feature, value) frame."""
    if {"feature", "value"} <= set(features_frame.columns):
        long = features_frame.select("person_id", "feature", pl.col("value").cast(pl.Float64))
    else:
        numeric = [
            c
            for c, t in features_frame.schema.items()
            if c != "person_id" and t.is_numeric() and c not in ("age", "sex")
        ]
        long = features_frame.unpivot(
            index="person_id", on=numeric, variable_name="feature"
        ).with_columns(pl.col("value").cast(pl.Float64))
    long = long.group_by("person_id", "feature").agg(pl.col("value").mean())
    if features is not None:
        long = long.filter(pl.col("feature").is_in(features))
    return long
