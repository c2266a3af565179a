"""Canonical column names shared by adapters, transforms, the warehouse and the reports.

The warehouse contract (names users' SQL relies on) lives here, once, so an adapter and the table it
feeds can never disagree about a column name.
"""

from __future__ import annotations

import polars as pl

# Canonical nutrient columns: snake case, unit last. Adapters fill what their format reports and
# leave the rest null ("not reported", never zero).
NUTRIENTS: dict[str, str] = {
    "energy_kcal": "Energy",
    "protein_g": "Protein",
    "carbs_g": "Carbohydrate",
    "fat_g": "Total fat",
    "sat_fat_g": "Saturated fat",
    "mufa_g": "Monounsaturated fat",
    "pufa_g": "Polyunsaturated fat",
    "trans_fat_g": "Trans fat",
    "cholesterol_mg": "Cholesterol",
    "fiber_g": "Fibre",
    "sugars_g": "Sugars",
    "added_sugars_g": "Added sugars",
    "sodium_mg": "Sodium",
    "alcohol_g": "Alcohol",
    "caffeine_mg": "Caffeine",
    "omega3_g": "Omega-3",
    "omega6_g": "Omega-6",
    "vit_a_ug": "Vitamin A (RAE)",
    "vit_c_mg": "Vitamin C",
    "vit_d_ug": "Vitamin D",
    "vit_e_mg": "Vitamin E",
    "vit_b6_mg": "Vitamin B6",
    "vit_b12_ug": "Vitamin B12",
    "folate_ug": "Folate",
    "iron_mg": "Iron",
    "magnesium_mg": "Magnesium",
    "selenium_ug": "Selenium",
    "zinc_mg": "Zinc",
    # DII parameters that Cronometer's full export and NHANES recalls report (see the DII section
    # of docs/dii.md): appended, so older tables only gain columns at the end.
    "thiamin_mg": "Thiamin",
    "riboflavin_mg": "Riboflavin",
    "niacin_mg": "Niacin",
    "beta_carotene_ug": "Beta-carotene",
    "folic_acid_ug": "Folic acid",
}

# Gut-food categories (see DESIGN.md); the feature for a category is f"{category}_servings".
CATEGORIES: tuple[str, ...] = (
    "fermented",
    "whole_grain",
    "legumes",
    "vegetables",
    "fruit",
    "nuts_seeds",
    "oily_fish",
    "red_meat",
    "processed_meat",
    "dairy",
    "gluten_grains",
    "added_sugar",
    "alcohol",
    "ultra_processed",
    "high_fodmap",
    "polyphenol_rich",
    # Beyond the contract's minimum: common foods that are not gut-relevant in themselves still
    # get a category, so "unmapped" means "the taxonomy does not know this food".
    "refined_grains",
    "poultry",
    "eggs",
    "seafood",
    "fats_oils",
)

DIET_ENTRY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "day": pl.Date,
    "time": pl.String,
    "meal": pl.String,
    "food": pl.String,
    "amount_raw": pl.String,
    "grams": pl.Float64,
    "category_raw": pl.String,
    **{n: pl.Float64 for n in NUTRIENTS},
    "line": pl.Int64,
}

LAB_RESULT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "collected_at": pl.Datetime("us"),
    "marker": pl.String,
    "loinc": pl.String,
    "value": pl.Float64,
    "unit": pl.String,
    "censored": pl.String,  # "<" or ">" when the lab reported a bound, else null
    "value_raw": pl.String,
    "unit_raw": pl.String,
    "test_name_raw": pl.String,
    "ref_low": pl.Float64,
    "ref_high": pl.Float64,
    "flag": pl.String,
    # hscrp/crp only: what decided the method (LOINC code, name, sources.yaml, evidence).
    "crp_method_basis": pl.String,
    "line": pl.Int64,
}

# A rejected input row. `reason` is a stable category ("not a number", "unknown unit for crp ...")
# so that rejects group by it; the offending cell, as text, is in `value` (null when no single
# cell is to blame), and the whole row in `raw`.
REJECT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "value": pl.String,
    "raw": pl.String,
}
# Rejects shown per reason by `gutsignal validate` and the dashboards, and how much of each value.
REJECT_EXAMPLES = 3
REJECT_VALUE_SHOWN = 80


def empty(schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """An empty frame with the given schema (adapters return it when a file has no rows)."""
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """Select and cast `df` to exactly `schema`, adding missing columns as nulls."""
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )


# Totals a source reports for a person-day or a period (Cronometer daily summary, MyFitnessPal meal
# totals summed per day, recall averages). `day` is null for cross-sectional cohorts (NHANES),
# where `period` says what the numbers summarise.
DIET_REPORTED_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "day": pl.Date,
    "period": pl.String,  # "day" or e.g. "recall_mean_2d"
    "completed": pl.Boolean,  # the user marked the day complete (Cronometer), else null
    **{n: pl.Float64 for n in NUTRIENTS},
    "line": pl.Int64,
    # How many input lines the row stands for: a day summed from several meal rows (MyFitnessPal)
    # or a Cronometer Total row with its meal-group rows. Null means one. Row accounting counts
    # input lines (`pipelines.adapters.base.lines_of`), so 872 meal rows are 872 lines read.
    "input_lines": pl.Int64,
}

# How diet_daily decided a day's `logged` (its `logged_rule`): the start of each rule's text
# (`pipelines.transforms.diet` adds the thresholds in force). Here so the dashboards can read
# them without importing the transforms.
RULE_NOTHING = "nothing logged"  # a gap day: no entries, no reported total
RULE_COMPLETE = "marked complete"  # a reported day the user ticked complete
RULE_ENERGY = "daily total"  # a reported day not ticked complete: judged by its energy
RULE_ENTRIES = "food entries"  # a day with food-level entries

PERSON_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "sex": pl.String,  # "female" | "male" | null
    "age": pl.Float64,  # years, at the time of the data
    "birth_year": pl.Int64,
    # Survey design (NHANES DEMO): the sampling weight and which variable it is (WTMEC2YR), the
    # stratum and the PSU (nested in the stratum). Between-person models of a cohort whose people
    # carry all three are design-based (method `survey_wls`); see pipelines/analysis/survey.py.
    "weight": pl.Float64,
    "weight_var": pl.String,
    "stratum": pl.String,
    "psu": pl.String,
    # Further covariates of survey cohorts: race/ethnicity as a category name, income-to-poverty
    # ratio (family income / poverty threshold; NHANES top-codes it at 5).
    "race_eth": pl.String,
    "income_poverty": pl.Float64,
    "line": pl.Int64,
}

BIOMETRIC_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "day": pl.Date,
    "time": pl.String,
    "metric": pl.String,  # e.g. "weight", "blood_pressure_systolic", "bloating", "resting_hr"
    "value": pl.Float64,
    "unit": pl.String,
    "value_raw": pl.String,
    "unit_raw": pl.String,
    # What `value` is measured on: "unit" (a physical quantity in `unit`), a rating scale such as
    # "0-10" or "0-4", "bristol_1-7" or "yes_no" (pipelines/outcome_vocabulary.py). Daily outcomes
    # always have one; Cronometer biometrics leave it null.
    "scale": pl.String,
    "line": pl.Int64,
}

# Canonical table -> schema. Each source feeds exactly one of these (see adapters.Format.target).
TARGET_SCHEMAS: dict[str, dict[str, pl.DataType | type[pl.DataType]]] = {
    "diet_entries": DIET_ENTRY_SCHEMA,
    "diet_daily_reported": DIET_REPORTED_SCHEMA,
    "lab_results": LAB_RESULT_SCHEMA,
    "persons": PERSON_SCHEMA,
    "biometrics": BIOMETRIC_SCHEMA,
}


# Tables the analysis and ingest steps write, whose schemas the dashboards also need: here, so
# that the dashboards' worker processes need not import the analysis code (scipy) or DuckDB.
RESULT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "scope": pl.String,
    "person_id": pl.String,
    "marker": pl.String,
    "feature": pl.String,
    "window_days": pl.Int64,
    "method": pl.String,
    "n": pl.Int64,
    "n_persons": pl.Int64,
    "effect_pct": pl.Float64,
    "ci_low_pct": pl.Float64,
    "ci_high_pct": pl.Float64,
    "p": pl.Float64,
    "q": pl.Float64,
    "status": pl.String,
    "note": pl.String,
    "family": pl.String,
    "sd_feature": pl.Float64,
    "beta": pl.Float64,
    "se": pl.Float64,
    # Between-person rows: the covariates in the model, comma-separated column names
    # ("energy_kcal,age,sex,race_eth,income_poverty"); null for the other methods.
    "covariates": pl.String,
    # Issue 16: the estimate above is adjusted; the crude one sits beside it.
    "crude_effect_pct": pl.Float64,
    "crude_ci_low_pct": pl.Float64,
    "crude_ci_high_pct": pl.Float64,
    "crude_p": pl.Float64,
    "adjusted_for": pl.String,  # labels of the covariates in the adjusted model, comma separated
    # Covariates that carry the crude-to-adjusted move (when the crude p < 0.05).
    "explained_by": pl.String,
    "collinearity_vif": pl.Float64,  # variance inflation of the feature from the covariates
    "window_role": pl.String,  # "primary" (the food's one test) or "lag_shape" (description)
    "primary_window_days": pl.Int64,
    # Person rows: the estimate partially pooled toward the cohort's (empirical Bayes).
    "pooled_effect_pct": pl.Float64,
    "pooled_ci_low_pct": pl.Float64,
    "pooled_ci_high_pct": pl.Float64,
}

# The `daily_effects` table (pipelines/analysis/daily_outcomes.py): per person x daily outcome
# (measure on one scale) x food x lag term.
DAILY_EFFECTS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "measure": pl.String,
    "scale": pl.String,
    "unit": pl.String,
    "feature": pl.String,
    "lag": pl.String,  # "0-3" (the food's test: the sum over lags 0-3), "0".."3", "4-10"
    "lag_from": pl.Int64,  # days back, first and last, of the term
    "lag_to": pl.Int64,
    "window_role": pl.String,  # "primary" (the food's one test) or "lag_shape"
    "method": pl.String,
    "n_days": pl.Int64,
    "hac_lags": pl.Int64,
    "sd_feature": pl.Float64,
    "estimate": pl.Float64,  # outcome units per extra serving a day
    "se": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p": pl.Float64,
    "q": pl.Float64,
    "status": pl.String,
    "note": pl.String,
    "family": pl.String,
}

# Between-person (cross-sectional) methods: `survey_wls` is design-based (weights, strata, PSUs),
# `ols_between` unweighted. A survey cohort gets both; its unweighted rows form their own FDR
# family, `<marker>|cohort` + UNWEIGHTED_FAMILY, so that they never enlarge the primary one.
BETWEEN_METHODS = ("ols_between", "survey_wls")
UNWEIGHTED_FAMILY = ":unweighted"

TRENDS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "n_draws": pl.Int64,
    "n_chronic": pl.Int64,
    "first_at": pl.Datetime("us"),
    "latest_at": pl.Datetime("us"),
    "latest_value": pl.Float64,
    "latest_acute": pl.Boolean,
    # "<" when the latest result was below the detection limit (latest_value is then LOD/sqrt(2)).
    "latest_censored": pl.String,
    "baseline": pl.Float64,
    "slope_pct_per_year": pl.Float64,
    "slope_ci_low": pl.Float64,
    "slope_ci_high": pl.Float64,
    "category": pl.String,
    "rcv_up_pct": pl.Float64,
    "rcv_down_pct": pl.Float64,
    "latest_change_pct": pl.Float64,
    "change_is_real": pl.Boolean,
    "rcv_rule": pl.String,
}

SUFFICIENCY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "n_chronic": pl.Int64,
    "sd_log": pl.Float64,
    "sd_source": pl.String,
    "draws_needed_20pct": pl.Int64,
    "more_draws_20pct": pl.Int64,
    "draws_needed_50pct": pl.Int64,
    "more_draws_50pct": pl.Int64,
    "advice": pl.String,
}

EXPOSURE_WINDOWS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "collected_at": pl.Datetime("us"),
    "window_days": pl.Int64,
    "feature": pl.String,
    "value": pl.Float64,
    "days_logged": pl.Int64,
    "days_in_window": pl.Int64,
    "complete": pl.Boolean,
}

INGEST_FILES_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "file_id": pl.String,
    "source": pl.String,
    "path": pl.String,
    "sha256": pl.String,
    "size_bytes": pl.Int64,
    "modified_at": pl.Datetime("us"),
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_rejected": pl.Int64,
    "rows_duplicate": pl.Int64,
    "status": pl.String,
    "error": pl.String,
    "ingested_at": pl.Datetime("us"),
}
