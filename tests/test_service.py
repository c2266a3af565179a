"""`gutsignal service`: the systemd unit and launchd plist say what `make dev` does, install and
uninstall touch only the folder they are given, and the unit's own command starts the daemon.

Every test here writes under tmp_path: GUTSIGNAL_SERVICE_DIR, HOME and XDG_CONFIG_HOME point
there, and no test lets the code call the real systemctl or launchctl.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from pipelines import service_install
from pipelines.cli import DEMO_SOURCES_YAML, main
from pipelines.service import (
    CHECKOUT,
    CODE_LOCATION_MODULE,
    CODE_LOCATION_NAME,
    ServiceError,
    ServicePaths,
    check_ready,
    components,
    host_platform,
    read_launchd_plist,
    read_systemd_unit,
    render_launchd_plist,
    render_systemd_unit,
    render_workspace,
    resolve_paths,
)
from pipelines.service_install import SERVICE_DIR_ENV, Target

DAEMON = CHECKOUT / ".venv" / "bin" / "dagster-daemon"


@pytest.fixture(autouse=True)
def _no_real_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SERVICE_DIR_ENV, str(tmp_path / "units"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _dagster_home(tmp_path: Path) -> Path:
    """A Dagster instance folder as `make env` makes it: dagster.yaml linked from the checkout."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(CHECKOUT / "dagster.yaml")
    return home


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sources.yaml").write_text(DEMO_SOURCES_YAML, encoding="utf-8")
    return project


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_the_checkouts_daemon_with_make_devs_settings(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "project", dagster_home=tmp_path / "dh")
    (daemon,) = components(paths)
    unit = _unit_settings(render_systemd_unit(paths, daemon))

    workspace = tmp_path / "dh" / "workspace.yaml"
    assert unit["ExecStart"] == [f"{DAEMON} run -w {workspace}"]
    # Not the checkout: a .env there would win over the unit's setting.
    assert unit["WorkingDirectory"] == [str(tmp_path / "project")]
    assert unit["Environment"] == [
        f'"DAGSTER_HOME={tmp_path / "dh"}"',
        f'"GUTSIGNAL_PROJECT_DIR={tmp_path / "project"}"',
        '"PYTHONUNBUFFERED=1"',
    ]
    assert unit["Restart"] == ["on-failure"] and unit["WantedBy"] == ["default.target"]
    argv, env = read_systemd_unit(render_systemd_unit(paths, daemon))
    assert all(Path(p).is_absolute() for p in [argv[0], argv[-1], *env.values()][:-1])

    # The code location is the one `dg dev` builds from pyproject.toml, run by the .venv python.
    dg_project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert CODE_LOCATION_NAME == dg_project["code_location_name"]
    assert CODE_LOCATION_MODULE == f"{dg_project['root_module']}.definitions"
    (entry,) = yaml.safe_load(render_workspace(paths))["load_from"]
    assert entry["python_module"] == {
        "module_name": "pipelines.definitions",
        "working_directory": str(CHECKOUT),
        "location_name": "gutsignal",
        "executable_path": str(CHECKOUT / ".venv" / "bin" / "python"),
    }


def test_the_default_dagster_home_is_the_one_the_makefile_exports(tmp_path: Path) -> None:
    makefile = (CHECKOUT / "Makefile").read_text()
    assert "export DAGSTER_HOME := $(CURDIR)/.dagster_home" in makefile
    assert resolve_paths(tmp_path).dagster_home == CHECKOUT / ".dagster_home"


def test_odd_paths_survive_the_unit_quoting(tmp_path: Path) -> None:
    odd = tmp_path / 'my "health" 100% $HOME\\data'
    paths = ServicePaths(odd / "project", odd / "checkout", odd / "dh")
    for component in components(paths, webserver=True):
        argv, env = read_systemd_unit(render_systemd_unit(paths, component))
        assert argv == list(component.argv)
        assert env == paths.environment()


def test_the_webserver_is_the_ui_of_make_dev_on_localhost(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path, dagster_home=tmp_path / "dh")
    _, web = components(paths, webserver=True, port=3123)
    assert web.argv == (
        str(CHECKOUT / ".venv" / "bin" / "dagster-webserver"),
        "-w",
        str(tmp_path / "dh" / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        "3123",
    )


def test_the_plist_keeps_the_daemon_alive_from_login(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "project", dagster_home=tmp_path / "dh")
    (daemon,) = components(paths)
    logs = tmp_path / "Library" / "Logs" / "gutsignal"
    plist = plistlib.loads(render_launchd_plist(paths, daemon, logs).encode())
    assert plist == {
        "Label": "local.gutsignal.daemon",
        "ProgramArguments": [str(DAEMON), "run", "-w", str(tmp_path / "dh" / "workspace.yaml")],
        "EnvironmentVariables": {
            "DAGSTER_HOME": str(tmp_path / "dh"),
            "GUTSIGNAL_PROJECT_DIR": str(tmp_path / "project"),
            "PYTHONUNBUFFERED": "1",
        },
        "WorkingDirectory": str(tmp_path / "project"),
        "RunAtLoad": True,
        "KeepAlive": True,
        "StandardOutPath": str(logs / "daemon.log"),
        "StandardErrorPath": str(logs / "daemon.log"),
    }
    assert read_launchd_plist(render_launchd_plist(paths, daemon, logs)) == (
        plist["ProgramArguments"],
        plist["EnvironmentVariables"],
    )


def test_install_status_uninstall_in_a_given_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, home, units = _project(tmp_path), _dagster_home(tmp_path), tmp_path / "units"
    install = ["service", "install", "--project-dir", str(project), "--dagster-home", str(home)]
    assert main([*install, "--webserver", "--platform", "linux"]) == 0
    out = capsys.readouterr().out
    daemon, web = units / "gutsignal-daemon.service", units / "gutsignal-webserver.service"
    assert daemon.is_file() and web.is_file() and (home / "workspace.yaml").is_file()
    # Not systemd's folder: nothing is started, the commands to run are said instead.
    assert "Not started" in out and "systemctl --user enable gutsignal-daemon.service" in out
    assert "loginctl enable-linger" in out and "journalctl --user -u gutsignal-daemon" in out

    assert main(["service", "status", "--platform", "linux"]) == 0
    out = capsys.readouterr().out
    assert f"project: {project}" in out and f"DAGSTER_HOME: {home}" in out

    assert main(["service", "uninstall", "--dry-run", "--platform", "linux"]) == 0
    assert "Would remove" in capsys.readouterr().out and daemon.is_file() and web.is_file()

    # Installed again without --webserver: the UI unit goes.
    assert main([*install, "--platform", "linux"]) == 0
    assert daemon.is_file() and not web.exists()

    assert main(["service", "uninstall", "--platform", "linux"]) == 0
    assert list(units.iterdir()) == [] and not (home / "workspace.yaml").exists()
    assert (home / "dagster.yaml").exists()
    capsys.readouterr()
    assert main(["service", "status", "--platform", "linux"]) == 3
    assert "not installed" in capsys.readouterr().out


def test_install_on_macos_writes_the_plist_and_its_log_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, home = _project(tmp_path), _dagster_home(tmp_path)
    args = ["--project-dir", str(project), "--dagster-home", str(home), "--platform", "macos"]
    assert main(["service", "install", *args]) == 0
    assert "launchctl bootstrap gui/" in capsys.readouterr().out
    plist = tmp_path / "units" / "local.gutsignal.daemon.plist"
    assert plistlib.loads(plist.read_bytes())["RunAtLoad"] is True
    assert (tmp_path / "home" / "Library" / "Logs" / "gutsignal").is_dir()
    assert main(["service", "uninstall", "--platform", "macos"]) == 0
    assert not plist.exists()


def test_dry_run_prints_the_unit_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, home = _project(tmp_path), _dagster_home(tmp_path)
    args = ["--project-dir", str(project), "--dagster-home", str(home), "--platform", "linux"]
    assert main(["service", "install", "--print", *args]) == 0
    out = capsys.readouterr().out
    assert f"ExecStart={DAEMON} run -w {home / 'workspace.yaml'}" in out
    assert "Nothing was written" in out
    assert not (tmp_path / "units").exists() and not (home / "workspace.yaml").exists()


def test_missing_pieces_are_named_with_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = resolve_paths(tmp_path, checkout=tmp_path / "bare-checkout")
    with pytest.raises(
        ServiceError, match=r"bare-checkout/\.venv/bin/python does not exist.*make env"
    ):
        check_ready(paths, components(paths))

    project = _project(tmp_path)
    empty_home = tmp_path / "empty"
    empty_home.mkdir()
    args = ["--project-dir", str(project), "--dagster-home", str(empty_home)]
    assert main(["service", "install", *args]) == 2
    err = capsys.readouterr().err
    assert "No dagster.yaml" in err and "ln -s" in err and "Traceback" not in err
    # The default DAGSTER_HOME is the checkout's .dagster_home, which `make env` makes.
    no_home = resolve_paths(tmp_path, checkout=_checkout_with_space(tmp_path))
    with pytest.raises(ServiceError, match=r"No dagster\.yaml in .*\.dagster_home.*make env"):
        check_ready(no_home, components(no_home))

    assert main(["service", "install", "--project-dir", str(tmp_path / "nothing")]) == 2
    assert "No sources.yaml" in capsys.readouterr().err
    assert main(["service", "install", *args, "--webserver", "--port", "0"]) == 2
    assert "--port 0" in capsys.readouterr().err
    assert not (tmp_path / "units").exists()
    with pytest.raises(ServiceError, match=r"systemd \(Linux\) and launchd \(macOS\), not win32"):
        host_platform("win32")


class FakeManager:
    """Records commands; answers each with (returncode, stdout) by its leading words."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        for prefix, (code, out) in self.answers.items():
            if tuple(cmd[: len(prefix)]) == prefix:
                return subprocess.CompletedProcess(list(cmd), code, out, "boom" if code else "")
        return subprocess.CompletedProcess(list(cmd), 0, "", "")


def test_with_a_user_manager_install_enables_and_uninstall_disables(tmp_path: Path) -> None:
    paths = resolve_paths(_project(tmp_path), dagster_home=_dagster_home(tmp_path))
    target = Target("linux", tmp_path / "systemd" / "user", tmp_path / "logs", None)
    manager = FakeManager(
        {("loginctl",): (0, "no\n"), ("systemctl", "--user", "is-active"): (0, "active\n")}
    )
    lines = service_install.install(target, paths, components(paths), runner=manager)
    unit = "gutsignal-daemon.service"
    assert manager.calls[:3] == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", unit],
        ["systemctl", "--user", "restart", unit],
    ]
    assert any("loginctl enable-linger" in line for line in lines)

    status, code = service_install.status(target, runner=manager)
    assert code == 0 and "  state: active" in status

    manager.calls.clear()
    service_install.uninstall(target, runner=manager)
    assert manager.calls == [
        ["systemctl", "--user", "disable", "--now", unit],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert not (target.directory / unit).exists()

    failing = FakeManager({("systemctl", "--user", "enable"): (1, "")})
    with pytest.raises(
        ServiceError, match=r"systemctl --user enable gutsignal-daemon\.service` failed: boom"
    ):
        service_install.install(target, paths, components(paths), runner=failing)


def test_with_launchd_install_reloads_the_agent(tmp_path: Path) -> None:
    paths = resolve_paths(_project(tmp_path), dagster_home=_dagster_home(tmp_path))
    target = Target("macos", tmp_path / "LaunchAgents", tmp_path / "Logs" / "gutsignal", None)
    manager = FakeManager({("launchctl", "bootout"): (3, "")})  # not loaded yet: fine
    service_install.install(target, paths, components(paths), runner=manager)
    plist = target.directory / "local.gutsignal.daemon.plist"
    domain = f"gui/{os.getuid()}"
    assert manager.calls == [
        ["launchctl", "bootout", f"{domain}/local.gutsignal.daemon"],
        ["launchctl", "bootstrap", domain, str(plist)],
    ]


def test_the_service_folder_defaults_to_the_managers_own(tmp_path: Path) -> None:
    ok = FakeManager()
    linux = service_install.resolve_target("linux", ok, env={}, home=tmp_path, host="linux")
    assert linux.directory == tmp_path / ".config" / "systemd" / "user"
    if shutil.which("systemctl"):
        assert linux.managed
    xdg = service_install.resolve_target(
        "linux", ok, env={"XDG_CONFIG_HOME": "/x/cfg"}, home=tmp_path, host="linux"
    )
    assert xdg.directory == Path("/x/cfg/systemd/user")
    mac = service_install.resolve_target("macos", ok, env={}, home=tmp_path, host="linux")
    assert mac.directory == tmp_path / "Library" / "LaunchAgents"
    assert mac.unmanaged_reason == "this machine is not macOS"
    no_bus = FakeManager({("systemctl",): (1, "")})
    if shutil.which("systemctl"):
        target = service_install.resolve_target(
            "linux", no_bus, env={}, home=tmp_path, host="linux"
        )
        assert "cannot reach a user manager (boom)" in str(target.unmanaged_reason)
    moved = service_install.resolve_target(
        "linux", ok, env={SERVICE_DIR_ENV: str(tmp_path / "u")}, home=tmp_path, host="linux"
    )
    assert moved.directory == tmp_path / "u" and not moved.managed


def _checkout_with_space(tmp_path: Path) -> Path:
    """A checkout whose path has a space, its .venv executables linked to the real ones."""
    checkout = tmp_path / "my checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    for name in ("python", "dagster-daemon", "dagster-webserver"):
        (checkout / ".venv" / "bin" / name).symlink_to(CHECKOUT / ".venv" / "bin" / name)
    return checkout


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    units = tmp_path / "verify"
    units.mkdir()
    plain = resolve_paths(tmp_path / "project", dagster_home=tmp_path / "dh")
    spaced = resolve_paths(
        tmp_path / "project 100%",
        checkout=_checkout_with_space(tmp_path),
        dagster_home=tmp_path / "d h",
    )
    files = []
    for i, paths in enumerate((plain, spaced)):
        for component in components(paths, webserver=True):
            path = units / f"gutsignal{i}-{component.name}.service"
            path.write_text(render_systemd_unit(paths, component), encoding="utf-8")
            files.append(str(path))
    # --user needs a runtime folder, which a container or CI job may not have: a private one,
    # on a short path: the user units' sockets live in it, and a socket's path has at most 107
    # bytes (tmp_path under /dev/shm was too long).
    with tempfile.TemporaryDirectory(prefix="xdg-") as runtime:
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
        done = subprocess.run(
            ["systemd-analyze", "verify", "--user", "--man=no", *files],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    # A warning (unknown key, a command that is not executable) is printed with exit code 0.
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_units_own_command_starts_the_daemon_on_the_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo's sources.yaml and one file for the sensor to find: what `gutsignal demo` makes,
    # less the 2-4 s of writing two years of diaries that the daemon never reads here.
    project, home = _project(tmp_path), _dagster_home(tmp_path)
    labs = project / "data" / "raw" / "demo" / "labs"
    labs.mkdir(parents=True)
    (labs / "alice_labs.csv").write_text("Patient,Collected,Test,Result,Units\n", encoding="utf-8")
    args = ["--project-dir", str(project), "--dagster-home", str(home), "--platform", "linux"]
    assert main(["service", "install", *args]) == 0
    capsys.readouterr()
    unit = (tmp_path / "units" / "gutsignal-daemon.service").read_text(encoding="utf-8")
    argv, env = read_systemd_unit(unit)
    (workdir,) = _unit_settings(unit)["WorkingDirectory"]

    # As systemd would start it: only the unit's environment, and none of our PATH.
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # The sensor finding the file shows that the daemon loaded the code location and looked at
    # this project's data/raw/: the unit's GUTSIGNAL_PROJECT_DIR reached the code.
    wanted = "Creating new run for new_raw_files"
    started = time.monotonic()
    try:
        while time.monotonic() < started + 90 and proc.poll() is None:
            if wanted in log_path.read_text():
                break
            time.sleep(0.2)
        text = log_path.read_text()
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}):\n{text[-3000:]}"
        assert wanted in text, text[-3000:]
        # `systemctl --user stop` sends SIGTERM to the unit's processes: they must go on it
        # (dg dev may not; the notes in ../shared/reference say so).
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        # Whatever happened above, no daemon, code server or run of this test outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
