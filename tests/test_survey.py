"""Design-based between-person models for survey cohorts (pipelines/analysis/survey.py).

The reference is a hand-computed Taylor-linearised estimate: weighted least squares for the
coefficients and the stratified, with-replacement sandwich (A^-1 G A^-1, G summing
n_h / (n_h - 1) times the spread of the PSU score totals within each stratum), with the people
outside the domain kept in the design at zero contribution. The pipeline's numbers come from the
svy library; they must agree.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from pipelines.analysis.models import run_all_models
from pipelines.analysis.survey import has_design, survey_cross_sectional, survey_fit
from pipelines.config import Settings


def taylor_reference(
    y: np.ndarray,
    X: np.ndarray,
    w: np.ndarray,
    stratum: np.ndarray,
    psu: np.ndarray,
    domain: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """WLS coefficients and their linearised covariance, by hand."""
    wd = np.where(domain, w, 0.0)
    A = X.T @ (wd[:, None] * X)
    beta = np.linalg.solve(A, X.T @ (wd * y))
    scores = (wd * (y - X @ beta))[:, None] * X
    G = np.zeros((X.shape[1], X.shape[1]))
    for h in np.unique(stratum):
        in_h = stratum == h
        totals = np.array([scores[in_h & (psu == p)].sum(axis=0) for p in np.unique(psu[in_h])])
        n_h = len(totals)
        dev = totals - totals.mean(axis=0)
        G += n_h / (n_h - 1) * dev.T @ dev
    A_inv = np.linalg.inv(A)
    return beta, A_inv @ G @ A_inv


def small_design(seed: int = 3, n: int = 240) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stratum = rng.integers(1, 5, n)
    psu = rng.integers(1, 3, n) + (rng.uniform(size=n) < 0.1)  # some strata get a third PSU
    x = rng.normal(size=n)
    age = rng.uniform(20, 80, n)
    y = 0.2 * x + 0.01 * age + 0.3 * (stratum == 2) + rng.normal(scale=0.8, size=n)
    return pl.DataFrame(
        {
            "weight": rng.uniform(500, 20_000, n),
            "stratum": stratum.astype(str),
            "psu": psu.astype(str),
            "x": x,
            "age": age,
            "y": y,
            "_domain": rng.uniform(size=n) > 0.25,
        }
    )


def test_svy_fit_equals_the_hand_computed_taylor_linearisation() -> None:
    data = small_design()
    fit = survey_fit(data, "y", ["x", "age"], [], "_domain")
    X = np.column_stack([np.ones(data.height), data["x"].to_numpy(), data["age"].to_numpy()])
    beta, cov = taylor_reference(
        data["y"].to_numpy(),
        X,
        data["weight"].to_numpy(),
        data["stratum"].to_numpy(),
        data["psu"].to_numpy(),
        data["_domain"].to_numpy(),
    )
    assert fit["beta"] == pytest.approx(beta[1], rel=1e-9)
    assert fit["se"] == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-7)
    assert fit["n"] == int(data["_domain"].sum())
    # Design df: PSUs - strata of the whole design, not of the domain.
    psus = data.select("stratum", "psu").unique().height
    assert fit["df"] == psus - 4
    # The point estimate is plain weighted least squares (statsmodels WLS on the domain).
    dom = data["_domain"].to_numpy()
    wls = sm.WLS(data["y"].to_numpy()[dom], X[dom], weights=data["weight"].to_numpy()[dom]).fit()
    assert fit["beta"] == pytest.approx(wls.params[1], rel=1e-9)
    # ... and its design-based SE is not the model-based WLS one.
    assert abs(fit["se"] / wls.bse[1] - 1) > 0.01


def cohort(
    seed: int = 11, per_stratum: int = 120
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A survey cohort where weighting matters: strata 1-3 (weight 1000) are oversampled and
    the marker does not move with the feature there; in strata 4-6 (weight 9000) it rises 20% per
    unit. Population effect: (3 * 1000 * 0 + 3 * 9000 * b) / (3 * 1000 + 3 * 9000) = 0.9 b.
    Children (age 10) are in the design but not in the models."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(1, 7):
        slope = 0.0 if s <= 3 else np.log(1.2)
        for i in range(per_stratum):
            x = rng.normal(2.0, 1.0)
            child = i % 10 == 0
            rows.append(
                {
                    "person_id": f"p{s}_{i}",
                    "weight": 1000.0 if s <= 3 else 9000.0,
                    "weight_var": "WTMEC2YR",
                    "stratum": str(100 + s),
                    "psu": str(1 + i % 2),
                    "age": 10.0 if child else float(rng.uniform(20, 80)),
                    "sex": "female" if i % 3 else "male",
                    "race_eth": str(
                        rng.choice(["non_hispanic_white", "non_hispanic_black", "other_hispanic"])
                    ),
                    "income_poverty": None if i == 7 else float(rng.uniform(0, 5)),  # 6 people
                    "x": x,
                    "y": slope * x + rng.normal(0.0, 0.3),
                }
            )
    people = pl.DataFrame(rows)
    draws = people.select(
        "person_id",
        pl.lit("hscrp").alias("marker"),
        pl.col("y").alias("log_value"),
        pl.lit(None, dtype=pl.String).alias("excluded_reason"),
    )
    features = people.select("person_id", pl.col("x").alias("dii"))
    persons = people.drop("x", "y")
    return draws, features, persons


def test_weighted_estimate_recovers_the_population_effect_and_unweighted_sits_beside_it() -> None:
    draws, features, persons = cohort()
    adults = persons.filter(pl.col("age") >= 20)["person_id"]
    out = survey_cross_sectional(draws, features, persons, Settings(), eligible=adults)
    assert out.height == 2
    survey = out.filter(pl.col("method") == "survey_wls").row(0, named=True)
    plain = out.filter(pl.col("method") == "ols_between").row(0, named=True)
    assert (survey["family"], plain["family"]) == ("hscrp|cohort", "hscrp|cohort:unweighted")
    # 6 strata x 120 people, less 72 children and the 6 adults without income-to-poverty.
    assert survey["n"] == plain["n"] == 720 - 72 - 6
    assert survey["covariates"] == plain["covariates"] == "age,sex,race_eth,income_poverty"
    population = 100 * (1.2**0.9 - 1)  # +17.8% per unit
    assert survey["effect_pct"] == pytest.approx(population, abs=3.0)
    assert survey["ci_low_pct"] < population < survey["ci_high_pct"]
    assert plain["effect_pct"] == pytest.approx(100 * (1.2**0.5 - 1), abs=3.0)  # +9.5%
    assert plain["ci_high_pct"] < population  # unweighted misses the population effect
    assert survey["status"] == plain["status"] == "significant"
    # The design counts the children's PSUs too: 6 strata x 2 PSUs -> 6 df.
    assert "weights WTMEC2YR, 6 strata, 12 PSUs, Taylor linearisation, t on 6 df" in survey["note"]
    assert "6 without income-to-poverty ratio left out" in survey["note"]
    assert "unweighted: +" in survey["note"]


def test_covariate_sets_and_energy_follow_the_tautology_rule() -> None:
    draws, features, persons = cohort()
    features = features.with_columns(
        energy_kcal=pl.Series(np.linspace(1500, 2600, features.height)),
        fiber_g=pl.Series(np.linspace(10, 30, features.height)),
    )
    out = survey_cross_sectional(
        draws, features, persons, Settings(), covariates=("age", "sex")
    ).filter(pl.col("method") == "survey_wls")
    by_feature = {r["feature"]: r["covariates"] for r in out.iter_rows(named=True)}
    # The DII contains energy, so it is never adjusted for it; fibre is.
    assert by_feature == {
        "dii": "age,sex",
        "energy_kcal": "age,sex",
        "fiber_g": "energy_kcal,age,sex",
    }


def test_too_few_people_is_insufficient_not_a_number() -> None:
    draws, features, persons = cohort(per_stratum=3)
    out = survey_cross_sectional(draws, features, persons, Settings())
    assert set(out["status"]) == {"insufficient_data"}
    assert out["effect_pct"].null_count() == 2
    assert "at least 20 needed" in out["note"][0]


def test_run_all_models_uses_the_design_only_when_people_carry_one() -> None:
    draws, features, persons = cohort()
    draws = draws.with_columns(
        pl.lit(None, dtype=pl.Datetime("us")).alias("collected_at"), pl.lit(False).alias("acute")
    )
    windows = pl.DataFrame()
    settings = Settings(cohort_min_age=20)
    assert has_design(persons)
    with_design = run_all_models(draws, windows, persons, features, settings)
    assert sorted(with_design["method"]) == ["ols_between", "survey_wls"]
    plain = persons.with_columns(pl.lit(None, dtype=pl.Float64).alias("weight"))
    assert not has_design(plain)
    without = run_all_models(draws, windows, plain, features, settings)
    assert without["method"].to_list() == ["ols_between"]
    assert without["family"].to_list() == ["hscrp|cohort"]
    assert without["covariates"].to_list() == ["age,sex"]


def test_people_without_a_design_are_counted_not_silently_dropped() -> None:
    draws, features, persons = cohort()
    # Three adults of stratum 101 lose their weight (as if from a cohort without a design).
    lost = ["p1_1", "p1_2", "p1_3"]
    # ... and one was interviewed but not examined (weight 0): in the design, standing for nobody.
    persons = persons.with_columns(
        pl.when(pl.col("person_id").is_in(lost))
        .then(None)
        .when(pl.col("person_id") == "p1_4")
        .then(0.0)
        .otherwise(pl.col("weight"))
        .alias("weight")
    )
    adults = persons.filter(pl.col("age") >= 20)["person_id"]
    out = survey_cross_sectional(draws, features, persons, Settings(), eligible=adults)
    survey = out.filter(pl.col("method") == "survey_wls").row(0, named=True)
    assert survey["n"] == 720 - 72 - 6 - 3 - 1
    assert "1 with survey weight 0 left out" in survey["note"]
    assert "3 without a survey design (weight, stratum, PSU) left out" in survey["note"]
