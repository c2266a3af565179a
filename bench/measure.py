"""The parent's side of a stage: run it in a fresh interpreter, read its result and peak RSS.

`run_child` launches `python -m bench.run --child <stage>` on the code snapshot and collects a
`StageResult`; `machine_facts` describes the machine the numbers were measured on.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stages import LABELS

REPO = Path(__file__).resolve().parent.parent


@dataclass
class StageResult:
    stage: str
    status: str = "skipped"  # ok | failed | timeout | skipped
    seconds: float | None = None
    peak_rss_mb: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def rows(self) -> int | None:
        return self.data.get("rows")

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds


def run_child(stage: str, workdir: Path, timeout_s: float, profile: bool = False) -> StageResult:
    """Run one stage in a fresh interpreter. Its peak RSS is the one the child reports
    (`stages.stage_peak_mb`); wait4's, which Linux starts at this process's RSS when the child
    was forked, only when the child reported nothing (a failure or a timeout): an upper bound."""
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    out = logs / f"{stage}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.run", "--child", stage, "--workdir", str(workdir)]
    cmd += ["--child-out", str(out)] + (["--profile-child"] if profile else [])
    # The children import the pipeline from the snapshot taken when the run started (their working
    # directory, which `python -m` puts first on sys.path), so code edited while the benchmark
    # runs cannot make two stages measure different code.
    code = workdir / "code"
    paths = [str(code), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    result = StageResult(stage)
    print(f"  {LABELS[stage]} ...", end="", flush=True)
    started = time.perf_counter()
    with (logs / f"{stage}.log").open("wb") as log:
        cwd = code if code.is_dir() else REPO
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout_s:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    result.peak_rss_mb = usage.ru_maxrss / 1024  # Linux: KB
    if timed_out:
        result.status = "timeout"
        result.note = f"stopped after {elapsed:.0f} s (limit {timeout_s:.0f} s)"
    elif proc.returncode != 0 or not out.exists():
        result.status = "failed"
        tail = (logs / f"{stage}.log").read_text(errors="replace").strip().splitlines()[-15:]
        result.note = f"exit code {proc.returncode}; log: {logs / (stage + '.log')}"
        print("\n" + "\n".join("    | " + line for line in tail))
    else:
        result.status = "ok"
        result.data = json.loads(out.read_text())
        result.seconds = float(result.data["seconds"])
        if result.data.get("peak_rss_mb") is not None:
            result.peak_rss_mb = float(result.data["peak_rss_mb"])
    shown = f"{result.seconds:.1f} s" if result.seconds is not None else result.status
    print(f" {shown}, peak {result.peak_rss_mb:,.0f} MB")
    return result


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_facts(load_before: str) -> dict[str, str]:
    facts = {
        "cores": str(os.cpu_count()),
        "load average (1, 5, 15 min) before / after": f"{load_before} / {load_average()}",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["ram"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    from importlib.metadata import version

    for pkg in ("polars", "duckdb", "dagster"):
        with contextlib.suppress(Exception):
            facts[pkg] = version(pkg)
    return facts
