"""Secrets: environment, then the login Keychain through a stand-in `security` on PATH
that records its arguments, then the 0600 moonshot.env; doctor's warning on its mode;
and never a value in a log line or a check message."""

from __future__ import annotations

import logging

import pytest

from moonshot import config, platform, secrets
from tests import standins

KEY = "SUPABASE_SERVICE_ROLE_KEY"
VALUE = "sk-service-role-0123456789"


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def security(monkeypatch, tmp_path):
    monkeypatch.setattr(platform, "is_macos", lambda: True)
    standin = standins.install(monkeypatch, tmp_path, "security")
    standin.plan(
        {
            "find-generic-password": {
                "rc": 44,
                "stderr": "security: SecKeychainSearchCopyNext: "
                "The specified item could not be found in the keychain.\n",
            }
        }
    )
    return standin


def write_env(home, text, mode=0o600):
    path = home / "moonshot.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_environment_comes_first(home, security):
    security.plan({"find-generic-password": {"stdout": "from-keychain\n"}})
    write_env(home, f"{KEY}=from-file\n")
    assert secrets.where(KEY, home=home, env={KEY: VALUE}) == ("environment", VALUE)
    assert security.calls() == []


def test_keychain_is_asked_with_service_and_account(home, security):
    security.plan({"find-generic-password": {"stdout": VALUE + "\n"}})
    write_env(home, f"{KEY}=from-file\n")
    assert secrets.where(KEY, home=home, env={}) == ("keychain", VALUE)
    assert security.calls() == [["find-generic-password", "-s", "moonshot", "-a", KEY, "-w"]]


def test_env_file_when_keychain_has_nothing(home, security):
    write_env(
        home,
        f"# moonshot secrets\nexport {KEY}='{VALUE}'\nSUPABASE_URL=\"https://x.supabase.co\"\n\nbad line\n",
    )
    assert secrets.where(KEY, home=home, env={}) == (str(home / "moonshot.env"), VALUE)
    assert secrets.get("SUPABASE_URL", home=home, env={}) == "https://x.supabase.co"
    assert secrets.get("X_BEARER_TOKEN", home=home, env={}) is None
    assert [c[4] for c in security.calls()] == [KEY, "SUPABASE_URL", "X_BEARER_TOKEN"]


def test_keychain_not_asked_off_macos(home, monkeypatch, tmp_path):
    standin = standins.install(monkeypatch, tmp_path, "security")
    standin.plan({"find-generic-password": {"stdout": "must-not-be-read\n"}})
    monkeypatch.setattr(platform, "is_macos", lambda: False)
    write_env(home, f"{KEY}={VALUE}\n")
    assert secrets.get(KEY, home=home, env={}) == VALUE
    assert standin.calls() == []


def test_keychain_error_is_logged_without_secret_and_falls_back(home, security, caplog):
    security.plan(
        {
            "find-generic-password": {
                "rc": 36,
                "stderr": "security: User interaction is not allowed.\n",
            }
        }
    )
    write_env(home, f"{KEY}={VALUE}\n")
    with caplog.at_level(logging.WARNING, logger="moonshot.secrets"):
        assert secrets.get(KEY, home=home, env={}) == VALUE
    assert "User interaction is not allowed" in caplog.text and KEY in caplog.text
    assert VALUE not in caplog.text


def test_keychain_timeout_falls_back(home, security, monkeypatch, caplog):
    monkeypatch.setattr(secrets, "KEYCHAIN_TIMEOUT", 0.3)
    security.plan({"find-generic-password": {"sleep": 5, "stdout": "late\n"}})
    write_env(home, f"{KEY}={VALUE}\n")
    with caplog.at_level(logging.WARNING, logger="moonshot.secrets"):
        assert secrets.get(KEY, home=home, env={}) == VALUE
    assert "timed out" in caplog.text


def test_config_secret_uses_the_chain(home, security, monkeypatch):
    """Every caller of config.secret gets the Keychain and the file, not just the environment."""
    monkeypatch.delenv(KEY, raising=False)
    write_env(home, f"{KEY}={VALUE}\n")
    assert config.secret(KEY, home=home) == VALUE
    monkeypatch.setenv("MOONSHOT_HOME", str(home))
    assert config.secret(KEY) == VALUE
    assert config.secret(KEY, env={KEY: "env-wins"}, home=home) == "env-wins"
    security.plan({"find-generic-password": {"stdout": "chain-keychain\n"}})
    assert config.secret(KEY, env={}, home=home) == "chain-keychain"


def test_cfg_secret_reads_its_own_home(home, tmp_path, monkeypatch):
    """`moonshot --home H` does not export MOONSHOT_HOME: adapters ask cfg.secret()."""
    monkeypatch.delenv(KEY, raising=False)
    monkeypatch.setenv("MOONSHOT_HOME", str(tmp_path))  # some other folder
    write_env(home, f"{KEY}={VALUE}\n")
    assert config.secret(KEY) is None
    assert config.load(home, env={}).secret(KEY) == VALUE


@pytest.mark.parametrize(
    ("mode", "exposed"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, True)],
)
def test_file_exposed_by_mode(home, mode, exposed):
    write_env(home, f"{KEY}={VALUE}\n", mode)
    assert secrets.file_exposed(home) is exposed
    checks = {c.name: c for c in secrets.checks(home, env={})}
    assert checks["secrets file"].status == ("warn" if exposed else "ok")
    if exposed:
        assert checks["secrets file"].fix == f"chmod 600 {home / 'moonshot.env'}"
        assert f"{mode:o}" in checks["secrets file"].message


def test_checks_say_where_and_never_what(home, security):
    write_env(home, f"{KEY}={VALUE}\n")
    checks = secrets.checks(
        home, required=(KEY, "SUPABASE_URL"), env={"X_BEARER_TOKEN": "bearer-value"}
    )
    by_name = {c.name: c for c in checks}
    assert by_name[f"secret {KEY}"].status == "ok"
    assert by_name[f"secret {KEY}"].message == f"from {home / 'moonshot.env'}"
    assert by_name["secret X_BEARER_TOKEN"].message == "from environment"
    missing = by_name["secret SUPABASE_URL"]
    assert missing.status == "fail" and "security add-generic-password" in missing.fix
    assert "secret SUPABASE_DB_URL" not in by_name  # optional and absent: no line
    text = repr(checks)
    assert VALUE not in text and "bearer-value" not in text


def test_no_env_file_no_check_line(home):
    assert secrets.file_exposed(home) is False
    assert [c.name for c in secrets.checks(home, env={})] == []


def test_parse_env_file_edge_cases():
    parsed = secrets.parse_env_file("A=1\n  B = two words \nC='q=x'\nD=\"\"\n=nokey\nE\n#F=6\n")
    assert parsed == {"A": "1", "B": "two words", "C": "q=x", "D": ""}
