"""Per-person models: for each person, marker, feature and window, OLS of log marker on the
feature and the covariates that co-vary with it, batched over persons, with Newey-West errors
at a fixed-b critical value (`robust.batched_ols_hac`). See `pipelines.analysis.associations`."""

from __future__ import annotations

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
from pipelines.analysis.robust import batched_ols_hac
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
    """One (marker, window) chunk of the wide frame as person x draw arrays (NaN padded to
    `width` draws), built column by column as the fits ask for them."""

    def __init__(self, chunk: pl.DataFrame, width: int) -> None:
        sizes = chunk.group_by("_pid", maintain_order=True).agg(
            pl.col("person_id").first(), pl.len().alias("_n")
        )
        counts = sizes["_n"].to_numpy().astype(np.int64)
        self.person_ids = sizes["person_id"]
        self._chunk = chunk
        self._g = np.repeat(np.arange(counts.size), counts)
        self._r = np.arange(chunk.height) - np.repeat(np.cumsum(counts) - counts, counts)
        self._shape = (counts.size, width)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            out = np.full(self._shape, np.nan)
            out[self._g, self._r] = self._chunk[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            self._cache[name] = out
        return self._cache[name]


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
        grid = _Grid(chunk, width)
        parts += [
            _person_feature(marker, window, f, grid, features, settings, energy_adjust)
            for f in features
        ]
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


def _person_feature(
    marker: str,
    window: int,
    feature: str,
    col: _Grid,
    features: list[str],
    settings: Settings,
    energy_adjust: bool,
) -> dict[str, Any]:
    cands = adjustment_candidates(feature, features, energy_adjust)
    y, x = col("y"), col(feature)
    mask = np.isfinite(y) & np.isfinite(x)
    n = mask.sum(axis=1).astype(float)
    C = np.stack([col(c) for c in cands], axis=-1)  # (G, T, c)
    X = np.concatenate([x[..., None], C], axis=-1)
    X = np.where(mask[..., None] & np.isfinite(X), X, 0.0)
    m = mask.astype(float)
    nn = np.maximum(n, 1.0)
    Xc = (X - (X.sum(axis=1) / nn[:, None])[:, None, :]) * m[..., None]
    ss = (Xc * Xc).sum(axis=1)  # (G, 1 + c)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(ss[:, 0] / (n - 1.0))
        mean_x = np.abs(X[..., 0].sum(axis=1) / nn)
        cov_xc = np.einsum("gt,gtc->gc", Xc[..., 0], Xc[..., 1:])
        r = cov_xc / np.sqrt(ss[:, :1] * ss[:, 1:])
        delta = cov_xc / ss[:, :1]
    finite_on_rows = np.all(np.isfinite(C) | ~mask[..., None], axis=1)
    available = finite_on_rows & (ss[:, 1:] > 1e-12) & (np.abs(np.nan_to_num(r)) < COLLINEAR_R)
    is_core = np.array([c in CORE_ADJUSTMENT for c in cands])
    twins = (
        finite_on_rows
        & (ss[:, 1:] > 1e-12)
        & is_core[None, :]
        & (np.abs(np.nan_to_num(r)) >= COLLINEAR_R)
        & (feature not in CORE_ADJUSTMENT)
        & (n >= TWIN_MIN_DRAWS)[:, None]
    )
    priority = np.where(is_core[None, :], 3.0 + np.abs(np.nan_to_num(r)), 0.0)
    priority += np.array([COVARIATE_PRIORITY.get(c, 0.0) for c in cands])[None, :]
    eligible = available & (~is_core[None, :] | (np.abs(np.nan_to_num(r)) >= PERSON_COVARY_R))
    priority = np.where(eligible, priority, -np.inf)
    rank = np.argsort(np.argsort(-priority, axis=1, kind="stable"), axis=1, kind="stable")
    room = np.maximum(n - 2.0 - PERSON_MIN_DF, 0.0)
    include = eligible & (rank < room[:, None])
    use_adj = np.concatenate([np.ones((n.size, 1), bool), include], axis=1)
    use_crude = np.zeros_like(use_adj)
    use_crude[:, 0] = True
    adj = batched_ols_hac(y, X, mask, use_adj)
    crude = batched_ols_hac(y, X, mask, use_crude)

    enough = n >= max(settings.min_n_person, 3)
    varies = np.nan_to_num(sd) > 1e-6 * np.maximum(1.0, mean_x)
    ok = enough & varies & adj.ok & ~twins.any(axis=1)
    notes: list[str | None] = []
    names = np.array([covariate_label(c) for c in cands], dtype=object)
    patterns = include @ (1 << np.arange(len(cands), dtype=np.int64)) if cands else np.zeros(n.size)
    pattern_text = {
        int(p): ", ".join(names[(int(p) >> np.arange(len(cands))) & 1 == 1]) or None
        for p in np.unique(patterns)
    }
    crude_eff = effects(crude.beta, crude.se, crude.df)
    explained_by: list[str | None] = []
    for i in range(n.size):
        if not enough[i]:
            notes.append(f"{int(n[i])} complete windows; at least {settings.min_n_person} needed")
        elif not varies[i]:
            notes.append("the feature did not vary across these windows")
        elif twins[i].any():
            notes.append(twin_note([c for c, t in zip(cands, twins[i], strict=True) if t]))
        elif not ok[i]:
            notes.append("the adjusted model could not be fitted (collinear covariates)")
        else:
            notes.append(None)
        explained_by.append(
            contributors(
                float(crude.beta[i]), float(adj.beta[i]), delta[i], adj.coef[i, 1:], list(cands)
            )
            if ok[i] and crude_eff["p"][i] < 0.05
            else None
        )
    okf = np.where(ok, 1.0, np.nan)
    size = n.size
    columns: dict[str, Any] = {
        "person_id": col.person_ids.to_list(),
        "marker": [marker] * size,
        "feature": [feature] * size,
        "window_days": np.full(size, window, dtype=np.int64),
        "n": n.astype(np.int64),
        "note": notes,
        "sd_feature": np.where(n > 1, sd, np.nan),
        "beta": adj.beta * okf,
        "se": adj.se * okf,
        "adjusted_for": [pattern_text[int(p)] for p in patterns],
        "collinearity_vif": adj.vif * okf,
        "explained_by": explained_by,
    }
    for prefix, fit in (("", adj), ("crude_", crude)):
        beta = fit.beta * okf
        for k, v in effects(beta, fit.se, fit.df).items():
            columns[prefix + k] = np.where(np.isfinite(beta) & (fit.se > 0), v, np.nan)
    return columns
