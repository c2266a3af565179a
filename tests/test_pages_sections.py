"""A person page's section file (person_<id>.lag.js: the findings and the lag-window scan) is
planned by its own inputs: a night with a new diary day and no draw rewrites the page and keeps the
section file; a new draw, a changed finding or a wider range of DII parameters rewrites both; a
deleted section file is written again, and the files of a person gone are removed."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

from pipelines.reports import (
    DashboardInputs,
    person_page_name,
    person_section_name,
    write_dashboards,
)
from pipelines.steps.dashboards import update_dashboards
from pipelines.steps.pages import SECTION_STEP, STEP
from pipelines.warehouse import Warehouse
from tests.sections import read_section
from tests.test_reports import PEOPLE, make_inputs, with_person

ALICE, BOB = PEOPLE


def nightly(w: Warehouse, out: Path, data: DashboardInputs) -> tuple[set[str], set[str]]:
    """The dashboards step on `data`: the person pages and the section files it wrote."""
    written, _ = update_dashboards(w, out, data, workers=1)
    names = {p.name for p in written}
    return (
        {n for n in names if n.startswith("person_") and n.endswith(".html")},
        {n for n in names if n.endswith(".lag.js")},
    )


def new_diary_day(data: DashboardInputs, person: str, **values: object) -> None:
    """`person` logs one more day, like their last (with `values` changed)."""
    diet = data.diet_daily
    last = diet.filter(pl.col("person_id") == person).sort("day").tail(1)
    day = last.with_columns(pl.col("day") + timedelta(days=1), logged=pl.lit(True))
    day = day.with_columns(**{k: pl.lit(v, dtype=diet.schema[k]) for k, v in values.items()})
    data.diet_daily = pl.concat([diet, day])


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _same_as_a_full_render(out: Path, data: DashboardInputs, tmp: Path, person: str) -> None:
    """The person's page and section file are what a first run on `data` writes."""
    write_dashboards(tmp, data)
    for name in (person_section_name(person), person_page_name(person)):
        assert (out / name).read_bytes() == (tmp / name).read_bytes(), name


def test_a_new_diary_day_rewrites_the_page_and_keeps_the_section_file(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    out = tmp_path / "out"
    pages = {person_page_name(p) for p in PEOPLE}
    sections = {person_section_name(p) for p in PEOPLE}
    assert nightly(warehouse, out, make_inputs()) == (pages, sections)
    section = out / person_section_name(ALICE)
    before, kept = section.read_bytes(), _stat(section)
    page_before = (out / person_page_name(ALICE)).read_bytes()

    night = make_inputs()
    new_diary_day(night, ALICE)
    assert nightly(warehouse, out, night) == ({person_page_name(ALICE)}, set())
    # Not written again: the same file (inode and mtime), the same bytes.
    assert _stat(section) == kept and section.read_bytes() == before
    assert (out / person_page_name(ALICE)).read_bytes() != page_before
    _same_as_a_full_render(out, night, tmp_path / "fresh", ALICE)
    assert nightly(warehouse, out, night) == (set(), set())


def test_a_new_draw_or_a_changed_finding_rewrites_page_and_section(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())

    drawn = make_inputs()
    with_person(drawn, "marker_draws", BOB, pl.col("value") * 1.1)
    both = ({person_page_name(BOB)}, {person_section_name(BOB)})
    assert nightly(warehouse, out, drawn) == both
    _same_as_a_full_render(out, drawn, tmp_path / "drawn", BOB)

    refit = make_inputs()
    with_person(refit, "marker_draws", BOB, pl.col("value") * 1.1)
    with_person(refit, "associations", ALICE, pl.col("effect_pct") - 5)
    assert nightly(warehouse, out, refit) == (
        {person_page_name(ALICE)},
        {person_section_name(ALICE)},
    )
    _same_as_a_full_render(out, refit, tmp_path / "refit", ALICE)


def test_a_wider_range_of_dii_parameters_rewrites_the_section(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """The findings' sentences quote the range of DII parameters of the person's logged days:
    a new day that widens it rewrites the section file, one inside it does not."""
    out = tmp_path / "out"
    base = make_inputs()
    base.diet_daily = base.diet_daily.with_columns(dii_params=pl.lit(27, dtype=pl.Int64))
    nightly(warehouse, out, base)
    assert "27 of 45 parameters" in read_section(out, ALICE)["findings"]

    inside = make_inputs()
    inside.diet_daily = base.diet_daily
    new_diary_day(inside, ALICE, dii_params=27)
    assert nightly(warehouse, out, inside) == ({person_page_name(ALICE)}, set())

    wider = make_inputs()
    wider.diet_daily = inside.diet_daily
    new_diary_day(wider, ALICE, dii_params=20)
    assert nightly(warehouse, out, wider) == (
        {person_page_name(ALICE)},
        {person_section_name(ALICE)},
    )
    assert "20-27 of 45 parameters" in read_section(out, ALICE)["findings"]


def test_a_deleted_section_file_is_written_again(tmp_path: Path, warehouse: Warehouse) -> None:
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())
    (out / person_section_name(ALICE)).unlink()
    assert nightly(warehouse, out, make_inputs()) == (set(), {person_section_name(ALICE)})
    _same_as_a_full_render(out, make_inputs(), tmp_path / "fresh", ALICE)


def test_the_files_of_a_person_gone_are_removed_and_old_temp_files_of_both_kinds(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())
    # What a run killed mid-write leaves: a temp file of a page and of a section file.
    old = time.time() - 2 * 3600
    temps = [
        out / f".{person_page_name(ALICE)}.x1.tmp",
        out / f".{person_section_name(ALICE)}.x2.tmp",
    ]
    for temp in temps:
        temp.write_text("half")
        os.utime(temp, (old, old))

    _, sections = nightly(warehouse, out, make_inputs([ALICE]))
    assert sections == set()  # alice's findings are as they were
    person_files = {p.name for p in out.iterdir() if p.name.startswith("person_")}
    assert person_files == {person_page_name(ALICE), person_section_name(ALICE)}
    assert not any(t.exists() for t in temps)


def test_both_plans_are_recorded_once_the_files_are_written(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    nightly(warehouse, tmp_path / "out", make_inputs())
    with warehouse.read() as conn:
        rows = conn.execute(
            "SELECT step, count(*) FROM person_inputs GROUP BY step ORDER BY step"
        ).fetchall()
    assert rows == sorted([(STEP, len(PEOPLE)), (SECTION_STEP, len(PEOPLE))])


def test_a_changed_window_rewrites_the_section_only(tmp_path: Path, warehouse: Warehouse) -> None:
    """The windows enter the section's plan as a fingerprint per person taken in DuckDB (they
    are read only for the section files rendered): a changed complete window of alice's
    rewrites her section file, not her page, and nobody else's files."""
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())
    moved = make_inputs()
    assert moved.exposure_windows.filter(pl.col("complete")).height
    with_person(moved, "exposure_windows", ALICE, pl.col("value") + 1.0)
    assert nightly(warehouse, out, moved) == (set(), {person_section_name(ALICE)})
    _same_as_a_full_render(out, moved, tmp_path / "fresh", ALICE)
    assert nightly(warehouse, out, moved) == (set(), set())
