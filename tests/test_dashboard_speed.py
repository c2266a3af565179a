"""What the dashboards' faster code must keep: rounding of many values at once exactly as `_r`
rounds one, the cached t-quantile, the per-cell fits, the calendars' grids and columns, the
per-page sentence cache, the person split and summaries; whole runs byte-identical when
repeated, in this process or in workers. Where a simple version of a computation reads more
plainly than the code, it is written out here and compared on odd inputs. Behaviour only: no
wall-clock limits.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from markupsafe import Markup
from scipy import stats

from pipelines.reports import dashboards, write_dashboards
from pipelines.reports import findings as rfindings
from pipelines.reports import html as rhtml
from pipelines.reports import inputs as rinputs
from pipelines.reports import people as rpeople
from pipelines.reports import summaries as rsummaries
from pipelines.reports import workers as rworkers
from pipelines.reports.figures import base as fbase
from pipelines.reports.figures import cell_scatter as fcellscatter
from pipelines.reports.figures import intake_calendar as fintakecalendar
from pipelines.reports.figures import logging_coverage as floggingcoverage
from pipelines.reports.html import is_num
from pipelines.reports.pages import person as rperson
from pipelines.schema import CATEGORIES
from tests.sections import section_payload
from tests.test_reports import PEOPLE, make_big_inputs, make_inputs


def _same(a: list[Any], b: list[Any]) -> bool:
    """Same values, same types (int vs float) and the same JSON text."""
    return (
        len(a) == len(b)
        and all(type(x) is type(y) and repr(x) == repr(y) for x, y in zip(a, b, strict=True))
        and json.dumps(a) == json.dumps(b)
    )


# --------------------------------------------------------------------------------------------
# Rounding


TRICKY: list[float | None] = [
    0.0,
    -0.0,
    None,
    math.nan,
    math.inf,
    -math.inf,
    1.0,
    -1.0,
    2.0,
    10.0,
    100.0,
    1000.0,
    0.1,
    0.01,
    0.001,
    -0.1,
    # Exact binary ties at the rounding digit, and decimal "ties" that are not exact in binary.
    0.125,
    0.375,
    -0.125,
    2.5,
    12.5,
    0.005,
    0.015,
    0.025,
    1.005,
    2.675,
    1.0049999999999999,
    0.045,
    9.995,
    99.95,
    999.5,
    # Huge, tiny and subnormal magnitudes, and the int/float switch at 1e15.
    1e15,
    1e15 - 0.5,
    -1e15,
    1e16,
    123456789012.345,
    2.0**40 + 0.5,
    2.0**53,
    1e300,
    -1e300,
    1e-7,
    1.23456789e-12,
    1e-300,
    5e-324,
    -5e-324,
    # Values a page really shows.
    0.45,
    1.8,
    24.0,
    3.14159,
    -0.4219,
    0.9999999999999999,
    1.0000000000000002,
]


def _near_powers_of_ten() -> list[float]:
    out = []
    for k in range(-25, 25):
        p = 10.0**k
        out += [p, -p, float(np.nextafter(p, 0)), float(np.nextafter(p, np.inf))]
    return out


def _random_values() -> list[float]:
    rng = np.random.default_rng(7)
    return [
        *rng.normal(0, 1, 20_000).tolist(),
        *rng.lognormal(0, 5, 20_000).tolist(),
        *(-rng.lognormal(0, 9, 20_000)).tolist(),
        *np.round(rng.uniform(-100, 100, 20_000), 3).tolist(),
        *np.round(rng.uniform(0, 10, 20_000), 2).tolist(),
        *[k / 1000 for k in range(-5000, 5000)],
        *[k / 8 for k in range(-800, 800)],
    ]


@pytest.mark.parametrize("digits", [2, 3, 5, 6])
def test_vectorised_rounding_matches_scalar_rounding(digits: int) -> None:
    values = TRICKY + _near_powers_of_ten() + _random_values()
    expected = [fbase._r(v, digits) for v in values]
    assert _same(fbase._r_many(values, digits), expected)
    assert _same(fbase._r_many(np.array(values, dtype=float), digits), expected)


def test_vectorised_rounding_edge_cases() -> None:
    assert fbase._r_many([]) == []
    assert fbase._r_many(np.empty((0, 3))) == []
    out = fbase._r_many([0.0, -0.0, None, math.nan, math.inf, 2.0, 1e15, 2.5e-3])
    assert _same(out, [0, 0, None, None, None, 2, 1e15, 0.0025])
    assert type(out[0]) is int and type(out[5]) is int and type(out[6]) is float
    # A 2-D array gives a list of rows, a Series a list.
    grid = np.array([[1.234, 5.678], [math.nan, -0.0]])
    assert fbase._r_many(grid) == [[1.23, 5.68], [None, 0]]
    assert _same(fbase._r_many(pl.Series([2.5, None, 1e-3])), [2.5, None, 0.001])


# --------------------------------------------------------------------------------------------
# The per-cell fits and their t quantiles


def test_fits_t_quantiles_are_scipy_per_cell_exactly() -> None:
    """`cell_fits` asks scipy once for the t quantile of each distinct n: every cell's is the
    scalar call's, cells sharing an n (in any order) included."""
    ns = [*range(3, 400), 1000, 10_000, 123_456, 7, 3, 1000, 7]
    points = pl.DataFrame(
        {
            "person_id": [f"p{k:06d}" for k, n in enumerate(ns) for _ in range(n)],
            "marker": "hscrp",
            "key": "fiber_g|28",
            "collected_at": None,
            "x": [float(i) for n in ns for i in range(n)],
            "y": 1.0,
            "ly": [math.sin(i) for n in ns for i in range(n)],
        },
        schema=fcellscatter.CELL_POINTS_SCHEMA,
    )
    fits = fcellscatter.cell_fits(points)
    assert fits["n"].to_list() == ns
    for n, t in zip(fits["n"].to_list(), fits["t"].to_list(), strict=True):
        assert t == float(stats.t.ppf(0.975, n - 2))
    assert fcellscatter.cell_fits(points.clear())["t"].dtype == pl.Float64


def _cell_fits_scalar(points: pl.DataFrame) -> dict[str, list[float | None]]:
    """The fits as first written: one row at a time, scipy called per cell."""
    stats_df = (
        points.with_columns(
            (pl.col("x") - pl.col("x").mean().over("key")).alias("_dx"),
            (pl.col("ly") - pl.col("ly").mean().over("key")).alias("_dy"),
        )
        .group_by("key")
        .agg(
            pl.len().alias("n"),
            pl.col("x").mean().alias("mx"),
            pl.col("ly").mean().alias("my"),
            (pl.col("_dx") ** 2).sum().alias("sxx"),
            (pl.col("_dx") * pl.col("_dy")).sum().alias("sxy"),
            (pl.col("_dy") ** 2).sum().alias("syy"),
        )
        .filter((pl.col("n") >= 3) & (pl.col("sxx") > 1e-12))
    )
    out: dict[str, list[float | None]] = {}
    for r in stats_df.iter_rows(named=True):
        n, sxx = int(r["n"]), float(r["sxx"])
        b = float(r["sxy"]) / sxx
        a = float(r["my"]) - b * float(r["mx"])
        rss = max(float(r["syy"]) - b * float(r["sxy"]), 0.0)
        s = math.sqrt(rss / (n - 2)) if n > 2 else 0.0
        t = float(stats.t.ppf(0.975, n - 2))
        out[r["key"]] = [
            fbase._r(a, 6),
            fbase._r(b, 6),
            fbase._r(s, 6),
            fbase._r(r["mx"], 6),
            fbase._r(sxx, 6),
            n,
            fbase._r(t, 5),
        ]
    return out


def _initial_cell_python(rows: list[dict[str, Any]], with_points: set[str]) -> str:
    """The cell a page's scatter shows first, as first written: the best row by a Python key."""

    def rank(r: dict[str, Any]) -> tuple[int, int, float, float, tuple[int, str], int]:
        q, p, w = r.get("q"), r.get("p"), r.get("window_days")
        days = int(w) if is_num(w) else None
        return (
            0 if fcellscatter.cell_key(r["feature"], w) in with_points else 1,
            0 if r.get("status") == "significant" else 1,
            float(q) if is_num(q) else 2.0,
            float(p) if is_num(p) else 2.0,
            rhtml.feature_order(str(r.get("feature") or "")),
            0 if days is None else days,
        )

    best = min((r for r in rows if r.get("feature") is not None), key=rank)
    return fcellscatter.cell_key(best["feature"], best["window_days"])


def test_initial_cells_match_the_python_ranking() -> None:
    """Ties, nulls, NaN and infinite q and p, unknown features, cells with and without points."""
    rng = np.random.default_rng(5)
    features = ["fiber_g", "dii", "fermented_servings", "zz_unknown", "aa_unknown", None]
    n = 4000
    findings = pl.DataFrame(
        {
            "person_id": rng.choice([f"p{i}" for i in range(60)], n).tolist(),
            "marker": rng.choice(["hscrp", "crp"], n).tolist(),
            "feature": rng.choice(np.array(features, dtype=object), n).tolist(),
            "window_days": rng.choice(np.array([7, 28, 56, None], dtype=object), n).tolist(),
            "status": rng.choice(
                np.array(["significant", "not_significant", None], dtype=object), n
            ).tolist(),
            "q": rng.choice(
                np.array([0.01, 0.5, None, math.nan, math.inf], dtype=object), n
            ).tolist(),
            "p": rng.choice(np.array([0.01, 0.2, None, math.nan], dtype=object), n).tolist(),
        },
        schema_overrides={"window_days": pl.Int64, "q": pl.Float64, "p": pl.Float64},
    )
    points = (
        findings.filter(pl.col("feature").is_not_null())
        .sample(fraction=0.3, seed=1)
        .select(
            "person_id",
            "marker",
            key=pl.concat_str(
                [pl.col("feature"), pl.lit("|"), pl.col("window_days").cast(pl.String)],
                ignore_nulls=False,
            ).fill_null(pl.col("feature") + "|all"),
        )
    )
    got = fcellscatter.initial_cells(findings, points)
    expected = {}
    for (pid, marker), rows in findings.group_by("person_id", "marker", maintain_order=True):
        dicts = rows.to_dicts()
        if any(r["feature"] is not None for r in dicts):
            keys = points.filter((pl.col("person_id") == pid) & (pl.col("marker") == marker))
            expected[(pid, marker)] = _initial_cell_python(dicts, set(keys["key"].to_list()))
    assert {(r[0], r[1]): r[2] for r in got.iter_rows()} == expected
    assert got["person_id"].is_sorted()


def test_column_wise_fits_match_row_by_row_fits() -> None:
    rng = np.random.default_rng(3)
    keys, xs, lys = [], [], []
    for k in range(300):
        n = int(rng.integers(1, 40))
        x = rng.gamma(2.0, 3.0, n)
        if k % 17 == 0:
            x = np.full(n, 2.5)  # no spread: no fit
        if k % 23 == 0:
            x = np.round(x)  # whole numbers
        ly = 0.3 - 0.05 * x + rng.normal(0, 0.4, n)
        if k % 29 == 0:
            ly = 0.3 - 0.05 * x  # a perfect line: rss at or below zero
        keys += [f"feature_{k % 40}|{k}"] * n
        xs += x.tolist()
        lys += ly.tolist()
    points = pl.DataFrame({"key": keys, "x": xs, "ly": lys}).with_columns(
        person_id=pl.lit("p1"), marker=pl.lit("hscrp")
    )
    # Another person and marker with the same cells: fitted apart from the first.
    other = points.with_columns(person_id=pl.lit("p2"), ly=pl.col("ly") * 2 + 1)
    everyone = fcellscatter.cell_fits(
        pl.concat([points, other, points.with_columns(marker=pl.lit("crp"))])
    )
    for person, frame in (("p1", points), ("p2", other)):
        fits = fcellscatter._fit_lists(everyone.filter(pl.col("person_id") == person), "hscrp")
        expected = _cell_fits_scalar(frame)
        assert fits == expected
        for key, fit in fits.items():
            assert _same(fit, expected[key])
    assert fcellscatter.cell_fits(points.head(2)).is_empty()


# --------------------------------------------------------------------------------------------
# Calendar


def _calendar_columns_scalar(diet: pl.DataFrame) -> list[str]:
    """`fintakecalendar._calendar_columns` as first written: Series operations per column."""
    order = ["fermented_servings", "ultra_processed_servings", "fiber_g"]
    order += [f"{c}_servings" for c in CATEGORIES if f"{c}_servings" not in order]
    order.append("dii")
    out = []
    logged = diet.filter(pl.col("logged"))
    for col in order:
        if col not in diet.columns or not diet.schema[col].is_numeric():
            continue
        vals = logged[col].drop_nulls().drop_nans() if logged.height else logged[col]
        if vals.len() == 0:
            continue
        top = vals.max()
        if col != "dii" and not (is_num(top) and top > 0):
            continue
        out.append(col)
    return out


def _odd_diet() -> pl.DataFrame:
    n = 60
    start = date(2025, 3, 5)
    rng = np.random.default_rng(11)
    logged = (rng.random(n) < 0.8).tolist()
    serv = np.where(logged, rng.poisson(1.3, n), np.nan)
    return pl.DataFrame(
        {
            "person_id": ["p"] * n,
            "day": [start + timedelta(days=i) for i in range(n)],
            "logged": logged,
            "fermented_servings": pl.Series(serv / 8, dtype=pl.Float32),
            "ultra_processed_servings": [float("nan")] * n,
            "fiber_g": np.where(logged, rng.normal(22, 7, n), np.nan).tolist(),
            "legumes_servings": pl.Series([None if v != v else int(v) for v in serv.tolist()]),
            "fruit_servings": pl.Series(
                [None if v != v else Decimal(str(v)) for v in serv.tolist()],
                dtype=pl.Decimal(10, 3),
            ),
            "vegetables_servings": [math.inf if i == 3 else 0.0 for i in range(n)],
            "nuts_seeds_servings": [-1.0] * n,
            "dairy_servings": [None] * n,
            "eggs_servings": [0.0] * (n - 1) + [1e-9],
            "dii": np.where(logged, rng.normal(0, 2, n), np.nan).tolist(),
            "red_meat_servings": pl.Series(["x"] * n),
        }
    ).with_columns(pl.col("dairy_servings").cast(pl.Float64))


def test_calendar_columns_match_per_column_series_code() -> None:
    for diet in (
        _odd_diet(),
        _odd_diet().with_columns(logged=pl.lit(False)),
        _odd_diet().clear(),
        make_inputs().diet_daily.filter(pl.col("person_id") == "alice"),
    ):
        assert fintakecalendar._calendar_columns(diet) == _calendar_columns_scalar(diet)


def test_category_calendar_grid_matches_day_by_day_rounding() -> None:
    diet = _odd_diet()
    fig = fintakecalendar.category_calendar(diet, "Daily intake")
    assert fig is not None
    cols = _calendar_columns_scalar(diet)
    first = diet["day"].min()
    assert isinstance(first, date)
    start = first - timedelta(days=first.weekday())
    logged = diet.filter(pl.col("logged")).unique("day", keep="first")
    for trace, col in zip(fig["data"], cols, strict=True):
        n_weeks = len(trace["x"])
        z: list[list[Any]] = [[None] * n_weeks for _ in range(7)]
        vals = logged[col].cast(pl.Float64).fill_nan(None).to_list()
        for d, v in zip(logged["day"].to_list(), vals, strict=True):
            off = (d - start).days
            z[off % 7][off // 7] = fbase._r(v, 2)
        assert json.dumps(trace["z"]) == json.dumps(z), col
        assert all(_same(a, b) for a, b in zip(trace["z"], z, strict=True))


# --------------------------------------------------------------------------------------------
# Small helpers


def test_is_num() -> None:
    class MyFloat(float):
        pass

    numbers: list[object] = [0, -3, 2**70, 1.5, -0.0, np.float64(2.0), MyFloat(4.0)]
    not_numbers: list[object] = [
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        None,
        "1",
        Decimal("1.5"),
        np.float64("nan"),
        np.float32(1.0),
        np.int64(3),
        MyFloat("inf"),
        [1.0],
    ]
    assert all(is_num(v) for v in numbers)
    assert not any(is_num(v) for v in not_numbers)
    with pytest.raises(OverflowError):
        is_num(10**400)


def test_cached_labels_and_badges() -> None:
    for f in ("fiber_g", "fermented_servings", "dii_window", "odd_thing", "", None, 3):
        assert rhtml.feature_label(f) == rhtml.feature_label(f)
        assert rhtml.feature_noun(f) == rhtml.feature_noun(f)
    assert rhtml.feature_label(None) == "feature" and rhtml.feature_noun(None) == "feature"
    assert rhtml.feature_order("fiber_g") == (1, "fiber_g")
    assert rhtml.status_badge(None) == rhtml.badge("unknown", "c-none")
    assert rhtml.status_badge("significant") == rhtml.badge(
        "significant after multiple testing", "s-significant"
    )
    assert rhtml.status_badge("<odd>") == rhtml.badge("<odd>", "c-none")
    assert rhtml.caveat() == '<span class="caveat">association, not causation</span>'


def test_findings_table_is_the_generic_table() -> None:
    """The findings table, written a row at a time, is what `table` writes from its cells."""
    rows = make_inputs().associations.to_dicts()
    rows += [
        {**rows[0], "status": s, "method": m, "note": n}
        for s, m, n in [
            ("significant", "ols", 'a "quoted" <note> & more'),
            (None, None, None),
            ("explained", "ols & co", "explained by fibre"),
            ("weird_status", "ols", ""),
        ]
    ]
    assert any(r.get("status") == "significant" for r in rows)
    ordered = rfindings._sorted_findings(rows)
    expected = rhtml.table(
        ["Finding (95% CI, q, n)", "Status", "Method", "Note"],
        [
            [
                Markup(f"{rhtml.esc(dashboards.finding_sentence(r))} {rhtml.caveat()}"),
                rhtml.status_badge(r.get("status")),
                rhtml.esc(r.get("method") or ""),
                rhtml.esc(r.get("note") or ""),
            ]
            for r in ordered
        ],
        row_classes=[
            "row-significant" if r.get("status") == "significant" else "" for r in ordered
        ],
    )
    assert rfindings._findings_table(ordered, dashboards.finding_sentence) == str(expected)


def test_sentence_cache_gives_finding_sentence() -> None:
    rows = make_inputs().associations.to_dicts()
    sentence = rfindings._sentences(rows)
    for r in rows:
        assert sentence(r) == dashboards.finding_sentence(r)
    other = {**rows[0], "effect_pct": 50.0}
    assert sentence(other) == dashboards.finding_sentence(other)


# --------------------------------------------------------------------------------------------
# Whole pages


def test_person_page_renders_identically_twice() -> None:
    data = rinputs.normalise(make_big_inputs(["alice", "bob"], days=240))
    summaries = dashboards.build_summaries(data)
    for s in summaries:
        first = dashboards.render_person_page(s, data, ["a warning"])
        second = dashboards.render_person_page(s, data, ["a warning"])
        assert first == second
        section = dashboards.render_person_section(s)
        assert section == dashboards.render_person_section(s)
        assert section_payload(section)["cells"]["maps"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def test_repeated_runs_write_identical_files(tmp_path: Path) -> None:
    data = make_big_inputs(["p1", "p2", "p3"], days=200, draw_every=10, seed=5)
    write_dashboards(tmp_path / "a", data)
    write_dashboards(tmp_path / "b", data)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 9  # 3 people's pages and sections, index, cohort, js
    for name in a:
        assert a[name] == b[name], name


# --------------------------------------------------------------------------------------------
# Figure HTML without plotly.io's per-call overhead


# --------------------------------------------------------------------------------------------
# Person pages in worker processes


def test_pool_only_for_big_cohorts_on_several_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    small = rworkers.PARALLEL_MIN_PEOPLE - 1
    assert rworkers._pool_size(small, 8) == 0
    assert rworkers._pool_size(2000, 1) == 0
    assert rworkers._pool_size(2000, 2) == 2
    # No more workers than tasks.
    assert rworkers._pool_size(rworkers.PARALLEL_MIN_PEOPLE, 64) == -(
        -rworkers.PARALLEL_MIN_PEOPLE // rworkers.PEOPLE_PER_TASK
    )
    monkeypatch.setattr(rworkers.os, "cpu_count", lambda: 1)
    monkeypatch.delattr(rworkers.os, "sched_getaffinity", raising=False)
    assert rworkers._pool_size(2000, None) == 0


def _niceness() -> int:
    return os.nice(0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="the OS has no process priorities")
def test_page_workers_run_below_the_process_that_feeds_them() -> None:
    """The step's process reads and plans each group while the workers render: they yield the
    CPUs to it (WORKER_NICENESS lower), so it is not slowed into the run's bottleneck."""
    parent = os.nice(0)
    with rworkers._page_pool(2) as pool:
        assert pool is not None
        seen = {pool.submit(_niceness).result() for _ in range(4)}
    assert rworkers.WORKER_NICENESS > 0
    assert seen == {min(parent + rworkers.WORKER_NICENESS, 19)}  # 19: the lowest priority


def test_a_refused_priority_leaves_the_worker_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A system that refuses the lower priority (a sandbox) must not break the pool: the
    initializer's error would end every worker before its first page."""
    asked: list[int] = []

    def refuse(increment: int) -> int:
        asked.append(increment)
        raise PermissionError("not allowed here")

    monkeypatch.setattr(rworkers.os, "nice", refuse)
    rworkers._lower_priority()
    assert asked == [rworkers.WORKER_NICENESS]


class _CountingPool(ProcessPoolExecutor):
    started = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).started += 1
        super().__init__(*args, **kwargs)


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Replace the generator `module.name` (as the dashboards module imported it) by one that
    records what it yields."""
    seen: list[Any] = []
    original = getattr(module, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        for item in original(*args, **kwargs):
            seen.append(item)
            yield item

    monkeypatch.setattr(dashboards, name, recording)
    return seen


def test_small_cohort_renders_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rworkers, "ProcessPoolExecutor", _CountingPool)
    monkeypatch.setattr(_CountingPool, "started", 0)
    written = write_dashboards(tmp_path, make_inputs(), workers=4)
    assert _CountingPool.started == 0
    assert sum(p.name.startswith("person_") for p in written) == 2 * len(PEOPLE)


def test_worker_processes_write_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages and returned paths are the same from workers, a few people's tables at a time, as
    from this process with everyone's at once; a second run with workers keeps every page it is
    not asked to render."""
    monkeypatch.setattr(rworkers, "ProcessPoolExecutor", _CountingPool)
    monkeypatch.setattr(_CountingPool, "started", 0)
    monkeypatch.setattr(rworkers, "PARALLEL_MIN_PAGES", 3)
    monkeypatch.setattr(rworkers, "PARALLEL_MIN_PEOPLE", 3)
    monkeypatch.setattr(rworkers, "PEOPLE_PER_TASK", 2)  # several tasks per worker
    # The tables the workers map are written to a temporary directory, removed afterwards.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(rworkers, "SHARED_MEMORY", scratch)
    people = ["p1", "P2", "p3", "p 4", "p5"]
    data = make_big_inputs(people, days=120, draw_every=10, seed=3)
    serial = write_dashboards(tmp_path / "serial", data, workers=1)
    assert _CountingPool.started == 0
    # Groups of two people: the workers render one group while the next is worked out.
    monkeypatch.setattr(dashboards, "RENDER_GROUP_PEOPLE", 2)
    groups = _counting(monkeypatch, rpeople, "page_table_groups")
    syncs: list[int] = []
    monkeypatch.setattr(rworkers.os, "sync", lambda: syncs.append(len(syncs)))
    parallel = write_dashboards(tmp_path / "parallel", data, workers=2)
    assert [len(group) for group, _ in groups] == [2, 2, 1]
    # The pages are synced (in the background) while the workers render the next group, and
    # the last group's at the end: the first group renders here (2 pages, fewer than 3).
    assert len(syncs) == 2
    assert _CountingPool.started == 1
    assert [p.name for p in parallel] == [p.name for p in serial]
    a, b = _tree(tmp_path / "serial"), _tree(tmp_path / "parallel")
    assert a.keys() == b.keys() and len(a) == 2 * len(people) + 3
    for name in a:
        assert a[name] == b[name], name
    again = write_dashboards(tmp_path / "parallel", data, workers=2, render=[])
    assert not [p for p in again if p.name.startswith("person_")]
    assert _tree(tmp_path / "parallel") == b
    # Nothing to render: no workers started, for the summaries alone.
    assert _CountingPool.started == 1
    (tmp_path / "parallel" / rinputs.person_page_name("p5")).unlink()
    # Three pages to render (two asked for, one missing): workers again.
    write_dashboards(tmp_path / "parallel", data, workers=2, render=["p1", "p3"])
    assert _CountingPool.started == 2
    assert _tree(tmp_path / "parallel") == b
    assert list(scratch.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Calendars (day by day, as a reference) and the person summary


def _random_diet(seed: int, n: int | None = None) -> pl.DataFrame:
    """A diet log with the cases the figures must keep: gaps of weeks, repeated and null days,
    rows out of order, null logged flags, nulls, NaN, infinities, huge values, ties at the
    rounding digit, integer, all-null, Decimal, Float32 and text columns."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 90)) if n is None else n
    start = date(2024, 1, 1) + timedelta(days=int(rng.integers(-20_000, 400)))
    if rng.random() < 0.5:
        offsets = np.sort(rng.choice(np.arange(3 * n + 40), size=n, replace=False))
    else:
        offsets = np.arange(n)
    if rng.random() < 0.3:
        offsets = offsets + (np.arange(n) > n // 2) * int(rng.integers(14, 60))
    days: list[date | None] = [start + timedelta(days=int(o)) for o in offsets]
    if rng.random() < 0.3 and n > 2:
        for i in rng.choice(n, size=max(1, n // 5)):
            days[int(i)] = days[int(rng.integers(0, n))]
    if rng.random() < 0.3 and n:
        for i in rng.choice(n, size=max(1, n // 8)):
            days[int(i)] = None
    if rng.random() < 0.3:
        days = [days[int(i)] for i in rng.permutation(n)]
    logged: list[bool | None] = [bool(x) for x in rng.random(n) < rng.choice([0, 0.5, 0.9, 1])]
    if rng.random() < 0.2 and n:
        logged[int(rng.integers(0, n))] = None
    special = rng.random() < 0.3
    odd = [math.nan, math.inf, -math.inf, 1e308, -1e-300, 0.0, -0.0]

    def floats(scale: float, p_null: float, eighths: bool = False) -> list[float | None]:
        v = rng.gamma(1.5, scale, n)
        out: list[float | None] = (np.round(v * 8) / 8 if eighths else v).tolist()
        for i in range(n):
            r = rng.random()
            if r < p_null:
                out[i] = None
            elif special and r < p_null + 0.05:
                out[i] = odd[int(rng.integers(0, len(odd)))]
        return out

    def ints(values: np.ndarray, p_null: float) -> pl.Series:
        return pl.Series(
            [int(x) if rng.random() > p_null else None for x in values], dtype=pl.Int64
        )

    cols: dict[str, Any] = {
        "person_id": ["p"] * n,
        "day": pl.Series(days, dtype=pl.Date),
        "logged": pl.Series(logged, dtype=pl.Boolean),
        "entries": ints(rng.integers(0, 40, n), 0.1),
        "fermented_servings": floats(0.8, 0.2, eighths=True),
        "ultra_processed_servings": floats(1.0, 0.1, eighths=True),
        "fiber_g": rng.normal(22, 8, n).tolist(),
        "legumes_servings": ints(rng.poisson(0.7, n), 0.2),
        "vegetables_servings": (
            pl.Series([None] * n, dtype=pl.Float64) if rng.random() < 0.5 else floats(2.0, 0.3)
        ),
        "fruit_servings": floats(1.0, 0.1, eighths=rng.random() < 0.5),
        "nuts_seeds_servings": (-rng.random(n)).tolist(),
        "poultry_servings": [0.0] * n,
        "whole_grain_servings": pl.Series(rng.integers(0, 4, n), dtype=pl.UInt8),
        "dii": rng.normal(0, 2.5, n).tolist(),
        "energy_kcal": rng.normal(2000, 300, n).tolist(),
    }
    if rng.random() < 0.15:
        cols["dairy_servings"] = pl.Series(
            [Decimal(str(round(float(x), 2))) for x in rng.gamma(1, 1, n)], dtype=pl.Decimal(10, 2)
        )
    if rng.random() < 0.15:
        cols["eggs_servings"] = pl.Series(rng.gamma(1, 1, n), dtype=pl.Float32)
    if rng.random() < 0.1:
        cols["red_meat_servings"] = ["x"] * n
    if rng.random() < 0.1:
        cols["dii"] = pl.Series([None] * n, dtype=pl.Float64)
    if rng.random() < 0.1:
        cols["fiber_g"] = pl.Series(rng.integers(0, 40, n), dtype=pl.Int32)
    return pl.DataFrame(cols)


def _edge_diets() -> list[pl.DataFrame]:
    base = _random_diet(1, n=40)
    return [
        base.clear(),
        base.with_columns(logged=pl.lit(False)),
        base.with_columns(day=pl.lit(None, dtype=pl.Date)),
        base.head(1),
        base.with_columns(day=pl.lit(date(2024, 5, 1))),  # one day, repeated
        base.select("person_id", "day", "logged", "entries"),  # no food columns
        base.with_columns(pl.col("^.*_servings$").cast(pl.Float64) * 0.0),
        pl.concat([base, base]),
    ]


def _same_repr(a: object, b: object) -> bool:
    """Equal values of the same types all the way down (repr shows 1 vs 1.0, NaN, None)."""
    return repr(a) == repr(b)


def _coverage_reference(diet: pl.DataFrame) -> tuple[list[str], list[Any], list[Any]] | None:
    """`coverage_calendar`'s grid as first written: Polars filter, then a loop over days."""
    days = diet.select("day", "entries", "logged").filter(pl.col("day").is_not_null())
    if days.is_empty():
        return None
    first, last = days["day"].min(), days["day"].max()
    if not isinstance(first, date) or not isinstance(last, date):
        return None
    logged = {
        d: e
        for d, e, ok in zip(
            days["day"].to_list(), days["entries"].to_list(), days["logged"].to_list(), strict=True
        )
        if ok
    }
    start = first - timedelta(days=first.weekday())
    n_weeks = (last - start).days // 7 + 1
    z: list[list[int | None]] = [[None] * n_weeks for _ in range(7)]
    hover = [[""] * n_weeks for _ in range(7)]
    day = first
    while day <= last:
        k, wd = (day - start).days // 7, day.weekday()
        if day in logged:
            z[wd][k] = 1
            n = logged[day]
            hover[wd][k] = f"{day.isoformat()}: logged" + (f" ({n} entries)" if is_num(n) else "")
        else:
            z[wd][k] = 0
            hover[wd][k] = f"{day.isoformat()}: not logged"
        day += timedelta(days=1)
    return [(start + timedelta(weeks=k)).isoformat() for k in range(n_weeks)], z, hover


def test_coverage_calendar_matches_day_loop() -> None:
    for k, diet in enumerate([_random_diet(seed) for seed in range(200)] + _edge_diets()):
        fig = floggingcoverage.coverage_calendar(diet, [date(2024, 1, 3)], "coverage")
        expected = _coverage_reference(diet)
        if expected is None:
            assert fig is None, k
            continue
        assert fig is not None, k
        heat = fig["data"][0]
        assert _same_repr((heat["x"], heat["z"], heat["customdata"]), expected), k


def _category_reference(diet: pl.DataFrame) -> list[tuple[str, Any, Any, Any]] | None:
    """Each `category_calendar` trace's (column, z, zmin, zmax), day by day from Polars."""
    days = diet.filter(pl.col("day").is_not_null())
    if days.is_empty():
        return None
    cols = _calendar_columns_scalar(days)
    first, last = days["day"].min(), days["day"].max()
    if not cols or not isinstance(first, date) or not isinstance(last, date):
        return None
    start = first - timedelta(days=first.weekday())
    n_weeks = (last - start).days // 7 + 1
    logged = days.filter(pl.col("logged")).unique("day", keep="first", maintain_order=True)
    out = []
    for col in cols:
        z: list[list[Any]] = [[None] * n_weeks for _ in range(7)]
        vals = [fbase._r(v, 2) for v in logged[col].cast(pl.Float64).to_list()]
        for d, v in zip(logged["day"].to_list(), vals, strict=True):
            z[(d - start).days % 7][(d - start).days // 7] = v
        present = [v for v in vals if v is not None]
        if col == "dii":
            top = max([abs(v) for v in present] + [1.0])
            out.append((col, z, -top, top))
        else:
            ranked = sorted(present)
            top = ranked[int(0.95 * (len(ranked) - 1))] if ranked else 1.0
            out.append((col, z, 0, max(top, 1e-9)))
    return out


def test_category_calendar_matches_polars_reference() -> None:
    for k, diet in enumerate([_random_diet(seed) for seed in range(200)] + _edge_diets()):
        fig = fintakecalendar.category_calendar(diet, "Daily intake")
        expected = _category_reference(diet)
        if expected is None:
            assert fig is None, k
            continue
        assert fig is not None, k
        got = [(t["name"], t["z"], t["zmin"], t["zmax"]) for t in fig["data"]]
        want = [(rhtml.pesc(rhtml.feature_label(c)), z, lo, hi) for c, z, lo, hi in expected]
        assert _same_repr(got, want), k


def _parts(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    split = rpeople._split(df)
    return {pid: split.df.slice(*at) for pid, at in split.rows.items()}


def test_person_parts_equal_partition_by() -> None:
    """`_split` finds runs of a sorted frame; any input gives what partition_by gives, each
    person's rows in their original order, rows without a person dropped."""
    rng = np.random.default_rng(7)
    ids = rng.choice(["b", "a", "c", None, "a b", "Ä"], size=500).tolist()
    frame = pl.DataFrame({"person_id": ids, "row": np.arange(500)})
    expected = {
        str(k[0]): v
        for k, v in frame.filter(pl.col("person_id").is_not_null())
        .partition_by("person_id", as_dict=True)
        .items()
    }
    for df in (frame, frame.sort("person_id", maintain_order=True, nulls_last=True)):
        parts = _parts(df)
        assert parts.keys() == expected.keys()
        for pid, part in parts.items():
            assert part.equals(expected[pid])
    assert _parts(frame.clear()) == {}


def _coverage_query(diet: pl.DataFrame) -> tuple[object, object, int, int] | None:
    """The person summary's diet coverage as first written: one Polars query."""
    d = diet.select("day", "logged").filter(pl.col("day").is_not_null())
    lo, hi = (d["day"].min(), d["day"].max()) if d.height else (None, None)
    if lo is None:
        return None
    days = pl.col("day").filter(pl.col("logged")).unique().sort()
    n, widest = d.select(
        days.len().alias("n"), days.diff().dt.total_days().drop_nulls().max().alias("w")
    ).row(0)
    return lo, hi, n, int(widest) if widest is not None else 0


def test_diet_coverage_matches_the_query() -> None:
    rng = np.random.default_rng(11)
    start = date(2025, 1, 1)
    for trial in range(300):
        n = int(rng.integers(0, 40))
        days = [
            None if rng.random() < 0.1 else start + timedelta(days=int(rng.integers(0, 90)))
            for _ in range(n)
        ]
        logged = [None if rng.random() < 0.1 else bool(rng.random() < 0.7) for _ in range(n)]
        diet = pl.DataFrame(
            {"day": days, "logged": logged}, schema={"day": pl.Date, "logged": pl.Boolean}
        )
        assert rsummaries._diet_coverage(diet) == _coverage_query(diet), trial


def test_summaries_with_everyones_crp_sorted_at_once_equal_per_person_ones() -> None:
    """`build_summaries` hands each person their CRP draws from one sort of everyone's; the
    summary equals one that sorts the person's own draws, and counts as the first query did."""
    data = rinputs.normalise(make_big_inputs([f"p{i}" for i in range(6)], days=120))
    # Ties and nulls in the sort keys, acute and excluded draws.
    data.marker_draws = pl.concat(
        [data.marker_draws, data.marker_draws.head(5).with_columns(pl.lit(None).alias("day"))],
        how="vertical_relaxed",
    )
    now = dashboards.run_time(data.run_info)
    frames = rpeople._person_frames(data, now, rinputs._person_ids(data))
    assert any(f[-1] is not None and f[-1].height for f in frames)
    for f in frames:
        together = rsummaries._summarise(*f)
        alone = rsummaries._summarise(*f[:-1])
        assert together.crp.equals(alone.crp)
        assert (together.n_chronic, together.n_acute) == (alone.n_chronic, alone.n_acute)
        counts = alone.crp.select(
            (pl.col("excluded_reason").is_null() & ~pl.col("acute").fill_null(False)).sum(),
            (pl.col("acute").fill_null(False) | (pl.col("excluded_reason") == "acute")).sum(),
        ).row(0)
        assert alone.n_acute == counts[1]
        if not rhtml.is_num(alone.trend.get("n_chronic")):
            assert alone.n_chronic == counts[0]


def test_person_pages_read_only_the_diet_columns_they_keep() -> None:
    """Person frames carry the page's diet columns only (not the nutrients): a page rendered
    from them equals one rendered from every column, and the page key ignores the rest."""
    data = rinputs.normalise(make_big_inputs(["p0", "p1"], days=90))
    data.diet_daily = data.diet_daily.with_columns(
        protein_g=pl.lit(50.0), vit_c_mg=pl.lit(80.0), energy_kcal=pl.lit(2000.0)
    )
    data.run_info["data_window"] = "x"
    now = dashboards.run_time(data.run_info)
    ids = rinputs._person_ids(data)
    pruned = rpeople._person_frames(data, now, ids)
    full_diet = _parts(data.diet_daily)
    inputs = dashboards.DashboardInputs(run_info=data.run_info)
    for frames in pruned:
        kept = set(frames[2].columns)
        assert {"protein_g", "vit_c_mg", "energy_kcal"}.isdisjoint(kept)
        assert {"fermented_servings", "fiber_g", "dii", "logged", "entries"} <= kept
        full = (frames[0], frames[1], full_diet[frames[0]], *frames[3:-1], None)
        a = rpeople._summary(frames, frozenset())
        b = rpeople._summary(full, frozenset())  # type: ignore[arg-type]
        assert dashboards.render_person_page(a, inputs, []) == dashboards.render_person_page(
            b, inputs, []
        )


def test_quality_counts_and_median_equal_the_queries_they_replace() -> None:
    """The person quality table counts washout, merged and below-LOD draws and takes the median
    DII parameter count over logged days in Python; nulls count as the queries counted them."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(0, 12))
        crp = pl.DataFrame(
            {
                "excluded_reason": rng.choice(
                    ["post_acute_washout", "merged_into_visit", "acute", None], n
                ).tolist(),
                "below_lod": rng.choice([True, False, None], n).tolist(),
                "censored": rng.choice(["<", ">", None], n).tolist(),
            },
            schema={"excluded_reason": pl.String, "below_lod": pl.Boolean, "censored": pl.String},
        )
        m = int(rng.integers(0, 30))
        diet = pl.DataFrame(
            {
                "logged": rng.choice([True, False, None], m).tolist(),
                "dii_params": [
                    None if rng.random() < 0.2 else int(rng.integers(10, 46)) for _ in range(m)
                ],
            },
            schema={"logged": pl.Boolean, "dii_params": pl.Int64},
        )
        s = dashboards.PersonSummary(person_id="p", crp=crp, diet=diet)
        html = rperson._quality_checks(s, rperson.logged_rule_text(diet))
        counts = crp.select(
            (pl.col("excluded_reason") == "post_acute_washout").sum().alias("washout"),
            (pl.col("excluded_reason") == "merged_into_visit").sum().alias("merged"),
            (pl.col("below_lod").fill_null(False) | (pl.col("censored") == "<")).sum().alias("lod"),
        ).row(0)
        for label, count in zip(
            ("post-acute washout", "Merged into a visit", "Below the detection limit"),
            counts,
            strict=True,
        ):
            at = html.index(label)
            row = html[at : html.index("</tr>", at)]
            assert row.endswith(f"<td>{count}</td>"), (trial, label, row)
        med = diet.select(pl.col("dii_params").filter(pl.col("logged")).median()).item()
        assert rsummaries._logged_median(diet, "dii_params") == med, trial
        if med is not None:
            assert f"{med:.0f} of 45" in html, trial
        else:
            assert "DII parameters available" not in html, trial
