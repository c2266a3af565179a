"""Per-person models: for each person, marker, feature and window, OLS of log marker on the
feature and the covariates that co-vary with it, with Newey-West errors at a fixed-b critical
value (`robust.batched_ols_hac`): one batch of every (feature, person) fit of a marker and
window, of those that can be reported. See `pipelines.analysis.associations`."""

from __future__ import annotations

import itertools
from dataclasses import fields
from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.model_frame import (
    COLLINEAR_R,
    CORE_ADJUSTMENT,
    COVARIATE_PRIORITY,
    PERSON_COVARY_R,
    PERSON_MIN_DF,
    TWIN_MIN_DRAWS,
    adjustment_candidates,
    conform_results,
    contributors,
    covariate_label,
    effects,
    prepare_wide,
    primary_windows,
    twin_note,
)
from pipelines.analysis.robust import BatchFit, batched_ols_hac
from pipelines.config import Settings
from pipelines.schema import RESULT_SCHEMA

# --------------------------------------------------------------------------------------------------
# Per-person models: one batched OLS per feature with Newey-West errors


def per_person_ols(
    data: pl.DataFrame,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Per-person rows for every (person, marker, feature, window) in `data` (an
    `analysis_frame`): crude and adjusted OLS with Newey-West errors; q and status are left to
    `add_fdr_and_status`."""
    if data.height == 0:
        return conform_results(pl.DataFrame())
    wide, features = prepare_wide(data, biometrics)
    return primary_windows(person_rows(wide, features, settings, energy_adjust), settings)


class _Grid:
    """One (marker, window) chunk of the wide frame as a person x draw x column array (NaN
    padded to `width` draws) of the columns `names`, in one conversion."""

    def __init__(self, chunk: pl.DataFrame, width: int, names: list[str]) -> None:
        sizes = chunk.group_by("_pid", maintain_order=True).agg(
            pl.col("person_id").first(), pl.len().alias("_n")
        )
        counts = sizes["_n"].to_numpy().astype(np.int64)
        self.person_ids = sizes["person_id"]
        g = np.repeat(np.arange(counts.size), counts)
        r = np.arange(chunk.height) - np.repeat(np.cumsum(counts) - counts, counts)
        values = chunk.select(pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in names)
        self.values = np.full((counts.size, width, len(names)), np.nan)
        self.values[g, r] = values.to_numpy()
        self.index = {c: i for i, c in enumerate(names)}

    def __call__(self, name: str) -> np.ndarray:
        return self.values[..., self.index[name]]


def person_rows(
    wide: pl.DataFrame,
    features: list[str],
    settings: Settings,
    energy_adjust: bool,
    people: range | None = None,
) -> pl.DataFrame:
    """Person-scope rows of every person in `wide` (`prepare_wide`'s), or of those whose `_pid`
    is in `people`: each fitted exactly as in a fit of everyone, so that groups of people give
    the same rows, bit for bit. That is why a group's arrays keep the draw axis as wide as
    everyone's: numpy's sums over that axis group their terms by its length."""
    parts = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        width = int(chunk.group_by("_pid").len().select(pl.col("len").max()).item())
        if people is not None:
            chunk = chunk.filter(pl.col("_pid").is_between(people.start, people.stop - 1))
            if chunk.height == 0:
                continue
        parts.append(_person_tests(marker, window, chunk, width, features, settings, energy_adjust))
    if not parts:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    # One frame at the end: building one per feature cost more than the fits.
    joined = {
        k: np.concatenate([p[k] for p in parts])
        if isinstance(parts[0][k], np.ndarray)
        else [v for p in parts for v in p[k]]
        for k in parts[0]
    }
    out = pl.DataFrame(joined).with_columns(
        pl.col(pl.Float64).fill_nan(None),
        pl.lit("person").alias("scope"),
        pl.lit("ols_adjusted_hac").alias("method"),
        pl.lit(1, dtype=pl.Int64).alias("n_persons"),
        pl.concat_str([pl.col("marker"), pl.lit("|person:"), pl.col("person_id")]).alias("family"),
    )
    return conform_results(out)


def _person_tests(
    marker: str,
    window: int,
    chunk: pl.DataFrame,
    width: int,
    features: list[str],
    settings: Settings,
    energy_adjust: bool,
) -> dict[str, Any]:
    """Every feature's per-person rows of one (marker, window) chunk (`wide` rows), feature after
    feature, as one batch of (feature, person) fits: a fit per feature cost more in numpy's
    per-call overhead than in arithmetic (a person has a few draws a window).

    Each feature's covariate candidates (`adjustment_candidates`, in their order) are padded
    with columns of zeros to the longest list. A padded column never varies, so it is never
    available (neither included nor a twin) and, unused, adds a unit diagonal to the fit, which
    leaves the fitted coefficients as they are (`batched_ols_hac`)."""
    cands = [adjustment_candidates(f, features, energy_adjust) for f in features]
    width_c = max(len(c) for c in cands)
    grid = _Grid(chunk, width, list(dict.fromkeys(["y", *features, *itertools.chain(*cands)])))
    people, nf = len(grid.person_ids), len(features)
    padded = [c + [""] * (width_c - len(c)) for c in cands]
    pick = np.array([[grid.index.get(c, 0) for c in row] for row in padded])  # (F, c)
    pad = np.array([[c == "" for c in row] for row in padded])
    of = np.repeat(np.arange(nf), people)  # the feature of each fit, (B,) with B = F x persons

    def per_fit(a: np.ndarray) -> np.ndarray:
        """(persons, T, F, ...) -> (B, T, ...), feature after feature, always a copy: with one
        person the reshape is a strided view, and numpy's sums over the draws then round
        differently from a fit of everyone (groups of people must give the same rows)."""
        return np.ascontiguousarray(np.moveaxis(a, 2, 0).reshape(nf * people, width, *a.shape[3:]))

    y = np.tile(grid("y"), (nf, 1))
    x = per_fit(grid.values[..., [grid.index[f] for f in features]])
    C = grid.values[..., pick]  # (persons, T, F, c)
    C[:, :, pad] = 0.0
    C = per_fit(C)
    mask = np.isfinite(y) & np.isfinite(x)
    n = mask.sum(axis=1).astype(float)
    X = np.concatenate([x[..., None], C], axis=-1)
    X = np.where(mask[..., None] & np.isfinite(X), X, 0.0)
    m = mask.astype(float)
    nn = np.maximum(n, 1.0)
    Xc = (X - (X.sum(axis=1) / nn[:, None])[:, None, :]) * m[..., None]
    ss = (Xc * Xc).sum(axis=1)  # (B, 1 + c)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(ss[:, 0] / (n - 1.0))
        mean_x = np.abs(X[..., 0].sum(axis=1) / nn)
        cov_xc = np.einsum("gt,gtc->gc", Xc[..., 0], Xc[..., 1:])
        r = cov_xc / np.sqrt(ss[:, :1] * ss[:, 1:])
        delta = cov_xc / ss[:, :1]
    finite_on_rows = np.all(np.isfinite(C) | ~mask[..., None], axis=1)
    available = finite_on_rows & (ss[:, 1:] > 1e-12) & (np.abs(np.nan_to_num(r)) < COLLINEAR_R)
    is_core = np.array([[c in CORE_ADJUSTMENT for c in row] for row in padded])[of]
    twins = (
        finite_on_rows
        & (ss[:, 1:] > 1e-12)
        & is_core
        & (np.abs(np.nan_to_num(r)) >= COLLINEAR_R)
        & np.array([f not in CORE_ADJUSTMENT for f in features])[of, None]
        & (n >= TWIN_MIN_DRAWS)[:, None]
    )
    priority = np.where(is_core, 3.0 + np.abs(np.nan_to_num(r)), 0.0)
    priority += np.array([[COVARIATE_PRIORITY.get(c, 0.0) for c in row] for row in padded])[of]
    eligible = available & (~is_core | (np.abs(np.nan_to_num(r)) >= PERSON_COVARY_R))
    priority = np.where(eligible, priority, -np.inf)
    rank = np.argsort(np.argsort(-priority, axis=1, kind="stable"), axis=1, kind="stable")
    room = np.maximum(n - 2.0 - PERSON_MIN_DF, 0.0)
    include = eligible & (rank < room[:, None])
    use_adj = np.concatenate([np.ones((n.size, 1), bool), include], axis=1)
    use_crude = np.zeros_like(use_adj)
    use_crude[:, 0] = True
    enough = n >= max(settings.min_n_person, 3)
    varies = np.nan_to_num(sd) > 1e-6 * np.maximum(1.0, mean_x)
    twinned = twins.any(axis=1)
    # Only these fits can be reported; the others (most, with a few draws a window) are not
    # fitted.
    reported = enough & varies & ~twinned
    adj = _fitted(reported, y, X, mask, use_adj)
    crude = _fitted(reported, y, X, mask, use_crude)
    ok = reported & adj.ok
    crude_eff = effects(crude.beta, crude.se, crude.df)
    explained_by = np.full(n.size, None, dtype=object)
    for i in np.flatnonzero(ok & (crude_eff["p"] < 0.05)):
        k = len(cands[of[i]])
        explained_by[i] = contributors(
            float(crude.beta[i]),
            float(adj.beta[i]),
            delta[i, :k],
            adj.coef[i, 1 : k + 1],
            cands[of[i]],
        )
    okf = np.where(ok, 1.0, np.nan)
    size = n.size
    columns: dict[str, Any] = {
        "person_id": grid.person_ids.to_list() * nf,
        "marker": [marker] * size,
        "feature": [f for f in features for _ in range(people)],
        "window_days": np.full(size, window, dtype=np.int64),
        "n": n.astype(np.int64),
        "note": _notes(
            n, enough, varies, twinned & enough & varies, twins, ok, of, padded, settings
        ),
        "sd_feature": np.where(n > 1, sd, np.nan),
        "beta": adj.beta * okf,
        "se": adj.se * okf,
        "adjusted_for": _labels(include, of, padded),
        "collinearity_vif": adj.vif * okf,
        "explained_by": explained_by.tolist(),
    }
    for prefix, fit in (("", adj), ("crude_", crude)):
        beta = fit.beta * okf
        for key, v in effects(beta, fit.se, fit.df).items():
            columns[prefix + key] = np.where(np.isfinite(beta) & (fit.se > 0), v, np.nan)
    return columns


def _fitted(
    rows: np.ndarray, y: np.ndarray, X: np.ndarray, mask: np.ndarray, use: np.ndarray
) -> BatchFit:
    """`batched_ols_hac` of the fits `rows` (B,) only; the others come out undefined (NaN, not
    ok). Each fit's numbers do not depend on the others in the batch."""
    part = batched_ols_hac(y[rows], X[rows], mask[rows], use[rows]) if rows.any() else None
    spread = {}
    for field in fields(BatchFit):
        empty = False if field.name == "ok" else np.nan
        out = np.full((rows.size, *X.shape[2:]) if field.name == "coef" else rows.size, empty)
        if part is not None:
            out[rows] = getattr(part, field.name)
        spread[field.name] = out
    return BatchFit(**spread)


def _labels(chosen: np.ndarray, of: np.ndarray, padded: list[list[str]]) -> list[str | None]:
    """The labels of each fit's `chosen` candidates (B, c) of its feature (`of`), joined (None
    for none), worked out once per feature and pattern."""
    width = chosen.shape[1]
    key = (of.astype(np.int64) << width) | (chosen @ (1 << np.arange(width, dtype=np.int64)))
    keys, codes = np.unique(key, return_inverse=True)
    text = [
        ", ".join(covariate_label(c) for j, c in enumerate(padded[k >> width]) if (k >> j) & 1)
        or None
        for k in keys.tolist()
    ]
    return [text[c] for c in codes.tolist()]


def _notes(
    n: np.ndarray,
    enough: np.ndarray,
    varies: np.ndarray,
    twinned: np.ndarray,
    twins: np.ndarray,
    ok: np.ndarray,
    of: np.ndarray,
    padded: list[list[str]],
    settings: Settings,
) -> list[str | None]:
    """Why a fit has no estimate, the first reason that applies: too few windows, a feature
    that does not vary, a twin of a core food, collinear covariates."""
    notes = np.full(n.size, None, dtype=object)
    notes[~ok] = "the adjusted model could not be fitted (collinear covariates)"
    for i in np.flatnonzero(twinned):
        notes[i] = twin_note([c for c, t in zip(padded[of[i]], twins[i], strict=True) if t])
    notes[enough & ~varies] = "the feature did not vary across these windows"
    need = settings.min_n_person
    notes[~enough] = [
        f"{k} complete windows; at least {need} needed" for k in n[~enough].astype(int)
    ]
    return notes.tolist()
