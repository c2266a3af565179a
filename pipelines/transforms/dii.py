"""The Dietary Inflammatory Index (Shivappa et al., Public Health Nutr 2014;17:1689-96).

For each food parameter with a known intake: z = (intake - global mean) / global SD; the z-score
becomes a percentile (standard normal CDF), centred on zero (2p - 1), and multiplied by the
parameter's inflammatory effect score. The DII is the sum over the parameters available, always
reported with that count (`dii_params`): a DII from 25 parameters is not comparable with one
from 45.

Unit traps, handled here once: the reference table wants caffeine in g (Cronometer reports mg);
vitamin D in ug (Cronometer's IU are converted by the adapter, 40 IU = 1 ug); vitamin A in ug RE,
for which we use the reported RAE (retinol activity equivalents; for preformed retinol the two are
equal, for carotenoids RAE is half of RE, so the DII from RAE is slightly more pro-inflammatory);
"Folic acid" in the table is synthetic folic acid: `folic_acid_ug` where a source reports it (NHANES
DR1TFA, as dietaryindex uses), else total folate (`folate_ug`, what diaries report) as the nearest
measure (documented limitation: it overstates the anti-inflammatory contribution).

Every DII parameter that a supported format reports has a canonical column here (29 of 45: see
docs/dii.md). The other 16 (eugenol, garlic, ginger, onion, saffron, turmeric, green/black
tea, pepper, thyme/oregano, rosemary and the six flavonoid classes) are in no export we read, so
they have no column and no DII here counts them.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
import polars as pl
from scipy.special import ndtr

# Canonical nutrient column -> (DII parameter, factor to the table's unit). Where two columns
# measure one parameter, the first listed that a row reports is used (never both).
NUTRIENT_TO_DII: dict[str, tuple[str, float]] = {
    "energy_kcal": ("Energy", 1.0),
    "protein_g": ("Protein", 1.0),
    "carbs_g": ("Carbohydrate", 1.0),
    "fat_g": ("Total fat", 1.0),
    "sat_fat_g": ("Saturated fat", 1.0),
    "mufa_g": ("MUFA", 1.0),
    "pufa_g": ("PUFA", 1.0),
    "trans_fat_g": ("Trans fat", 1.0),
    "cholesterol_mg": ("Cholesterol", 1.0),
    "fiber_g": ("Fibre", 1.0),
    "alcohol_g": ("Alcohol", 1.0),
    "caffeine_mg": ("Caffeine", 0.001),
    "omega3_g": ("n-3 fatty acids", 1.0),
    "omega6_g": ("n-6 fatty acids", 1.0),
    "vit_a_ug": ("Vitamin A", 1.0),
    "vit_c_mg": ("Vitamin C", 1.0),
    "vit_d_ug": ("Vitamin D", 1.0),
    "vit_e_mg": ("Vitamin E", 1.0),
    "vit_b6_mg": ("Vitamin B6", 1.0),
    "vit_b12_ug": ("Vitamin B12", 1.0),
    "folic_acid_ug": ("Folic acid", 1.0),
    "folate_ug": ("Folic acid", 1.0),
    "thiamin_mg": ("Thiamin", 1.0),
    "riboflavin_mg": ("Riboflavin", 1.0),
    "niacin_mg": ("Niacin", 1.0),
    "beta_carotene_ug": ("beta-Carotene", 1.0),
    "iron_mg": ("Iron", 1.0),
    "magnesium_mg": ("Magnesium", 1.0),
    "selenium_ug": ("Selenium", 1.0),
    "zinc_mg": ("Zinc", 1.0),
}


@cache
def dii_table() -> pl.DataFrame:
    """The 45 parameters: parameter, unit_per_day, effect_score, global_mean, global_sd."""
    text = resources.files("pipelines.data").joinpath("dii_shivappa2014.csv").read_bytes()
    return pl.read_csv(text)


def dii_components(intake: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """Per-row DII contribution of each parameter.

    `columns` maps a DII parameter name (as in the reference table) to a column of `intake` that
    is already in the table's unit. Returns one Float64 column per mapped parameter, null where the
    intake is null.
    """
    table = {r["parameter"]: r for r in dii_table().iter_rows(named=True)}
    unknown = set(columns) - set(table)
    if unknown:
        raise ValueError(f"not DII parameters: {sorted(unknown)}")
    out = {}
    for parameter, column in columns.items():
        ref = table[parameter]
        x = intake[column].cast(pl.Float64).to_numpy()
        z = (x - ref["global_mean"]) / ref["global_sd"]
        centred = 2.0 * ndtr(z) - 1.0
        out[parameter] = pl.Series(parameter, centred * ref["effect_score"], dtype=pl.Float64)
    return pl.DataFrame(out, schema={p: pl.Float64 for p in columns}).fill_nan(None)


def dii_scores(intake: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """`dii`, `dii_params` and `dii_no_alcohol` for every row of `intake` (see dii_components)."""
    parts = dii_components(intake, columns)
    if not columns:
        return pl.DataFrame(
            {
                "dii": pl.Series([None] * intake.height, dtype=pl.Float64),
                "dii_params": pl.Series([0] * intake.height, dtype=pl.Int64),
                "dii_no_alcohol": pl.Series([None] * intake.height, dtype=pl.Float64),
            }
        )
    values = parts.to_numpy()
    present = ~np.isnan(values.astype(float))
    total = np.where(present, values, 0.0).sum(axis=1)
    n = present.sum(axis=1)
    alcohol = (
        np.nan_to_num(parts["Alcohol"].to_numpy().astype(float))
        if "Alcohol" in parts.columns
        else np.zeros(intake.height)
    )
    return pl.DataFrame(
        {
            "dii": pl.Series(np.where(n > 0, total, np.nan)).fill_nan(None),
            "dii_params": pl.Series(n.astype(np.int64)),
            "dii_no_alcohol": pl.Series(np.where(n > 0, total - alcohol, np.nan)).fill_nan(None),
        }
    )


def add_dii(daily: pl.DataFrame) -> pl.DataFrame:
    """Add `dii`, `dii_params`, `dii_no_alcohol` to a frame with canonical nutrient columns."""
    measures: dict[str, list[pl.Expr]] = {}
    for col, (parameter, factor) in NUTRIENT_TO_DII.items():
        if col in daily.columns and daily[col].null_count() < daily.height:
            measures.setdefault(parameter, []).append(pl.col(col) * factor)
    scaled = daily.select(
        [pl.coalesce(exprs).alias(parameter) for parameter, exprs in measures.items()]
    )
    daily = daily.drop([c for c in ("dii", "dii_params", "dii_no_alcohol") if c in daily.columns])
    if not scaled.columns:  # no DII parameter reported at all
        return daily.with_columns(
            pl.lit(None, pl.Float64).alias("dii"),
            pl.lit(0, pl.Int64).alias("dii_params"),
            pl.lit(None, pl.Float64).alias("dii_no_alcohol"),
        )
    return daily.hstack(dii_scores(scaled, {c: c for c in scaled.columns}))
