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


# -- issue 15, item 9: wrong configuration never silently changes behaviour ---------------------
@pytest.mark.parametrize(
    "toml, message",
    [
        (
            "[spool]\ndownload_attempts = 2.9\n",
            "spool.download_attempts must be a whole number, got 2.9",
        ),
        ("[source]\nbatch = 1.7\n", "source.batch must be a whole number, got 1.7"),
        ('[photos]\nlibrary = ["a"]\n', "photos.library must be a text, got ['a']"),
        ('[launch]\nrequire_approval = "yes"\n', "launch.require_approval must be true or false"),
        ('[launch]\ndeny_users = "bob"\n', "launch.deny_users must be a list of texts"),
        ("[launch]\ndeny_users = [1]\n", "launch.deny_users must be a list of texts"),
        ("[spool]\ntimeout = true\n", "unknown key spool.timeout"),
        ("spool = 3\n", "spool must be a table"),
    ],
)
def test_values_are_checked_by_type_never_truncated_or_stringified(tmp_path, toml, message):
    (tmp_path / "moonshot.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path, env={})
    assert message in str(info.value)


WRONG = {"bool": "yes", "int": 2.5, "float": "3", "str": 3, "list[str]": "a,b"}
RIGHT = {"bool": True, "int": 3, "float": 3, "str": "x", "list[str]": ["x"]}


@pytest.mark.parametrize("name", sorted(config.setting_names()))
def test_every_key_is_type_checked_in_the_file_and_the_environment(tmp_path, name):
    """A mechanism over SECTIONS: a key added by anyone is checked like these."""
    section, key = config.setting_names()[name]
    kind = config.kind_of(section, key)
    (tmp_path / "moonshot.toml").write_text(f"[{section}]\n{key} = {_toml(WRONG[kind])}\n")
    with pytest.raises(ConfigError, match=f"{section}.{key} must be"):
        config.load(tmp_path, env={})
    (tmp_path / "moonshot.toml").write_text(f"[{section}]\n{key} = {_toml(RIGHT[kind])}\n")
    try:
        config.load(tmp_path, env={})
    except ConfigError as exc:  # a range or a choice may refuse the value: not the type
        assert "must be" not in str(exc)
    if kind in ("int", "float", "bool"):
        with pytest.raises(ConfigError, match=name):
            config.load(tmp_path, env={name: "2.5x"})


def _toml(value) -> str:
    import json

    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@pytest.mark.parametrize(
    "name, near",
    [
        ("MOONSHOT_LANCH_MODE", "MOONSHOT_LAUNCH_MODE"),
        ("MOONSHOT_SPOOL_DOWNLOAD_ATTEMPT", "MOONSHOT_SPOOL_DOWNLOAD_ATTEMPTS"),
        ("MOONSHOT_HOM", "MOONSHOT_HOME"),
    ],
)
def test_an_unknown_moonshot_variable_is_refused_with_the_nearest_name(tmp_path, name, near):
    with pytest.raises(ConfigError, match=f"{name}: .*did you mean {near}\\?"):
        config.load(tmp_path, env={name: "off"})


def test_a_moonshot_toml_that_cannot_be_read_is_an_error_never_the_defaults(tmp_path):
    toml = tmp_path / "moonshot.toml"
    toml.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match="symlink to .*gone.toml, which does not exist"):
        config.load(tmp_path, env={})
    toml.unlink()
    toml.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        config.load(tmp_path, env={})
