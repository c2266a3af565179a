"""Asset checks that run inside their asset's step (`check_specs=` on the asset).

A check as a step of its own costs, every run, a DuckDB connection of its own and Dagster's step
events (each a SQLite commit), for a query that takes milliseconds. Declared on the asset, the
check keeps its name, description and severity in Dagster (the UI, the run's check evaluations),
and the asset step evaluates it on the connection it already holds, after writing its table.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg


@dataclass(frozen=True)
class TableCheck:
    """One check of `asset`, named after its function `evaluate`, which is called with the
    asset's connection (and whatever else the asset passes) and says whether the check passed."""

    asset: str
    evaluate: Callable[..., dg.AssetCheckResult]
    description: str

    @property
    def name(self) -> str:
        return self.evaluate.__name__

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, description=self.description)

    def run(self, *args: Any) -> dg.AssetCheckResult:
        result = self.evaluate(*args)
        return dg.AssetCheckResult(
            asset_key=dg.AssetKey(self.asset),
            check_name=self.name,
            passed=result.passed,
            metadata=result.metadata,
            severity=result.severity,
            description=result.description,
        )
