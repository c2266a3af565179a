"""Cohort models: the within-person (person fixed-effects) effect pooled over persons with
repeated draws, crude and adjusted, with cluster-robust errors by person (`robust.within_fit`);
markers where everyone has one draw go to the between-person models. See
`pipelines.analysis.associations`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.between import between_rows
from pipelines.analysis.model_frame import (
    COLLINEAR_R,
    CORE_ADJUSTMENT,
    ENERGY,
    TREND,
    WEIGHT,
    adjustment_candidates,
    conform_results,
    contributors,
    covariate_label,
    effects,
    prepare_wide,
    primary_windows,
    twin_note,
)
from pipelines.analysis.robust import demean, within_fit
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
    return cohort_scope(data, wide, features, persons, settings, energy_adjust)


def cohort_scope(
    data: pl.DataFrame,
    wide: pl.DataFrame,
    features: list[str],
    persons: pl.DataFrame | None,
    settings: Settings,
    energy_adjust: bool,
) -> pl.DataFrame:
    """Within-person rows for markers with repeated draws, between-person rows (`ols_between`,
    with age and sex) for markers where everyone has one draw; none for a single person.

    `data`: `analysis_frame` rows; only those of the markers with one draw per person are read
    (`ModelFrame.single` holds just these)."""
    per_marker = wide.group_by("marker").agg(
        pl.col("_pid").n_unique().alias("k"),
        pl.len().over("marker", "window_days", "_pid").max().alias("most"),
    )
    several = per_marker.filter(pl.col("k") >= 2)
    within = several.filter(pl.col("most") > 1)["marker"]
    between = several.filter(pl.col("most") <= 1)["marker"]
    parts = [
        _cohort_rows(wide.filter(pl.col("marker").is_in(within)), features, settings, energy_adjust)
    ]
    if between.len():
        parts.append(
            between_rows(
                data.filter(pl.col("marker").is_in(between)), persons, settings, energy_adjust
            )
        )
    return primary_windows(pl.concat(parts), settings)


def _cohort_rows(
    wide: pl.DataFrame, features: list[str], settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        arrays = {
            c: chunk[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for c in [*features, TREND, WEIGHT, "y"]
        }
        y_all, t_all = arrays["y"], arrays[TREND]
        pid_all = chunk["_pid"].to_numpy()
        for f in features:
            row: dict[str, Any] = {
                "scope": "cohort",
                "marker": marker,
                "feature": f,
                "window_days": window,
                "family": f"{marker}|cohort",
            }
            x_all = arrays[f]
            mask = np.isfinite(x_all) & np.isfinite(y_all)
            cands = adjustment_candidates(f, features, energy_adjust)
            C = np.column_stack([arrays[c][mask] for c in cands])
            rows.append(
                row
                | _cohort_test(
                    f, y_all[mask], x_all[mask], C, cands, pid_all[mask], t_all[mask], settings
                )
            )
    return conform_results(pl.DataFrame(rows, infer_schema_length=None))


def _cohort_test(
    feature: str,
    y: np.ndarray,
    x: np.ndarray,
    C: np.ndarray,
    cands: list[str],
    pid: np.ndarray,
    t: np.ndarray,
    settings: Settings,
) -> dict[str, Any]:
    n = int(x.size)
    _, groups = np.unique(pid, return_inverse=True)
    n_persons = int(groups.max()) + 1 if n else 0
    row: dict[str, Any] = {
        "n": n,
        "n_persons": n_persons,
        "sd_feature": float(np.std(x, ddof=1)) if n > 1 else None,
        "method": "fe_within_robust",
    }
    if n_persons < 2:
        return row | {"note": f"{n_persons} person(s) with complete windows; at least 2 needed"}
    if n < settings.min_n_cohort:
        return row | {"note": f"{n} complete windows; at least {settings.min_n_cohort} needed"}
    xw = demean(x, groups, n_persons)
    if float(xw @ xw) <= 1e-12 * max(1.0, float(x @ x)):
        return row | {"note": "the feature did not vary within persons"}
    # A covariate enters when every row has it and it varies within persons.
    Cw = demean(np.nan_to_num(C), groups, n_persons)
    sxx = float(xw @ xw)
    keep: list[int] = []
    collinear: list[int] = []
    for j in range(len(cands)):
        scc = float(Cw[:, j] @ Cw[:, j])
        if not (np.isfinite(C[:, j]).all() and scc > 1e-12):
            continue
        r = float(Cw[:, j] @ xw) / math.sqrt(scc * sxx)
        (collinear if abs(r) >= COLLINEAR_R else keep).append(j)
    names = [cands[j] for j in keep]
    twins = [cands[j] for j in collinear if cands[j] in CORE_ADJUSTMENT]
    if twins and feature not in CORE_ADJUSTMENT:
        # Within persons the feature is (nearly) a core food under another name: no model can
        # tell which of the two moves the marker, and the core food is the pre-specified one
        # (energy as a proxy for ultra-processed food was a false finding in the calibration).
        return row | {"note": twin_note(twins)}
    try:
        crude = within_fit(y, x[:, None], groups, t)
        adj = within_fit(y, np.column_stack([x, C[:, keep]]), groups, t)
    except np.linalg.LinAlgError:
        return row | {"note": "the within-person model could not be fitted (collinear covariates)"}
    delta = (Cw[:, keep].T @ xw) / sxx
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
