"""How many more draws would a person need before a change of 20% or 50% could be detected?

The question a user asks after three CRP draws: "is that enough to tell?". We answer it for a
before/after comparison (e.g. a month without ultra-processed food against a month with it) of
the person's chronic draws on the log scale: with a within-person SD `s` of ln(marker), detecting
a change of ln(1 + d) with a two-sided test at alpha = 0.05 and 80% power needs, per period,

    n = 2 * (z_0.975 + z_0.80)^2 * s^2 / ln(1 + d)^2          (rounded up, at least 2)

draws (the normal approximation of the two-sample t test; Lenth 2001). Draws needed in total are
twice that. `s` is the SD of the person's chronic log values once there are at least 4 of them;
before that we use the published within-person variation of CRP (CV_I 42%, Macy 1997, so
s = sqrt(ln(1 + 0.42^2)) = 0.40), because an SD from two or three draws is too unstable to plan
with. A decrease of d is ln(1 - d) (-20% is ln 0.8), which is a larger step on the log scale than
+20%; we report the harder of the two, the increase.
"""

from __future__ import annotations

import math

import polars as pl
from scipy.stats import norm

from pipelines.schema import SUFFICIENCY_SCHEMA

ALPHA = 0.05
POWER = 0.80
MIN_DRAWS_FOR_OWN_SD = 4
# Within-person biological variation, used until a person has enough draws of their own.
# hs-CRP: Macy 1997, measured with a high-sensitivity assay.
PRIOR_CV_I = {"hscrp": 0.42}
DEFAULT_CV_I = 0.30
CHANGES = (0.20, 0.50)


# Two-sided test at ALPHA with POWER: worked out once (scipy's ppf cost 0.6 s a night for 2,000
# people when called per person).
_Z = float(norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER))


def draws_per_period(sd_log: float, change: float) -> int:
    """Draws needed in each of two periods to detect a relative change `change` (0.2 = 20%)."""
    delta = math.log1p(change)
    return max(2, math.ceil(2 * _Z**2 * sd_log**2 / delta**2))


def data_sufficiency(draws: pl.DataFrame) -> pl.DataFrame:
    """One row per person and marker with the draws needed to see a 20% and a 50% change."""
    chronic = draws.filter(pl.col("excluded_reason").is_null() & pl.col("log_value").is_not_null())
    stats = chronic.group_by("person_id", "marker").agg(
        pl.len().alias("n_chronic"), pl.col("log_value").std().alias("sd_log_observed")
    )
    rows = []
    for r in stats.sort("person_id", "marker").iter_rows(named=True):
        own = r["n_chronic"] >= MIN_DRAWS_FOR_OWN_SD and r["sd_log_observed"] is not None
        cv = PRIOR_CV_I.get(r["marker"], DEFAULT_CV_I)
        sd = float(r["sd_log_observed"]) if own else math.sqrt(math.log1p(cv**2))
        row = {
            "person_id": r["person_id"],
            "marker": r["marker"],
            "n_chronic": r["n_chronic"],
            "sd_log": sd,
            "sd_source": "observed" if own else f"published CV_I {cv:.0%}",
        }
        advice = []
        for change in CHANGES:
            total = 2 * draws_per_period(sd, change)
            more = max(0, total - r["n_chronic"])
            pct = round(change * 100)
            row[f"draws_needed_{pct}pct"] = total
            row[f"more_draws_{pct}pct"] = more
            advice.append(
                f"a {pct}% change: enough draws already ({total} needed)"
                if more == 0
                else f"a {pct}% change: about {more} more draws ({total} in total, half before "
                "and half after the change)"
            )
        row["advice"] = "To detect " + "; ".join(advice) + "."
        rows.append(row)
    return pl.DataFrame(rows, schema=SUFFICIENCY_SCHEMA)
