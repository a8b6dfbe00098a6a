"""Configuration: defaults that work, the file, environment overrides, clear errors."""

import pytest

from moonshot import config
from moonshot.errors import ConfigError


def test_defaults_work_on_a_fresh_machine(tmp_path):
    cfg = config.load(tmp_path, env={})
    assert (cfg.source.kind, cfg.launch.mode) == ("local", "ledger")
    assert cfg.photos_kind in ("folder", "macos")
    assert (
        cfg.spool.download_timeout == 30 and cfg.spool.download_attempts == 3
    )  # the plan's defaults


def test_file_then_environment(tmp_path):
    (tmp_path / "moonshot.toml").write_text(
        '[spool]\ndownload_attempts = 5\n[launch]\nmode = "off"\n'
    )
    cfg = config.load(
        tmp_path,
        env={"MOONSHOT_SPOOL_DOWNLOAD_ATTEMPTS": "7", "MOONSHOT_LAUNCH_DENY_USERS": "a, b"},
    )
    assert cfg.spool.download_attempts == 7 and cfg.launch.mode == "off"
    assert cfg.launch.deny_users == ["a", "b"]


@pytest.mark.parametrize(
    "toml, env, message",
    [
        ("[nope]\nx = 1\n", {}, "unknown section"),
        ("[spool]\nnope = 1\n", {}, "unknown key spool.nope"),
        (
            "[spool]\ndownload_attempts = 'x'\n",
            {},
            "spool.download_attempts must be a whole number",
        ),
        ("not toml = = =", {}, "not valid TOML"),
        ("", {"MOONSHOT_LAUNCH_MODE": "yolo"}, "launch.mode"),
        ("", {"MOONSHOT_SPOOL_MAX_BYTES": "lots"}, "MOONSHOT_SPOOL_MAX_BYTES"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, toml, env, message):
    (tmp_path / "moonshot.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message) as info:
        config.load(tmp_path, env=env)
    assert "\n" not in str(info.value)


def test_secrets_come_from_the_environment_only(tmp_path):
    (tmp_path / "moonshot.toml").write_text("[source]\nkind = 'supabase'\n")
    assert config.secret("SUPABASE_SERVICE_ROLE_KEY", env={}) is None
    key = "sk-test-SECRET-4711"
    assert config.secret("SUPABASE_SERVICE_ROLE_KEY", env={"SUPABASE_SERVICE_ROLE_KEY": key}) == key
    assert key not in str(
        config.as_dict(config.load(tmp_path, env={"SUPABASE_SERVICE_ROLE_KEY": key}))
    )
