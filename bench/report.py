"""The run's report: the Markdown results file, the table on stdout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.generate import NIGHTS
from bench.measure import StageResult
from bench.stages import BASELINES, INGESTS, LABELS, STAGES
from bench.targets import evaluate_targets, fmt

# The whole-job stages, whose CPU seconds (page workers included) follow their breakdown.
JOB_STAGES = ("job_first", "night_all", "night_tenth", "night_quiet")


def render_markdown(
    results: dict[str, StageResult],
    manifest: dict[str, Any],
    facts: dict[str, str],
    checks: dict[str, Any],
    command: str,
) -> str:
    base = results["baseline"]
    lines = [
        "# gutsignal scale benchmark: results",
        "",
        f"Written by `{command}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. "
        "Every stage ran in a fresh process; seconds are wall-clock time of the work (imports "
        "excluded), peak RSS is that process's high-water mark (imports included). Ratios "
        "compare stages measured in this same run. See bench/README.md for what each number "
        "means.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts.items()],
        "",
        "## Data",
        "",
        "| | |",
        "|---|---|",
        f"| people x days | {int(manifest['people']):,} x {manifest['days']} "
        f"({manifest['first_day']} to {manifest['last_day']}), seed {manifest['seed']} |",
        f"| diary rows (Cronometer servings) | {int(manifest['diary_rows']):,} |",
        f"| diary files (one per person per month) | {int(manifest['diary_files']):,} |",
        f"| diary size | {int(manifest['diary_bytes']) / 1e6:,.1f} MB |",
        f"| lab results (hs-CRP), files | {int(manifest['labs_rows']):,}, "
        f"{int(manifest['labs_files']):,} |",
        f"| next day (incremental case) | {int(manifest['next_day_rows']):,} rows in "
        f"{int(manifest['next_day_files']):,} files ({manifest['next_day']}) |",
        *[
            f"| {LABELS[folder]} | {int(manifest[f'{folder}_rows']):,} rows in "
            f"{int(manifest[f'{folder}_files']):,} files ({manifest['nights'][folder]}) |"
            for folder, _ in NIGHTS[1:]
            if f"{folder}_rows" in manifest and "nights" in manifest
        ],
        *(
            [
                f"| lab portal downloads (labs throughput) | "
                f"{int(manifest['lab_portal_rows']):,} results in "
                f"{int(manifest['lab_portal_files']):,} files of 10 to 100 "
                f"({int(manifest['lab_portal_bytes']) / 1e6:,.1f} MB) |"
            ]
            if "lab_portal_rows" in manifest
            else []
        ),
        f"| generator time | {manifest['seconds']} s |",
        "",
        "## Stages",
        "",
        "| stage | status | seconds | rows | rows/s | peak RSS MB | vs DuckDB read_csv "
        "| vs read_csv, schema given |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        r = results[stage]
        rows = "-" if r.rows is None else f"{r.rows:,} {r.data.get('unit', '')}"
        lines.append(
            f"| {LABELS[stage]} | {r.status} | {fmt(r.seconds, ',.2f')} | {rows} | "
            f"{fmt(r.rows_per_s, ',.0f')} | {fmt(r.peak_rss_mb, ',.0f')} | "
            f"{_ratio(results, stage, 'baseline')} | {_ratio(results, stage, 'baseline_schema')} |"
        )
    lines += [
        "",
        "## Targets (issue 7)",
        "",
        "| target | measured | verdict | note |",
        "|---|---|---|---|",
        *[f"| {t} | {m} | {v} | {n} |" for t, m, v, n in evaluate_targets(results, manifest)],
        "",
        "## Nothing lost",
        "",
        *[f"- {line}" for line in checks.get("lines", [])],
        "",
        "## Where the time goes",
        "",
    ]
    for stage in STAGES:
        r = results[stage]
        subs = r.data.get("substeps") or {}
        if r.status != "ok" and r.note:
            lines.append(f"- **{LABELS[stage]}**: {r.status}, {r.note}")
            continue
        if not subs or not r.seconds:
            continue
        parts = sorted(subs.items(), key=lambda kv: -kv[1])
        other = r.seconds - sum(subs.values())
        text = "; ".join(
            f"{name} {sec:,.1f} s ({100 * sec / r.seconds:.0f}%)" for name, sec in parts
        )
        if other > 0.05 * r.seconds:
            text += f"; other (Dagster run, commit, checks) {other:,.1f} s"
        if r.data.get("cpu_seconds") is not None and stage in JOB_STAGES:
            text += f"; {r.data['cpu_seconds']:,.1f} CPU s (page workers included)"
        lines.append(f"- **{LABELS[stage]}**: {text}")
    peaks = [
        f"- **{LABELS[stage]}**: "
        + "; ".join(
            f"{key} {p['peak_mb']:,.0f} MB (from {p['start_mb']:,.0f})"
            for key, p in results[stage].data["step_peaks"].items()
        )
        for stage in JOB_STAGES
        if results[stage].data.get("step_peaks")
    ]
    if peaks:
        lines += [
            "",
            "## Where the memory goes",
            "",
            "Each step's own peak RSS in the job's process (its high-water mark reset when the "
            "step starts; page workers not included), and its RSS when it started; the highest "
            "steps first.",
            "",
            *peaks,
        ]
    extras = []
    if results["ingest"].data:
        d = results["ingest"].data
        extras.append(
            f"- ingest wrote a warehouse of {d.get('warehouse_mb', 0):,.0f} MB; DuckDB's own "
            f"table of the same rows is {base.data.get('table_mb', 0):,.0f} MB."
        )
    for stage in ("ingest", "incremental"):
        d = results[stage].data
        if d and "files_read" in d:
            settled = "all keys" if d["keys_settled"] < 0 else f"{d['keys_settled']:,} keys"
            extras.append(
                f"- {LABELS[stage]}: read {d['files_read']:,} of {d['files']:,} files, "
                f"settled ownership for {settled}."
            )
    if results["analysis"].data:
        d = results["analysis"].data
        extras.append(
            f"- analysis: {d['people']:,} people, {d['diet_daily_rows']:,} person-days, "
            f"{d['draws']:,} draws, {d['exposure_window_rows']:,} exposure-window rows, "
            f"{d['associations']:,} tested pairs ({d['significant']:,} significant)."
        )
    if results["dashboards"].data:
        d = results["dashboards"].data
        extras.append(f"- dashboards: {d['pages']:,} HTML pages, {d['html_mb']:,.1f} MB.")
    for stage in ("job_first", *(folder for folder, _ in NIGHTS[1:]), "night_quiet"):
        work = results[stage].data.get("work") or {}
        if work:
            extras.append(
                f"- {LABELS[stage]}: "
                + "; ".join(
                    f"{k} {v:,}"
                    if isinstance(v, int) and not isinstance(v, bool)
                    else f"{k} {str(v).lower()}"
                    for k, v in work.items()
                )
                + "."
            )
    rss = [
        f"{LABELS[s]} {results[s].data['rss_after_imports_mb']:,.0f} MB"
        for s in STAGES
        if results[s].data.get("rss_after_imports_mb") is not None
    ]
    if rss:
        extras.append("- RSS right after imports (part of each peak): " + "; ".join(rss) + ".")
    extras += [
        f"- {LABELS[name]} SQL: `{results[name].data['sql']}`"
        for name in BASELINES
        if results[name].data.get("sql")
    ]
    lines += ["", *extras, ""] if extras else [""]
    return "\n".join(lines)


def _ratio(results: dict[str, StageResult], stage: str, baseline: str) -> str:
    if stage == "labs_ingest" and baseline == "baseline_schema":
        baseline = "labs_baseline"  # the same lab files, read with their schema
    r, b = results[stage], results[baseline]
    if stage not in INGESTS or not r.seconds or not b.seconds:
        return "-"
    return f"{r.seconds / b.seconds:.2f}x"


def print_table(results: dict[str, StageResult], manifest: dict[str, Any]) -> None:
    header = (
        f"{'stage':40} {'status':8} {'seconds':>9} {'rows/s':>12} {'peak MB':>9} "
        f"{'vs duckdb':>10} {'vs schema':>10}"
    )
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        r = results[stage]
        print(
            f"{LABELS[stage]:40} {r.status:8} {fmt(r.seconds, ',.2f'):>9} "
            f"{fmt(r.rows_per_s, ',.0f'):>12} {fmt(r.peak_rss_mb, ',.0f'):>9} "
            f"{_ratio(results, stage, 'baseline'):>10} "
            f"{_ratio(results, stage, 'baseline_schema'):>10}"
        )
    print()
    for target, measured, verdict, note in evaluate_targets(results, manifest):
        print(f"{verdict:5} {target}: {measured}" + (f" ({note})" if note else ""))
