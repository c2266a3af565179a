"""Between-person models for survey cohorts (NHANES): design-based estimates beside unweighted ones.

A cross-sectional cohort whose people carry a survey design in `persons` (`weight`, `stratum`,
`psu`; the NHANES adapter reads them from DEMO) is a probability sample of a population, not a
convenience sample: the people were drawn with unequal probabilities in clustered, stratified
stages. For each (marker, feature) this module fits

- `survey_wls` (the primary estimate, family `<marker>|cohort`): the log marker regressed on the
  feature with the sampling weights, its variance by Taylor linearisation over strata and PSUs
  (with replacement, as NCHS recommends for NHANES), and t intervals on the design degrees of
  freedom (PSUs - strata: 15 for one NHANES cycle). Fitted by the `svy` library
  (`Sample.glm.fit`); tests/test_survey.py checks it against a hand-computed sandwich.
  The people analysed (adults with a chronic marker value, the feature and every covariate) are a
  *domain* of the whole sample: everyone in `persons` with a design stays in the design with zero
  contribution outside the domain, so strata and PSUs are never lost to the subsetting (NCHS's
  advice: never drop records before a design-based analysis).
- `ols_between` (family `<marker>|cohort:unweighted`): ordinary least squares on the same people
  with the same covariates, so that the two rows differ only by the design. Its own family keeps
  the primary false-discovery family the size it would be without it.

Covariates, when someone in the domain has them: energy (`energy_kcal`, unless the feature
already contains it: see associations.TAUTOLOGICAL), age, sex, race/ethnicity (`race_eth`, a
category) and income-to-poverty ratio (`income_poverty`). A person in the domain without a
covariate the model uses is left out (complete cases); `note` says how many.

Which weight: the weight of the smallest subsample whose data the model uses (NHANES analytic
guidelines). hs-CRP is a MEC laboratory measure, so WTMEC2YR (from DEMO) is the weight when the
diet data carry no weight of their own; with dietary recall totals the right weight is the
dietary one (WTDRD1 for day 1, WTDR2D for the two-day average, in DR1TOT/DR2TOT), which the
shared two-day intake file does not carry: examples/nhanes/README.md says what follows. Combined
2-year cycles: NHANES divides each weight by the number of cycles; a common factor changes no
regression coefficient nor its linearised variance, so the published weights are used as they
are, and the stratum codes are distinct across cycles, so the designs stack.

Association, not causation: these describe differences between people in a population.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.between import between_test, finish_rows, person_features, person_response
from pipelines.analysis.model_frame import ENERGY, TAUTOLOGICAL, effects
from pipelines.analysis.multiple_testing import add_fdr_and_status
from pipelines.config import Settings
from pipelines.schema import RESULT_SCHEMA, UNWEIGHTED_FAMILY

DESIGN_COLUMNS = ("weight", "stratum", "psu")
# Person-level covariates in model order, with the words the note uses; categorical ones get
# one indicator per level beyond the first.
COVARIATES: dict[str, str] = {
    "age": "age",
    "sex": "sex",
    "race_eth": "race/ethnicity",
    "income_poverty": "income-to-poverty ratio",
}
CATEGORICAL = ("sex", "race_eth")


def has_design(persons: pl.DataFrame | None) -> bool:
    """Whether some person carries a complete survey design (weight, stratum and PSU)."""
    if persons is None or not set(DESIGN_COLUMNS) <= set(persons.columns):
        return False
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in DESIGN_COLUMNS)
    return persons.filter(complete).height > 0


def design_frame(persons: pl.DataFrame) -> pl.DataFrame:
    """Everyone with a complete design: person_id, weight, stratum, psu, weight_var, and the
    covariates the persons table has (missing ones as null columns)."""
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in DESIGN_COLUMNS)
    return persons.filter(complete & (pl.col("weight") >= 0)).select(
        pl.col("person_id").cast(pl.String),
        pl.col("weight").cast(pl.Float64),
        pl.col("stratum").cast(pl.String),
        pl.col("psu").cast(pl.String),
        (pl.col("weight_var") if "weight_var" in persons.columns else pl.lit(None))
        .cast(pl.String)
        .alias("weight_var"),
        *[
            (pl.col(c) if c in persons.columns else pl.lit(None))
            .cast(pl.String if c in CATEGORICAL else pl.Float64)
            .alias(c)
            for c in COVARIATES
        ],
    )


def survey_fit(
    data: pl.DataFrame, y: str, x: list[str], categorical: list[str], domain: str
) -> dict[str, Any]:
    """Design-based linear regression of `y` on `x` (+ indicators of `categorical`) in the domain
    `domain` (a boolean column) of `data` (weight, stratum, psu columns): the first `x`
    coefficient's beta, its Taylor-linearised se, the design degrees of freedom, and n.

    Rows outside the domain stay in the design (they fix its strata and PSUs) but contribute
    nothing; their other cells may hold anything non-null.
    """
    # Imported on first use: svy takes about a second to import, which every run without a
    # survey cohort (and every Dagster process loading the definitions) would otherwise pay.
    import svy

    sample = svy.Sample(data, svy.Design(stratum="stratum", psu="psu", wgt="weight"))
    terms: list[Any] = [*x, *[svy.Cat(c) for c in categorical]]
    fit = sample.glm.fit(y=y, x=terms, where=svy.col(domain)).fitted
    if fit is None:
        raise ValueError("the survey model returned no fit")
    coef = next(c for c in fit.coefs if c.term == x[0])
    # NCHS: t on the design degrees of freedom, PSUs - strata of the whole design (15 for one
    # NHANES cycle). svy, like R's svyglm, also subtracts the model's other coefficients (6 df
    # with eight covariate columns): more conservative than the NHANES analytic guidelines.
    psus = data.select("stratum", "psu").unique().height
    df = psus - data["stratum"].n_unique()
    if df < 1:
        raise ValueError(f"{psus} PSUs in {data['stratum'].n_unique()} strata leave no design df")
    return {"beta": float(coef.est), "se": float(coef.se), "df": float(df), "n": int(fit.stats.n)}


def _pct(beta: float, se: float, df: float) -> str:
    e = {k: float(v) for k, v in effects(beta, se, df).items()}
    return f"{e['effect_pct']:+.1f}% (95% CI {e['ci_low_pct']:+.1f} to {e['ci_high_pct']:+.1f})"


def survey_cross_sectional(
    draws_or_frame: pl.DataFrame,
    features_frame: pl.DataFrame,
    persons: pl.DataFrame,
    settings: Settings,
    *,
    eligible: pl.Series | None = None,
    features: list[str] | None = None,
    energy_adjust: bool = True,
    covariates: tuple[str, ...] = tuple(COVARIATES),
) -> pl.DataFrame:
    """`survey_wls` and unweighted `ols_between` rows for every (marker, feature), with q and
    status (see the module docstring).

    `persons`: everyone in the cohort (the design spans them all, children included);
    `eligible`: the person ids that may enter the models (e.g. adults), default everyone;
    `draws_or_frame` and `features_frame` as for `associations.cross_sectional`. `covariates`
    chooses among COVARIATES (the example script compares sets).
    """
    design = design_frame(persons)
    response = person_response(draws_or_frame)
    long = person_features(features_frame, features)
    if eligible is not None:
        keep = pl.DataFrame({"person_id": eligible.cast(pl.String)})
        response = response.join(keep, on="person_id", how="semi")
    energy = long.filter(pl.col("feature") == ENERGY).select(
        "person_id", pl.col("value").alias("_energy")
    )
    weight_vars = sorted(set(design["weight_var"].drop_nulls().to_list()))
    rows: list[dict[str, Any]] = []
    pairs = (
        response.select("marker")
        .unique()
        .join(long.select("feature").unique(), how="cross")
        .sort("marker", "feature")
    )
    for marker, feature in pairs.iter_rows():
        y = response.filter(pl.col("marker") == marker).select("person_id", "y")
        x = long.filter(pl.col("feature") == feature).select(
            "person_id", pl.col("value").alias("x")
        )
        adjust_energy = energy_adjust and (feature, ENERGY) not in TAUTOLOGICAL
        data = (
            design.join(y, on="person_id", how="left")
            .join(x, on="person_id", how="left")
            .join(energy, on="person_id", how="left")
        )
        base = {
            "scope": "cohort",
            "person_id": None,
            "marker": marker,
            "feature": feature,
            "window_days": None,
        }
        # People with the marker and the feature but no design (another cohort in the same
        # project) cannot enter a design-based model: counted in the note, never silently.
        no_design = (
            y.join(x.filter(pl.col("x").is_finite()), on="person_id")
            .join(design, on="person_id", how="anti")
            .height
        )
        survey_row, plain_row = _test(
            data, covariates, adjust_energy, weight_vars, settings, feature, no_design
        )
        rows.append(base | survey_row | {"method": "survey_wls", "family": f"{marker}|cohort"})
        rows.append(
            base
            | plain_row
            | {"method": "ols_between", "family": f"{marker}|cohort{UNWEIGHTED_FAMILY}"}
        )
    if not rows:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    return add_fdr_and_status(finish_rows(rows), settings)


def _test(
    data: pl.DataFrame,
    covariates: tuple[str, ...],
    adjust_energy: bool,
    weight_vars: list[str],
    settings: Settings,
    feature: str,
    no_design: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(survey row, unweighted row) fields for one marker and feature."""
    measured = (pl.col("y").is_finite() & pl.col("x").is_finite()).fill_null(False)
    # Weight 0: in the sample but not in the subsample the weight describes (interviewed, not
    # examined); such a person stands for nobody in the population.
    unweighted_people = data.filter(measured & (pl.col("weight") == 0)).height
    finite = measured & (pl.col("weight") > 0)
    analysable = data.filter(finite)
    # A covariate enters the model when someone analysable has it and it varies among them.
    used: list[str] = []
    if adjust_energy and analysable["_energy"].drop_nulls().n_unique() > 1:
        used.append("_energy")
    used += [c for c in covariates if analysable[c].drop_nulls().n_unique() > 1]
    complete = finite & pl.all_horizontal([pl.col(c).is_not_null() for c in used] or [pl.lit(True)])
    data = data.with_columns(complete.fill_null(False).alias("_domain"))
    domain = data.filter(pl.col("_domain"))
    n = domain.height
    left_out = analysable.height - n
    names = [ENERGY if c == "_energy" else c for c in used]
    words = ["energy (kcal)" if c == "_energy" else COVARIATES[c] for c in used]
    xs = domain["x"].to_numpy()
    sd = float(np.std(xs, ddof=1)) if n > 1 else None
    common: dict[str, Any] = {
        "n": n,
        "n_persons": n,
        "sd_feature": sd,
        "covariates": ",".join(names),
    }
    notes = ["between persons (one draw each)"]
    if words:
        notes.append("adjusted for " + ", ".join(words))
    if left_out:
        missing = [
            w
            for c, w in zip(used, words, strict=True)
            if analysable[c].null_count()  # which covariates cost people
        ]
        notes.append(f"{left_out} without {' or '.join(missing)} left out")
    if unweighted_people:
        notes.append(f"{unweighted_people} with survey weight 0 left out")
    if no_design:
        notes.append(f"{no_design} without a survey design (weight, stratum, PSU) left out")
    if n < settings.min_n_cohort:
        note = f"{n} people with the marker, the feature and the covariates; "
        note += f"at least {settings.min_n_cohort} needed"
        return common | {"note": note}, common | {"note": note}
    if not (sd or 0.0) > 1e-6 * max(1.0, abs(float(np.mean(xs)))):
        return common | {"note": "the feature did not vary"}, common | {
            "note": "the feature did not vary"
        }

    # Unweighted OLS on the same people with the same covariates.
    extra: list[np.ndarray] = []
    for c in used:
        if c in CATEGORICAL:
            levels = sorted(domain[c].unique().to_list())
            extra.extend((domain[c] == level).cast(pl.Float64).to_numpy() for level in levels[1:])
        else:
            extra.append(domain[c].cast(pl.Float64).to_numpy())
    plain = between_test(domain["y"].to_numpy(), domain["x"].to_numpy(), extra, [])
    plain_row = common | plain
    if plain.get("beta") is not None:
        plain_row["note"] = "; ".join([*notes, "unweighted (no survey design)"])

    # Out-of-domain cells are filled so that no row leaves the design.
    filled = data.with_columns(
        *[
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(0.0).alias(c)
            for c in ("y", "x", "_energy")
        ],
        *[pl.col(c).fill_null(0.0) for c in used if c not in CATEGORICAL and c != "_energy"],
        *[pl.col(c).fill_null(domain[c][0]) for c in used if c in CATEGORICAL],
    )
    continuous = ["x", *[c for c in used if c not in CATEGORICAL]]
    try:
        fit = survey_fit(filled, "y", continuous, [c for c in used if c in CATEGORICAL], "_domain")
    except Exception as exc:  # svy raises its own error types; any failure is a note, not a crash
        title = getattr(exc, "title", None) or str(exc) or type(exc).__name__
        survey = common | {"note": f"the survey-design model could not be fitted: {title}"}
        return survey, plain_row
    strata = data["stratum"].n_unique()
    psus = data.select("stratum", "psu").unique().height
    design_note = (
        f"survey design: weights {', '.join(weight_vars) or 'weight'}, {strata} strata, "
        f"{psus} PSUs, Taylor linearisation, t on {fit['df']:.0f} df"
    )
    survey_notes = [*notes, design_note]
    if plain.get("beta") is not None:
        survey_notes.append(
            f"unweighted: {_pct(plain['beta'], plain['se'], plain['df'])}"
            + f" per unit of {feature}"
        )
    survey_row = common | {
        "beta": fit["beta"],
        "se": fit["se"],
        "df": fit["df"],
        "note": "; ".join(survey_notes),
    }
    return survey_row, plain_row
