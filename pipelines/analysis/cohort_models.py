"""Cohort models: the within-person (person fixed-effects) effect pooled over persons with
repeated draws, crude and adjusted, with cluster-robust errors by person (`robust.fit_within`
of per-person statistics, `person_stats`);
markers where everyone has one draw go to the between-person models. See
`pipelines.analysis.associations`."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.between import between_rows
from pipelines.analysis.model_frame import (
    COLLINEAR_R,
    CORE_ADJUSTMENT,
    ENERGY,
    ModelFrame,
    WideParts,
    adjustment_candidates,
    conform_results,
    contributors,
    covariate_label,
    effects,
    in_memory,
    prepare_wide,
    primary_windows,
    twin_note,
)
from pipelines.analysis.person_stats import COVARIATES, chunk_arrays, complete_rows, statistics_of
from pipelines.analysis.robust import CrossProducts, Rows, fit_within
from pipelines.config import Settings

# --------------------------------------------------------------------------------------------------
# Cohort: person fixed effects (within-person), cluster-robust by person


def cohort_models(
    data: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Cohort scope for every (marker, feature, window) in `data` (an `analysis_frame`): the
    within-person effect, crude and adjusted, with a dependence-robust SE (`within_fit`).

    Only markers measured in at least 2 persons get cohort rows. `persons` is accepted for the
    between-person model of markers with one draw per person: person-level covariates (age, sex)
    are constant within a person and cannot move a within-person estimate."""
    if data.height == 0:
        return conform_results(pl.DataFrame())
    wide, features = prepare_wide(data, biometrics)
    parts = WideParts(in_memory)
    parts.add(wide)
    frame = parts.frame(features, single=data)
    within = [
        within_rows(chunk.read(), features, settings, energy_adjust)
        for chunk in frame.chunks
        if chunk.marker in frame.within
    ]
    return cohort_scope(within, frame, persons, settings, energy_adjust)


def cohort_scope(
    within: list[pl.DataFrame],
    frame: ModelFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    energy_adjust: bool,
) -> pl.DataFrame:
    """The cohort rows: the within-person rows (`within_rows`) of the markers with repeated
    draws (`frame.within`), and between-person rows (`ols_between`, with age and sex) of those
    where everyone has one draw (`frame.between`, from `frame.single`); none for a single
    person."""
    parts = list(within) or [conform_results(pl.DataFrame())]
    if frame.between:
        single = frame.single.filter(pl.col("marker").is_in(frame.between))
        parts.append(between_rows(single, persons, settings, energy_adjust))
    return primary_windows(pl.concat(parts), settings)


def within_rows(
    wide: pl.DataFrame, features: list[str], settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    """The within-person rows of each (marker, window) of `wide` and feature of `features`,
    each test fitted from its persons' statistics (`person_stats.statistics_of`). One test's
    are held at a time: P (P + 2) numbers a person, more than the rows of a person with a few
    draws a window (docs/partitions.md, "The cohort models from per-person statistics")."""
    out: list[dict[str, Any]] = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        arrays = chunk_arrays(chunk, features)
        for f in features:
            row: dict[str, Any] = {
                "scope": "cohort",
                "marker": marker,
                "feature": f,
                "window_days": window,
                "family": f"{marker}|cohort",
            }
            test = statistics_of(arrays, f)
            if test is None:
                out.append(row | _EMPTY | _too_few(0, 0, settings))
                continue
            cands = adjustment_candidates(f, features, energy_adjust)
            rows = partial(complete_rows, arrays, f)
            out.append(row | _cohort_test(f, test[1], cands, rows, settings))
    return conform_results(pl.DataFrame(out, infer_schema_length=None))


_EMPTY = {"n": 0, "n_persons": 0, "sd_feature": None, "method": "fe_within_robust"}


def _too_few(n: int, n_persons: int, settings: Settings) -> dict[str, Any]:
    if n_persons < 2:
        return {"note": f"{n_persons} person(s) with complete windows; at least 2 needed"}
    if n < settings.min_n_cohort:
        return {"note": f"{n} complete windows; at least {settings.min_n_cohort} needed"}
    return {}


def _cohort_test(
    feature: str,
    stats: CrossProducts,
    cands: list[str],
    rows: Callable[[], tuple[np.ndarray, np.ndarray]],
    settings: Settings,
) -> dict[str, Any]:
    """One test from its persons' statistics (`person_stats`: column 0 the feature, then
    COVARIATES, the response last)."""
    n = int(stats.n.sum())
    n_persons = int(stats.n.size)
    x_mean = stats.mean[:, 0]
    grand = float(stats.n @ x_mean) / n
    sxx = float(stats.cross[:, 0, 0].sum())
    row: dict[str, Any] = {
        "n": n,
        "n_persons": n_persons,
        # The SD of x over the rows: within-person and between-person sums of squares.
        "sd_feature": math.sqrt((sxx + float(stats.n @ (x_mean - grand) ** 2)) / (n - 1))
        if n > 1
        else None,
        "method": "fe_within_robust",
    }
    too_few = _too_few(n, n_persons, settings)
    if too_few:
        return row | too_few
    if sxx <= 1e-12 * max(1.0, sxx + float(stats.n @ x_mean**2)):
        return row | {"note": "the feature did not vary within persons"}
    # A covariate enters when every row has it (a person's mean is NaN when one of their rows
    # lacks it) and it varies within persons.
    idx = [1 + COVARIATES.index(c) for c in cands]
    keep: list[int] = []
    collinear: list[int] = []
    for j, col in enumerate(idx):
        scc = float(stats.cross[:, col, col].sum())
        if not (np.isfinite(stats.mean[:, col]).all() and scc > 1e-12):
            continue
        r = float(stats.cross[:, col, 0].sum()) / math.sqrt(scc * sxx)
        (collinear if abs(r) >= COLLINEAR_R else keep).append(j)
    names = [cands[j] for j in keep]
    twins = [cands[j] for j in collinear if cands[j] in CORE_ADJUSTMENT]
    if twins and feature not in CORE_ADJUSTMENT:
        # Within persons the feature is (nearly) a core food under another name: no model can
        # tell which of the two moves the marker, and the core food is the pre-specified one
        # (energy as a proxy for ultra-processed food was a false finding in the calibration).
        return row | {"note": twin_note(twins)}
    cols = [0, *(idx[j] for j in keep)]

    def panel(cols: list[int]) -> Callable[[], Rows]:
        def read() -> Rows:
            z, pid = rows()
            _, groups = np.unique(pid, return_inverse=True)
            return z[:, cols], z[:, -1], groups

        return read

    try:
        crude = fit_within(stats, [0], panel([0]))
        adj = fit_within(stats, cols, panel(cols))
    except np.linalg.LinAlgError:
        return row | {"note": "the within-person model could not be fitted (collinear covariates)"}
    delta = stats.cross[:, cols[1:], 0].sum(axis=0) / sxx
    crude_eff = effects(crude.beta, crude.se, crude.df)
    how = (
        f"cluster-robust by person, t({adj.df:.1f})"
        if adj.cov_type == "cluster"
        else f"Newey-West within person ({n_persons} persons: too few to cluster on)"
    )
    note = f"within-person effect (person fixed effects; SE {how})"
    if ENERGY in names:
        note += "; at the same energy intake, i.e. eaten instead of other foods"
    if collinear:
        note += (
            "; not adjusted for "
            + ", ".join(covariate_label(cands[j]) for j in collinear)
            + f" (within-person |r| >= {COLLINEAR_R}: largely the same foods, tested apart)"
        )
    return row | {
        "beta": adj.beta,
        "se": adj.se,
        "df": adj.df,
        "note": note,
        "adjusted_for": ", ".join(covariate_label(c) for c in names) or None,
        "collinearity_vif": adj.vif,
        "crude_effect_pct": float(crude_eff["effect_pct"]),
        "crude_ci_low_pct": float(crude_eff["ci_low_pct"]),
        "crude_ci_high_pct": float(crude_eff["ci_high_pct"]),
        "crude_p": float(crude_eff["p"]),
        "explained_by": contributors(crude.beta, adj.beta, delta, adj.coef[1:], names)
        if crude_eff["p"] < 0.05
        else None,
        **{k: float(v) for k, v in effects(adj.beta, adj.se, adj.df).items()},
    }
