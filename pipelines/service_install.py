"""Installing, removing and checking the service: where the unit files go, and the systemctl /
launchctl calls (`gutsignal service install|uninstall|status`). What the files say is in
`pipelines.service`.

Every call goes through a runner passed in, so tests never touch the real service manager; and
when GUTSIGNAL_SERVICE_DIR moves the files elsewhere no manager is called at all (it would not
find them there), only the commands to run are printed.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.service import (
    COMPONENTS,
    MARKER,
    WORKSPACE_NAME,
    Component,
    Platform,
    ServiceError,
    ServicePaths,
    host_platform,
    launchd_label,
    read_launchd_plist,
    read_systemd_unit,
    render_launchd_plist,
    render_systemd_unit,
    render_workspace,
    unit_name,
)

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

SERVICE_DIR_ENV = "GUTSIGNAL_SERVICE_DIR"
STATUS_NOT_RUNNING = 3  # as `systemctl status`: installed but not running, or not installed


@dataclass(frozen=True)
class Target:
    """Where the unit files go, and whether systemctl/launchctl may be called for them."""

    platform: Platform
    directory: Path
    log_dir: Path  # launchd only: journald keeps systemd's logs
    unmanaged_reason: str | None  # why the manager is not called, None when it is

    @property
    def managed(self) -> bool:
        return self.unmanaged_reason is None

    def file(self, component: str) -> Path:
        if self.platform == "linux":
            return self.directory / unit_name(component)
        return self.directory / f"{launchd_label(component)}.plist"


def run_command(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real runner: captured, never raising, bounded in time."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(exc))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def resolve_target(
    platform: Platform,
    runner: Runner = run_command,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    host: Platform | None = None,
) -> Target:
    """The service manager's own folder, unless GUTSIGNAL_SERVICE_DIR moves the files elsewhere
    (tests, or to inspect them): then no manager is called, it would not find them there."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    log_dir = home / "Library" / "Logs" / "gutsignal"
    override = env.get(SERVICE_DIR_ENV)
    if override:
        return Target(
            platform,
            Path(override).expanduser().resolve(),
            log_dir,
            f"{SERVICE_DIR_ENV} is set, so the file is not where the service manager looks",
        )
    if platform == "linux":
        config = env.get("XDG_CONFIG_HOME", "")
        base = Path(config) if config and Path(config).is_absolute() else home / ".config"
        directory = base / "systemd" / "user"
    else:
        directory = home / "Library" / "LaunchAgents"
    if host is None:
        try:
            host = host_platform()
        except ServiceError:
            host = None
    return Target(platform, directory, log_dir, _manager_problem(platform, host, runner))


def _manager_problem(platform: Platform, host: Platform | None, runner: Runner) -> str | None:
    if platform != host:
        return f"this machine is not {'Linux' if platform == 'linux' else 'macOS'}"
    tool = "systemctl" if platform == "linux" else "launchctl"
    if shutil.which(tool) is None:
        return f"{tool} is not installed"
    if platform == "linux":
        probe = runner(["systemctl", "--user", "show-environment"])
        if probe.returncode != 0:
            # Containers and some SSH sessions have no user manager to talk to.
            return f"systemctl --user cannot reach a user manager ({_first_line(probe.stderr)})"
    return None


def render_file(target: Target, paths: ServicePaths, component: Component) -> str:
    if target.platform == "linux":
        return render_systemd_unit(paths, component)
    return render_launchd_plist(paths, component, target.log_dir)


def read_installed(target: Target, component: str) -> tuple[list[str], dict[str, str]] | None:
    """argv and environment of an installed unit, None when there is none."""
    path = target.file(component)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if target.platform == "linux":
        return read_systemd_unit(text)
    return read_launchd_plist(text)


def _gui_domain() -> str:
    return f"gui/{os.getuid()}"


def start_commands(target: Target, names: Sequence[str]) -> list[list[str]]:
    """What makes the installed files run now and at every login."""
    if target.platform == "linux":
        units = [unit_name(n) for n in names]
        # `enable --now` would leave an already running daemon on the old unit after a
        # reinstall; `restart` starts it, or restarts it on the new file.
        return [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", *units],
            ["systemctl", "--user", "restart", *units],
        ]
    return [["launchctl", "bootstrap", _gui_domain(), str(target.file(n))] for n in names]


def stop_commands(target: Target, names: Sequence[str]) -> list[list[str]]:
    if target.platform == "linux":
        return [["systemctl", "--user", "disable", "--now", *[unit_name(n) for n in names]]]
    return [["launchctl", "bootout", f"{_gui_domain()}/{launchd_label(n)}"] for n in names]


def _run_all(runner: Runner, commands: Sequence[Sequence[str]]) -> None:
    for cmd in commands:
        done = runner(cmd)
        if done.returncode != 0:
            raise ServiceError(
                f"`{shlex.join(cmd)}` failed: {_first_line(done.stderr or done.stdout)}"
            )


def linger_hint(runner: Runner | None, user: str | None = None) -> str | None:
    """What to run so that the service outlives the login session, None when linger is on.
    Without linger, systemd stops a user's services at logout and starts them at login only.
    With no runner (no user manager to ask) the hint is always given."""
    user = user or getpass.getuser()
    if runner is not None:
        answer = runner(["loginctl", "show-user", user, "--property=Linger", "--value"])
        if answer.returncode == 0 and answer.stdout.strip() == "yes":
            return None
    return (
        "To keep it running after you log out, and start it at boot without logging in, "
        f"run once: loginctl enable-linger {user}"
    )


def _enable_links(target: Target, names: Sequence[str]) -> list[Path]:
    """The links `systemctl --user enable` made, to remove by hand too: a unit removed while
    systemctl was out of reach must not leave a dangling link behind."""
    if target.platform != "linux":
        return []
    links = [target.directory / "default.target.wants" / unit_name(n) for n in names]
    return [link for link in links if link.is_symlink()]


def _commands_text(commands: Sequence[Sequence[str]]) -> list[str]:
    return [f"    {shlex.join(c)}" for c in commands]


def logs_hint(target: Target, component: str = "daemon") -> str:
    if target.platform == "linux":
        return f"Logs: journalctl --user -u {unit_name(component)} -f"
    return f"Logs: tail -f {target.log_dir / f'{component}.log'}"


# ---- install, uninstall, status --------------------------------------------------------------


def install(
    target: Target,
    paths: ServicePaths,
    comps: Sequence[Component],
    runner: Runner = run_command,
    dry_run: bool = False,
) -> list[str]:
    """Write the workspace file and one unit per component, then start them when the service
    manager can be used; otherwise say what to run. Returns the lines to print."""
    files = [(paths.workspace, render_workspace(paths))]
    files += [(target.file(c.name), render_file(target, paths, c)) for c in comps]
    wanted = [c.name for c in comps]
    # A webserver installed before and not asked for now goes, so the state matches the command.
    stale = [n for n in COMPONENTS if n not in wanted and target.file(n).is_file()]
    start = start_commands(target, wanted)
    lines: list[str] = []
    if dry_run:
        lines += [f"--- {path} ---\n{text}" for path, text in files]
        lines += [f"Would remove {target.file(n)}" for n in stale]
        lines.append("Then:")
        lines += _commands_text(start)
        lines.append("Nothing was written (--dry-run).")
        return lines

    previous = read_installed(target, "daemon")
    if previous and previous[1].get("GUTSIGNAL_PROJECT_DIR") not in (None, str(paths.project_dir)):
        lines.append(f"Replacing the service for {previous[1]['GUTSIGNAL_PROJECT_DIR']}.")
    if stale and target.managed:
        _run_all(runner, stop_commands(target, stale))
    for path in [target.file(n) for n in stale] + _enable_links(target, stale):
        path.unlink()
        lines.append(f"Removed {path}")
    if target.platform == "macos":
        target.log_dir.mkdir(parents=True, exist_ok=True)  # launchd does not create it
        if target.managed:
            # bootstrap refuses a label that is already loaded; not loaded is fine here.
            for cmd in stop_commands(target, wanted):
                runner(cmd)
    for path, text in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        lines.append(f"Wrote {path}")
    if target.managed:
        _run_all(runner, start)
        again = "at login, or at boot with linger" if target.platform == "linux" else "at login"
        lines.append(f"Started {', '.join(wanted)}; it starts again {again}.")
    else:
        lines.append(f"Not started: {target.unmanaged_reason}. To start it, run:")
        lines += _commands_text(start)
    if target.platform == "linux":
        hint = linger_hint(runner if target.managed else None)
        if hint:
            lines.append(hint)
    else:
        lines.append(
            "A LaunchAgent runs while you are logged in (after a reboot, from your next login)."
        )
    lines.append(logs_hint(target))
    lines.append(
        "While the service runs, do not also start `make dev` on this checkout: Dagster expects "
        "one daemon per DAGSTER_HOME. Stop the service first, or install with --webserver "
        "for the UI."
    )
    return lines


def uninstall(target: Target, runner: Runner = run_command, dry_run: bool = False) -> list[str]:
    """Stop and remove every gutsignal unit, and the workspace file install wrote."""
    installed = [n for n in COMPONENTS if target.file(n).is_file()]
    if not installed:
        return [f"Nothing to remove: no gutsignal service in {target.directory}."]
    daemon = read_installed(target, "daemon")
    workspace: Path | None = None
    if daemon and daemon[1].get("DAGSTER_HOME"):
        candidate = Path(daemon[1]["DAGSTER_HOME"]) / WORKSPACE_NAME
        if candidate.is_file() and candidate.read_text(encoding="utf-8").startswith(f"# {MARKER}"):
            workspace = candidate
    stop = stop_commands(target, installed)
    reload = [["systemctl", "--user", "daemon-reload"]] if target.platform == "linux" else []
    doomed = [target.file(n) for n in installed] + ([workspace] if workspace else [])
    doomed += _enable_links(target, installed)
    if dry_run:
        return [
            "Would run:",
            *_commands_text(stop),
            *[f"Would remove {p}" for p in doomed],
            *(["Then:", *_commands_text(reload)] if reload else []),
            "Nothing was changed (--dry-run).",
        ]
    lines: list[str] = []
    if target.managed:
        # A unit that is already stopped or unloaded is fine to remove.
        for cmd in stop:
            runner(cmd)
    for path in doomed:
        if path.is_symlink() or path.exists():  # `disable` may have removed the link already
            path.unlink()
            lines.append(f"Removed {path}")
    if target.managed:
        _run_all(runner, reload)
        lines.append("Stopped; it no longer starts at login.")
    else:
        lines.append(f"Not stopped: {target.unmanaged_reason}. If it is running, run:")
        if target.platform == "linux":
            lines += _commands_text(
                [["systemctl", "--user", "stop", *[unit_name(n) for n in installed]], *reload]
            )
        else:
            lines += _commands_text(stop)
    return lines


def _state(target: Target, component: str, runner: Runner) -> str:
    """'active'/'inactive'/'failed'/... on Linux, 'running'/'not loaded'/... on macOS."""
    if target.platform == "linux":
        answer = runner(["systemctl", "--user", "is-active", unit_name(component)])
        return answer.stdout.strip() or _first_line(answer.stderr)
    answer = runner(["launchctl", "print", f"{_gui_domain()}/{launchd_label(component)}"])
    if answer.returncode != 0:
        return "not loaded"
    for line in answer.stdout.splitlines():
        key, _, value = line.strip().partition(" = ")
        if key == "state":
            return value
    return "loaded"


def status(target: Target, runner: Runner = run_command) -> tuple[list[str], int]:
    """What is installed, for which project, whether it runs, where its logs are; and an exit
    code: 0 when the daemon is installed and running (or cannot be checked here), 3 otherwise."""
    code = 0
    lines: list[str] = []
    for name in COMPONENTS:
        installed = read_installed(target, name)
        label = unit_name(name) if target.platform == "linux" else launchd_label(name)
        if installed is None:
            if name == "daemon":
                lines.append(f"{label}: not installed (run `gutsignal service install`)")
                code = STATUS_NOT_RUNNING
            continue
        argv, env = installed
        lines.append(f"{label}: installed at {target.file(name)}")
        lines.append(f"  project: {env.get('GUTSIGNAL_PROJECT_DIR', '?')}")
        lines.append(f"  DAGSTER_HOME: {env.get('DAGSTER_HOME', '?')}")
        if argv and not os.access(argv[0], os.X_OK):
            lines.append(
                f"  problem: {argv[0]} no longer exists; run `make env` in that checkout or "
                "`gutsignal service install` again"
            )
            code = STATUS_NOT_RUNNING
        if target.managed:
            state = _state(target, name, runner)
            lines.append(f"  state: {state}")
            if state not in ("active", "running"):
                code = STATUS_NOT_RUNNING
        else:
            lines.append(f"  state: unknown here ({target.unmanaged_reason})")
        lines.append(f"  {logs_hint(target, name)}")
    if target.platform == "linux" and target.managed and code == 0:
        hint = linger_hint(runner)
        lines.append("linger: on (runs from boot, without a login)" if hint is None else hint)
    return lines, code
