"""Weighted against unweighted: the NHANES example's between-person estimates, four ways.

Run it after `gutsignal run --project-dir examples/nhanes` (from the repository root):

    .venv/bin/python examples/nhanes/weighting.py [--project-dir examples/nhanes]

For each feature it prints, as a Markdown table, the % difference in hs-CRP per unit with its
95% CI, design-based (`survey_wls`: WTMEC2YR weights, strata and PSUs, Taylor linearisation) and
unweighted (`ols_between`), each adjusted for age and sex only and for age, sex, race/ethnicity
and income-to-poverty ratio (energy too, where the feature does not contain it). The pipeline
itself stores the fully adjusted pair in `associations`; this script reads the same warehouse
tables and calls the same function, so its last two columns equal those rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from pipelines.analysis.models import cohort_people
from pipelines.analysis.survey import survey_cross_sectional
from pipelines.project import Project

FEATURES = (
    "dii",
    "fiber_g",
    "fiber_g_per_1000kcal",
    "magnesium_mg",
    "sat_fat_g",
    "alcohol_g",
    "vit_e_mg",
    "omega3_g",
)
COVARIATE_SETS = {
    "age, sex": ("age", "sex"),
    "+ race/ethnicity, income": ("age", "sex", "race_eth", "income_poverty"),
}


def cell(row: dict) -> str:
    if row["effect_pct"] is None:
        return "n/a"
    # Per mg or per gram, effects are small: two decimals keep their CI readable.
    d = 1 if abs(row["effect_pct"]) >= 1 else 2
    low, high = row["ci_low_pct"], row["ci_high_pct"]
    return f"{row['effect_pct']:+.{d}f}% ({low:+.{d}f} to {high:+.{d}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project-dir", type=Path, default=Path(__file__).resolve().parent, help="example root"
    )
    args = parser.parse_args()
    project = Project(args.project_dir)
    settings = project.config().settings
    wh = project.warehouse()
    draws = wh.table("marker_draws").filter(pl.col("collected_at").is_null())
    persons = wh.table("persons")
    features = wh.table("diet_summary").drop("period", "dii_params", strict=False)
    eligible = cohort_people(persons, settings)["person_id"]
    results = {
        name: survey_cross_sectional(
            draws,
            features,
            persons,
            settings,
            eligible=eligible,
            features=list(FEATURES),
            covariates=covariates,
        )
        for name, covariates in COVARIATE_SETS.items()
    }
    header = ["feature (per unit)", "n"]
    for name in COVARIATE_SETS:
        header += [f"unweighted, {name}", f"weighted, {name}"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for feature in FEATURES:
        line = [feature, ""]
        for result in results.values():
            mine = result.filter(pl.col("feature") == feature)
            rows = {r["method"]: r for r in mine.iter_rows(named=True)}
            if not rows:
                continue
            line[1] = f"{rows['survey_wls']['n']:,}"
            line += [cell(rows["ols_between"]), cell(rows["survey_wls"])]
        out.append("| " + " | ".join(line) + " |")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
