"""Nightly runs without a terminal: the Dagster daemon as a systemd user unit (Linux) or a launchd
agent (macOS), written by `gutsignal service install`.

`make dev` runs `dg dev` in the foreground: the webserver, the daemon and the code server stop
with the terminal, and the nightly schedule and the new-file sensor with them. The service runs
the same daemon, and optionally the same webserver, the way `make dev` does:

- the same DAGSTER_HOME (`<checkout>/.dagster_home`, made by `make env`) and
  GUTSIGNAL_PROJECT_DIR, so run history, schedule state and the run queue are shared;
- the same code location (`gutsignal`, module `pipelines.definitions`, working directory the
  checkout), through a workspace file in DAGSTER_HOME;
- the checkout's `.venv` executables by absolute path: a unit gets none of the user's PATH;
- the project folder as working directory: Dagster's CLIs lay the `.env` of their working
  directory over the environment, so a project's own `.env` is read, and a `.env` in the
  checkout (a user's, for `dg dev`) cannot point the daemon at another project.

This module is pure (paths in, text out, and back); writing the files and calling
systemctl/launchctl is `pipelines.service_install`.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

Platform = Literal["linux", "macos"]

# The checkout this code runs from (the package is installed editable by `make env`): where
# `make dev` runs, where .venv and .dagster_home live.
CHECKOUT = Path(__file__).resolve().parents[1]
# As in [tool.dg.project] of pyproject.toml, which `dg dev` reads. Dagster keys schedule and
# sensor state by location name: another name would be a second set of switches that the UI
# of `make dev` does not show.
CODE_LOCATION_NAME = "gutsignal"
CODE_LOCATION_MODULE = "pipelines.definitions"
WEBSERVER_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
WORKSPACE_NAME = "workspace.yaml"
MARKER = "Written by `gutsignal service install`"
COMPONENTS = ("daemon", "webserver")


class ServiceError(Exception):
    """A problem to explain to the user: what is missing and what to run."""


def host_platform(sys_platform: str = sys.platform) -> Platform:
    """The service manager of this machine: systemd on Linux, launchd on macOS."""
    if sys_platform.startswith("linux"):
        return "linux"
    if sys_platform == "darwin":
        return "macos"
    raise ServiceError(
        f"gutsignal service knows systemd (Linux) and launchd (macOS), not {sys_platform}. "
        "Keep `make dev` running instead, or start `.venv/bin/dagster-daemon run` with your "
        "system's own service tool (see README, 'Nightly runs without a terminal')."
    )


@dataclass(frozen=True)
class ServicePaths:
    """Everything the service needs, absolute: the project it refreshes, the checkout whose code
    and .venv run it, and the Dagster instance folder."""

    project_dir: Path
    checkout: Path
    dagster_home: Path

    def executable(self, name: str) -> Path:
        return self.checkout / ".venv" / "bin" / name

    @property
    def workspace(self) -> Path:
        return self.dagster_home / WORKSPACE_NAME

    def environment(self) -> dict[str, str]:
        """The variables `make dev` exports, plus unbuffered output so that log lines reach the
        journal (or the launchd log) as they happen rather than when a buffer fills."""
        return {
            "DAGSTER_HOME": str(self.dagster_home),
            "GUTSIGNAL_PROJECT_DIR": str(self.project_dir),
            "PYTHONUNBUFFERED": "1",
        }


def resolve_paths(
    project_dir: Path, checkout: Path = CHECKOUT, dagster_home: Path | None = None
) -> ServicePaths:
    """The service's paths for a project; DAGSTER_HOME defaults to the one the Makefile sets."""
    checkout = checkout.expanduser().resolve()
    home = (dagster_home or checkout / ".dagster_home").expanduser().resolve()
    paths = ServicePaths(project_dir.expanduser().resolve(), checkout, home)
    for path in (paths.project_dir, paths.checkout, paths.dagster_home):
        # A line break would end the unit's setting early; nobody names folders so on purpose.
        if "\n" in str(path) or "\r" in str(path):
            raise ServiceError(f"{path!r}: a path with a line break cannot go into a unit file.")
    return paths


@dataclass(frozen=True)
class Component:
    """One long-running process of the service."""

    name: str  # "daemon" or "webserver"
    argv: tuple[str, ...]
    description: str


def components(
    paths: ServicePaths, webserver: bool = False, port: int = DEFAULT_PORT
) -> list[Component]:
    """The daemon (schedules, sensors, run queue), and the UI when asked for."""
    out = [
        Component(
            "daemon",
            (str(paths.executable("dagster-daemon")), "run", "-w", str(paths.workspace)),
            "Dagster daemon (nightly schedule, new-file sensor, run queue)",
        )
    ]
    if webserver:
        out.append(
            Component(
                "webserver",
                (
                    str(paths.executable("dagster-webserver")),
                    "-w",
                    str(paths.workspace),
                    "-h",
                    WEBSERVER_HOST,
                    "-p",
                    str(port),
                ),
                f"Dagster UI on http://{WEBSERVER_HOST}:{port}",
            )
        )
    return out


def check_ready(paths: ServicePaths, comps: Sequence[Component]) -> None:
    """Fail with the missing piece named before anything is written."""
    make_env = (
        f"Run `make env` in {paths.checkout} first: it creates .venv from uv.lock and "
        f"{paths.checkout / '.dagster_home'} with its dagster.yaml."
    )
    for exe in [paths.executable("python")] + [Path(c.argv[0]) for c in comps]:
        if not os.access(exe, os.X_OK):
            raise ServiceError(
                f"{exe} does not exist: the service runs the project's own Dagster from "
                f"{paths.checkout / '.venv'}. {make_env}"
            )
    if not (paths.dagster_home / "dagster.yaml").is_file():
        fix = make_env
        if paths.dagster_home != paths.checkout / ".dagster_home":
            link = f"ln -s {paths.checkout / 'dagster.yaml'} {paths.dagster_home}/"
            fix = f"Link the checkout's: {link}"
        raise ServiceError(
            f"No dagster.yaml in {paths.dagster_home} (the Dagster instance folder: run "
            f"history, schedules, the one-run-at-a-time queue). {fix}"
        )


def render_workspace(paths: ServicePaths) -> str:
    """The code location `dg dev` builds for this project, as a file the daemon can read."""
    entry = {
        "python_module": {
            "module_name": CODE_LOCATION_MODULE,
            "working_directory": str(paths.checkout),
            "location_name": CODE_LOCATION_NAME,
            "executable_path": str(paths.executable("python")),
        }
    }
    header = f"# {MARKER}: the code location of `make dev`, for the service.\n"
    return header + yaml.safe_dump({"load_from": [entry]}, sort_keys=False)


# ---- systemd --------------------------------------------------------------------------------


def unit_name(component: str) -> str:
    return f"gutsignal-{component}.service"


def _unit_escape(value: str) -> str:
    """`%` starts a specifier in every unit setting."""
    return value.replace("%", "%%")


def _exec_word(arg: str) -> str:
    """One ExecStart argument; `$` would expand a variable, spaces and quotes would split it."""
    arg = _unit_escape(arg).replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_setting(key: str, value: str) -> str:
    quoted = _unit_escape(f"{key}={value}").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{quoted}"'


def render_systemd_unit(paths: ServicePaths, component: Component) -> str:
    """A systemd user unit that keeps `component` running, restarted when it fails."""
    env = "\n".join(_env_setting(k, v) for k, v in paths.environment().items())
    readme = _unit_escape((paths.checkout / "README.md").as_uri())
    return f"""\
# {MARKER} for the project {paths.project_dir}.
# Status, logs and removal: README.md, "Nightly runs without a terminal".
[Unit]
Description=gutsignal {component.description}
Documentation={readme}

[Service]
Type=simple
WorkingDirectory={_unit_escape(str(paths.project_dir))}
{env}
ExecStart={" ".join(_exec_word(a) for a in component.argv)}
Restart=on-failure
RestartSec=10

[Install]
WantedBy=default.target
"""


def _unit_unescape(value: str) -> str:
    return value.replace("%%", "%")


def read_systemd_unit(text: str) -> tuple[list[str], dict[str, str]]:
    """ExecStart's argv and the Environment of a unit this module wrote."""
    argv: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "ExecStart":
            argv = [_unit_unescape(w).replace("$$", "$") for w in shlex.split(value)]
        elif key == "Environment":
            for word in shlex.split(value):
                name, _, val = _unit_unescape(word).partition("=")
                env[name] = val
    return argv, env


# ---- launchd --------------------------------------------------------------------------------


def launchd_label(component: str) -> str:
    return f"local.gutsignal.{component}"


def render_launchd_plist(paths: ServicePaths, component: Component, log_dir: Path) -> str:
    """A LaunchAgent that starts `component` at login and starts it again whenever it exits."""
    log = str(log_dir / f"{component.name}.log")
    text = plistlib.dumps(
        {
            "Label": launchd_label(component.name),
            "ProgramArguments": list(component.argv),
            "EnvironmentVariables": paths.environment(),
            "WorkingDirectory": str(paths.project_dir),
            "RunAtLoad": True,
            "KeepAlive": True,
            "StandardOutPath": log,
            "StandardErrorPath": log,
        },
        sort_keys=False,
    ).decode()
    comment = f"<!-- {MARKER} for the project {paths.project_dir}. -->\n"
    head, _, body = text.partition("<plist")
    return head + comment + "<plist" + body


def read_launchd_plist(text: str) -> tuple[list[str], dict[str, str]]:
    data = plistlib.loads(text.encode())
    return list(data.get("ProgramArguments", [])), dict(data.get("EnvironmentVariables", {}))
