"""launchd agents: the rendered plist checked key by key with plistlib, the reference
files in launchd/ compared with the renderer, and every launchctl call checked through a
stand-in `launchctl` on PATH that records its arguments."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from moonshot import config, platform
from moonshot.cli import cli
from moonshot.ops import launchd
from tests import standins

REPO = Path(__file__).resolve().parents[2]
REFERENCE_HOME = "/Users/you/moonshot"
REFERENCE_PYTHON = "/Users/you/moonshot/.venv/bin/python"
REGENERATE = f"moonshot --home {REFERENCE_HOME} launchd print [--split] --python {REFERENCE_PYTHON} --out launchd/"


@pytest.fixture
def cfg(tmp_path):
    return config.load(tmp_path / "home", env={})


def fake_python(tmp_path, can_import: bool) -> str:
    """An interpreter stand-in: answers `-c "import moonshot"` with 0 or 1, and 2 unless
    it runs as launchd will run it (in the home folder, with MOONSHOT_HOME set)."""
    exe = tmp_path / "py" / "bin" / "python3"
    exe.parent.mkdir(parents=True, exist_ok=True)
    check = '[ "$(pwd -P)" = "$MOONSHOT_HOME" ] || exit 2\n'
    exe.write_text(f"#!/bin/sh\n{check}exit {0 if can_import else 1}\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.fixture
def mac(monkeypatch, tmp_path):
    """A fake macOS: platform says darwin, HOME is a temp folder, launchctl is a stand-in."""
    monkeypatch.setattr(platform, "is_macos", lambda: True)
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    return standins.install(monkeypatch, tmp_path, "launchctl")


def install(home, tmp_path, *args):
    """`launchd install` with an interpreter that can import moonshot under launchd's environment."""
    return run(home, "launchd", "install", "--python", fake_python(tmp_path, True), *args)


def run(home, *args):
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def test_single_agent_plist_key_by_key(cfg):
    agent, _watch = launchd.render(cfg, python="/opt/py/bin/python3")
    p = plistlib.loads(agent.dumps())
    home = str(cfg.home)
    assert p["Label"] == "com.moonshot.agent" == agent.label
    assert p["ProgramArguments"] == [
        "/opt/py/bin/python3",
        "-m",
        "moonshot",
        "--home",
        home,
        "run",
        "--stages",
        "all",
    ]
    assert p["WorkingDirectory"] == home
    assert p["RunAtLoad"] is True
    # Restarted after a crash, not after a clean exit 0.
    assert p["KeepAlive"] == {"SuccessfulExit": False}
    assert p["ThrottleInterval"] == launchd.THROTTLE_INTERVAL
    assert p["ExitTimeOut"] > cfg.service.stop_timeout
    assert p["StandardOutPath"] == str(cfg.logs_dir / "launchd-agent.out.log")
    assert p["StandardErrorPath"] == str(cfg.logs_dir / "launchd-agent.err.log")
    assert p["LimitLoadToSessionType"] == "Aqua"
    assert p["ProcessType"] == "Interactive"
    env = p["EnvironmentVariables"]
    assert env["MOONSHOT_HOME"] == home
    path = env["PATH"].split(":")
    assert path[0] == "/opt/py/bin" and "/usr/bin" in path  # `security` is in /usr/bin
    assert set(env) == {"PATH", "MOONSHOT_HOME", "PYTHONUNBUFFERED"}
    assert set(p) == {
        "Label",
        "ProgramArguments",
        "WorkingDirectory",
        "RunAtLoad",
        "KeepAlive",
        "ThrottleInterval",
        "ExitTimeOut",
        "StandardOutPath",
        "StandardErrorPath",
        "LimitLoadToSessionType",
        "ProcessType",
        "EnvironmentVariables",
    }


def test_split_renders_sync_and_launch_agents(cfg):
    agents = launchd.render(cfg, split=True, python="/opt/py/bin/python3")
    assert [(a.label, a.stages) for a in agents] == [
        ("com.moonshot.photosync", "sync"),
        ("com.moonshot.watcher", "launch"),
        ("com.moonshot.watch", None),
    ]
    for agent in agents[:2]:
        p = plistlib.loads(agent.dumps())
        assert p["Label"] == agent.label
        assert p["ProgramArguments"][-2:] == ["--stages", agent.stages]
        name = agent.label.rsplit(".", 1)[1]
        assert p["StandardErrorPath"].endswith(f"logs/launchd-{name}.err.log")
        assert p["KeepAlive"] == {"SuccessfulExit": False}
        assert p["LimitLoadToSessionType"] == "Aqua"


@pytest.mark.parametrize("split", [False, True])
def test_watch_agent_runs_moonshot_watch_every_watch_interval(tmp_path, split):
    """Issue 16: beside either layout, `moonshot watch` on a timer (not KeepAlive: it is a
    check that ends), in the user's session (macosx:// and the Keychain need it)."""
    cfg = config.load(tmp_path, env={"MOONSHOT_ALERTS_WATCH_INTERVAL": "120"})
    *_, watch = launchd.render(cfg, split=split, python="/opt/py/bin/python3")
    p = plistlib.loads(watch.dumps())
    assert p["Label"] == launchd.WATCH == "com.moonshot.watch"
    home = str(cfg.home)
    assert p["ProgramArguments"] == [
        "/opt/py/bin/python3",
        "-m",
        "moonshot",
        "--home",
        home,
        "watch",
    ]
    assert p["StartInterval"] == 120 and p["RunAtLoad"] is True
    assert "KeepAlive" not in p
    assert p["LimitLoadToSessionType"] == "Aqua"
    assert p["StandardErrorPath"] == str(cfg.logs_dir / "launchd-watch.err.log")
    assert set(p["EnvironmentVariables"]) == {"PATH", "MOONSHOT_HOME", "PYTHONUNBUFFERED"}


def test_exit_timeout_follows_stop_timeout(tmp_path):
    cfg = config.load(tmp_path, env={"MOONSHOT_SERVICE_STOP_TIMEOUT": "42.5"})
    agent, _watch = launchd.render(cfg)
    assert agent.plist["ExitTimeOut"] == 43 + launchd.EXIT_MARGIN


def test_plist_never_holds_a_secret(cfg, monkeypatch):
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "sk-very-secret-value")
    monkeypatch.setenv("SUPABASE_URL", "https://secret-project.example")
    (cfg.home).mkdir(parents=True)
    (cfg.home / "moonshot.env").write_text("X_BEARER_TOKEN=bearer-secret\n")
    for split in (False, True):
        for agent in launchd.render(cfg, split=split):
            text = agent.dumps()
            for value in (
                b"sk-very-secret-value",
                b"secret-project",
                b"bearer-secret",
                b"SUPABASE",
            ):
                assert value not in text


def test_default_python_is_this_interpreter(cfg):
    import sys

    for agent in launchd.render(cfg):
        assert agent.plist["ProgramArguments"][0] == os.path.abspath(sys.executable)


@pytest.mark.parametrize("split", [False, True])
def test_reference_files_match_the_renderer(split):
    """launchd/ holds the rendered reference plists: one source of truth, the renderer."""
    cfg = config.load(REFERENCE_HOME, env={})
    for agent in launchd.render(cfg, split=split, python=REFERENCE_PYTHON):
        ref = REPO / "launchd" / agent.filename
        assert ref.exists(), f"{ref} missing; regenerate: {REGENERATE}"
        assert ref.read_bytes() == agent.dumps(), f"{ref} is stale; regenerate: {REGENERATE}"


def test_print_gives_the_agent_and_the_watch_agent(tmp_path):
    result = run(tmp_path, "launchd", "print")
    assert result.exit_code == 0
    parts = result.stdout.split("==> ")[1:]
    assert [p.split(" <==")[0] for p in parts] == [
        "com.moonshot.agent.plist",
        "com.moonshot.watch.plist",
    ]
    p = plistlib.loads(parts[0].split("<==\n", 1)[1].encode())
    assert p["Label"] == "com.moonshot.agent"
    assert p["EnvironmentVariables"]["MOONSHOT_HOME"] == str(tmp_path.resolve())


def test_print_split_shows_both_with_headers(tmp_path):
    result = run(tmp_path, "launchd", "print", "--split")
    assert result.exit_code == 0
    parts = result.stdout.split("==> ")[1:]
    assert [p.split(" <==")[0] for p in parts] == [
        "com.moonshot.photosync.plist",
        "com.moonshot.watcher.plist",
        "com.moonshot.watch.plist",
    ]
    for part in parts:
        plistlib.loads(part.split("<==\n", 1)[1].encode())


def test_print_out_writes_files(tmp_path):
    out = tmp_path / "out"
    result = run(tmp_path / "h", "launchd", "print", "--split", "--out", str(out))
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "com.moonshot.photosync.plist",
        "com.moonshot.watch.plist",
        "com.moonshot.watcher.plist",
    ]


@pytest.mark.parametrize("command", ["install", "uninstall", "restart", "status"])
def test_refuses_off_macos(tmp_path, monkeypatch, command):
    monkeypatch.setattr(platform, "is_macos", lambda: False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    launchctl = standins.install(monkeypatch, tmp_path, "launchctl")
    result = run(tmp_path / "home", "launchd", command)
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "need macOS" in lines[0] and "launchd print" in lines[0]
    assert launchctl.calls() == []
    assert not (tmp_path / "user" / "Library").exists()


def test_install_writes_plist_and_bootstraps(tmp_path, mac):
    home = tmp_path / "home"
    python = fake_python(tmp_path, can_import=True)
    result = run(home, "launchd", "install", "--python", python)
    assert result.exit_code == 0, result.output
    agents_dir = tmp_path / "user" / "Library" / "LaunchAgents"
    path = agents_dir / "com.moonshot.agent.plist"
    cfg = config.load(home, env={})
    agent, watch = launchd.render(cfg, python=python)
    assert path.read_bytes() == agent.dumps()
    assert (agents_dir / "com.moonshot.watch.plist").read_bytes() == watch.dumps()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert (home / "logs").is_dir()  # launchd opens StandardOutPath there
    uid = os.getuid()
    assert mac.calls() == [
        ["bootstrap", f"gui/{uid}", str(path)],
        ["bootstrap", f"gui/{uid}", str(agents_dir / "com.moonshot.watch.plist")],
    ]


@pytest.mark.parametrize("python", ["missing", "no-moonshot"])
def test_install_refuses_an_interpreter_that_cannot_run_moonshot(tmp_path, mac, python):
    exe = (
        fake_python(tmp_path, can_import=False)
        if python == "no-moonshot"
        else "/nonexistent/python3"
    )
    result = run(tmp_path / "home", "launchd", "install", "--python", exe)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "--python" in result.stderr
    assert mac.calls() == []
    assert not (
        tmp_path / "user" / "Library" / "LaunchAgents" / "com.moonshot.agent.plist"
    ).exists()


def test_install_split_replaces_the_single_agent(tmp_path, mac):
    home = tmp_path / "home"
    assert install(home, tmp_path).exit_code == 0
    mac.reset()
    assert install(home, tmp_path, "--split").exit_code == 0
    agents_dir = tmp_path / "user" / "Library" / "LaunchAgents"
    assert sorted(p.name for p in agents_dir.iterdir()) == [
        "com.moonshot.photosync.plist",
        "com.moonshot.watch.plist",
        "com.moonshot.watcher.plist",
    ]
    uid = os.getuid()
    assert mac.calls() == [
        ["bootout", f"gui/{uid}/com.moonshot.agent"],
        ["bootout", f"gui/{uid}/com.moonshot.watch"],
        ["bootstrap", f"gui/{uid}", str(agents_dir / "com.moonshot.photosync.plist")],
        ["bootstrap", f"gui/{uid}", str(agents_dir / "com.moonshot.watcher.plist")],
        ["bootstrap", f"gui/{uid}", str(agents_dir / "com.moonshot.watch.plist")],
    ]


def test_reinstall_boots_out_first(tmp_path, mac):
    home = tmp_path / "home"
    assert install(home, tmp_path).exit_code == 0
    mac.reset()
    assert install(home, tmp_path).exit_code == 0
    uid = os.getuid()
    assert [c[0] for c in mac.calls()] == ["bootout", "bootout", "bootstrap", "bootstrap"]
    assert mac.calls()[0] == ["bootout", f"gui/{uid}/com.moonshot.agent"]


def test_bootstrap_failure_is_one_line_error(tmp_path, mac):
    mac.plan({"bootstrap": {"rc": 5, "stderr": "Bootstrap failed: 5: Input/output error\n"}})
    result = install(tmp_path / "home", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: launchctl bootstrap gui/{os.getuid()} "
        f"{tmp_path / 'user' / 'Library' / 'LaunchAgents' / 'com.moonshot.agent.plist'}"
        " failed (5): Bootstrap failed: 5: Input/output error"
    ]


def test_restart_kickstarts_installed_agents(tmp_path, mac):
    home = tmp_path / "home"
    result = run(home, "launchd", "restart")
    assert result.exit_code == 1 and "launchd install" in result.stderr
    assert install(home, tmp_path, "--split").exit_code == 0
    mac.reset()
    assert run(home, "launchd", "restart").exit_code == 0
    uid = os.getuid()
    assert mac.calls() == [
        ["kickstart", "-k", f"gui/{uid}/com.moonshot.photosync"],
        ["kickstart", "-k", f"gui/{uid}/com.moonshot.watcher"],
    ]


PRINT_RUNNING = """gui/501/com.moonshot.agent = {
\tactive count = 1
\tpath = /Users/you/Library/LaunchAgents/com.moonshot.agent.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /Users/you/moonshot/.venv/bin/python
\truns = 3
\tpid = 4242
\tlast exit code = 1
\tendpoints = {
\t\tstate = active
\t}
}
"""


def test_status_reads_launchctl_print(tmp_path, mac):
    home = tmp_path / "home"
    assert install(home, tmp_path).exit_code == 0
    mac.reset()
    mac.plan({"print": {"stdout": PRINT_RUNNING}})
    result = run(home, "launchd", "status")
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines() == [
        "com.moonshot.agent: running pid=4242 last_exit_code=1 runs=3",
        "com.moonshot.watch: running pid=4242 last_exit_code=1 runs=3",
    ]
    assert mac.calls() == [
        ["print", f"gui/{os.getuid()}/com.moonshot.agent"],
        ["print", f"gui/{os.getuid()}/com.moonshot.watch"],
    ]


def test_status_not_loaded_or_not_running_exits_1(tmp_path, mac):
    home = tmp_path / "home"
    result = run(home, "launchd", "status")
    assert result.exit_code == 1 and "launchd install" in result.stdout
    assert install(home, tmp_path).exit_code == 0
    mac.plan({"print": {"rc": 113, "stderr": "Could not find service\n"}})
    result = run(home, "launchd", "status", "--json")
    assert result.exit_code == 1
    import json

    assert json.loads(result.stdout) == [
        {"label": label, "loaded": False, "state": "not loaded", "ok": False}
        for label in ("com.moonshot.agent", "com.moonshot.watch")
    ]
    mac.plan({"print": {"stdout": PRINT_RUNNING.replace("state = running", "state = waiting")}})
    assert run(home, "launchd", "status").exit_code == 1
    # Between its runs the watch agent is loaded and not running: that is its normal state.
    mac.plan({"print": {"stdout": PRINT_RUNNING.replace("state = running", "state = not running")}})
    result = run(home, "launchd", "status", "--json")
    assert result.exit_code == 1  # the service agent is not running
    assert [e["ok"] for e in json.loads(result.stdout)] == [False, True]


def test_uninstall_boots_out_and_removes(tmp_path, mac):
    home = tmp_path / "home"
    assert install(home, tmp_path).exit_code == 0
    mac.reset()
    result = run(home, "launchd", "uninstall")
    assert result.exit_code == 0 and "removed com.moonshot.agent" in result.stdout
    assert "removed com.moonshot.watch" in result.stdout
    assert mac.calls() == [
        ["bootout", f"gui/{os.getuid()}/com.moonshot.agent"],
        ["bootout", f"gui/{os.getuid()}/com.moonshot.watch"],
    ]
    assert list((tmp_path / "user" / "Library" / "LaunchAgents").iterdir()) == []
    mac.reset()
    result = run(home, "launchd", "uninstall")
    assert result.exit_code == 0 and "no moonshot agent" in result.stdout
    assert mac.calls() == []
