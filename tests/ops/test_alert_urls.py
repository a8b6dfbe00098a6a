"""Which alert URL may live in moonshot.toml (token-less: desktop, plain webhooks) and
which is a secret (every account on a service, a webhook with a password or a
credential-like argument); labels show scheme and host only; config refuses a secret in
moonshot.toml or MOONSHOT_ALERTS_URLS with one line that says where it belongs."""

from __future__ import annotations

import pytest

from moonshot import config
from moonshot.errors import ConfigError
from moonshot.ops import alert_urls

TOKEN = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET_URLS = [
    f"tgram://123456789:{TOKEN}/12345",
    f"discord://1234567/{TOKEN}",
    f"slack://T1JJ3T3L2/A1BRTD4JD/{TOKEN}",
    f"ntfys://ntfy.sh/topic?token={TOKEN}",
    "ntfy://mytopic",  # a public ntfy topic is a password: anyone who knows it reads it
    f"pover://user@{TOKEN}",
    f"mailto://me:{TOKEN}@gmail.com",
    f"json://bot:{TOKEN}@127.0.0.1:8080/hook",
    f"jsons://hooks.example.com/x?+Authorization=Bearer%20{TOKEN}",
    f"json://localhost/x?+X-Anything={TOKEN}",  # any header
    f"json://localhost/x?apikey={TOKEN}",
    f"form://localhost/x?-token={TOKEN}",
]
TOKENLESS = [
    "macosx://",
    "macosx://?sound=default",
    "json://localhost:8080/moonshot",
    "json://127.0.0.1:9000/hook?method=PUT",
    "jsons://alerts.example.com/moonshot",
    "xml://[::1]:8080/x",
    "dbus://",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_a_url_with_a_token_is_a_secret(url):
    assert alert_urls.secret_reason(url) is not None


@pytest.mark.parametrize("url", TOKENLESS)
def test_desktop_and_plain_webhooks_are_not(url):
    assert alert_urls.secret_reason(url) is None


@pytest.mark.parametrize("url", SECRET_URLS + TOKENLESS)
def test_a_label_is_scheme_and_host_and_never_the_token(url):
    label = alert_urls.label(url)
    assert TOKEN not in label and "123456789" not in label and "mytopic" not in label
    assert label.startswith(alert_urls.scheme(url) + "://")
    assert "/" not in label.split("://", 1)[1] and "?" not in label and "@" not in label


def test_a_webhook_is_named_with_its_port_and_never_its_credentials():
    """Found from outside: a json:// receiver with a user and password (or a token in its
    query) was named "json://127.0.0.1", so two receivers on one host looked the same."""
    for url, want in [
        (f"json://moonshot:{TOKEN}@127.0.0.1:8123/hook", "json://127.0.0.1:8123"),
        (f"json://127.0.0.1:8123/hook?token={TOKEN}", "json://127.0.0.1:8123"),
        (f"jsons://127.0.0.1:8443/?+Authorization=Bearer%20{TOKEN}", "jsons://127.0.0.1:8443"),
        (f"json://user:{TOKEN}@[::1]:8123/x", "json://[::1]:8123"),
        (f"xml://hooks.example.com:8080/p?key={TOKEN}#frag", "xml://hooks.example.com:8080"),
        ("json://127.0.0.1:99999/x", "json://127.0.0.1"),  # not a port
    ]:
        label = alert_urls.label(url)
        assert label == want, url
        assert TOKEN not in label and "moonshot" not in label and "user" not in label
    # a service's secret URL keeps its host alone
    assert alert_urls.label(f"mailto://me:{TOKEN}@gmail.com:587") == "mailto://gmail.com"


def test_labels_keep_what_helps_a_person():
    assert alert_urls.label("json://localhost:8080/moonshot") == "json://localhost:8080"
    assert alert_urls.label(f"ntfys://ntfy.sh/topic?token={TOKEN}") == "ntfys://ntfy.sh"
    assert alert_urls.label(f"mailto://me:{TOKEN}@gmail.com") == "mailto://gmail.com"
    assert alert_urls.label(f"tgram://123456789:{TOKEN}/12345") == "tgram://***"
    assert alert_urls.label("macosx://") == "macosx://"


@pytest.mark.parametrize("url", SECRET_URLS)
def test_scrubbing_removes_the_token_from_any_text(url):
    text = f"sending to {url} failed; token {TOKEN} refused"
    clean = alert_urls.scrub(text, alert_urls.secret_pieces(url))
    if TOKEN in url:
        assert TOKEN not in clean
    assert url not in clean


def test_the_secret_holds_several_urls():
    text = f"tgram://1:{TOKEN}/2  json://localhost/a?to=x,y,json://localhost/b\nmacosx://"
    assert alert_urls.split(text) == [
        f"tgram://1:{TOKEN}/2",
        "json://localhost/a?to=x,y",
        "json://localhost/b",
        "macosx://",
    ]


def test_fingerprints_are_stable_and_tell_nothing():
    a = alert_urls.fingerprint(SECRET_URLS[0])
    assert a == alert_urls.fingerprint(SECRET_URLS[0] + " ") and len(a) == 12
    assert a != alert_urls.fingerprint(SECRET_URLS[1])
    assert TOKEN not in a


@pytest.mark.parametrize("url", SECRET_URLS[:3] + SECRET_URLS[7:8])
def test_config_refuses_a_secret_url_in_moonshot_toml(tmp_path, url):
    (tmp_path / "moonshot.toml").write_text(f'[alerts]\nurls = ["macosx://", "{url}"]\n')
    with pytest.raises(ConfigError) as err:
        config.load(tmp_path, env={})
    text = str(err.value)
    assert "\n" not in text and TOKEN not in text
    assert "alerts.urls #2" in text and "MOONSHOT_ALERT_URLS" in text
    assert str(tmp_path / "moonshot.toml") in text


def test_config_refuses_it_in_the_variable_that_overrides_the_key(tmp_path):
    env = {"MOONSHOT_ALERTS_URLS": f"tgram://123456789:{TOKEN}/12345"}
    with pytest.raises(ConfigError) as err:
        config.load(tmp_path, env=env)
    assert str(err.value).startswith("MOONSHOT_ALERTS_URLS: alerts.urls #1 (tgram://***)")
    assert TOKEN not in str(err.value)


def test_config_takes_token_less_urls_and_the_summary_time(tmp_path):
    (tmp_path / "moonshot.toml").write_text(
        '[alerts]\nurls = ["macosx://", "json://localhost:8080/x"]\ndaily_summary = "08:30"\n'
    )
    cfg = config.load(tmp_path, env={})
    assert cfg.alerts.urls == ["macosx://", "json://localhost:8080/x"]
    assert cfg.alerts.daily_summary == "08:30"


@pytest.mark.parametrize("value", ["8:30", "24:00", "noon", "08:60"])
def test_a_bad_summary_time_is_one_line(tmp_path, value):
    with pytest.raises(ConfigError) as err:
        config.load(tmp_path, env={"MOONSHOT_ALERTS_DAILY_SUMMARY": value})
    assert "alerts.daily_summary" in str(err.value) and "HH:MM" in str(err.value)
