"""The Launcher contract, for every adapter that runs here."""

from __future__ import annotations

import json

import pytest

from moonshot.ports import Coin, Launcher, LaunchResult


def coin(**kw) -> Coin:
    base = dict(
        id=7,
        state="launching",
        source="local",
        source_ref="r",
        ticker="MOON",
        name="Moon",
        twitter_user="bob",
        tweet_id=None,
        image_url="u",
        image_filename="bob_MOON_1.jpg",
        attempts=0,
        last_error=None,
        photos_asset_id="A1",
        token_address=None,
        created_at="",
        updated_at="",
    )
    base.update(kw)
    return Coin(**base)


def ledger(tmp_path):
    from moonshot.app.launcher_ledger import LedgerLauncher

    return LedgerLauncher(tmp_path / "launches.jsonl")


@pytest.fixture(params=[pytest.param(ledger, id="ledger")])
def launcher(request, tmp_path) -> Launcher:
    return request.param(tmp_path)


def test_is_a_launcher(launcher):
    assert isinstance(launcher, Launcher)


def test_prepare_refuses_a_missing_image(launcher, tmp_path):
    from moonshot.errors import TransientError

    with pytest.raises(TransientError, match="missing"):
        launcher.prepare(coin(), tmp_path / "nope.jpg")


def test_launch_returns_a_result_and_records_it_durably(launcher, tmp_path):
    image = tmp_path / "bob_MOON_1.jpg"
    image.write_bytes(b"jpeg")
    launcher.prepare(coin(), image)
    result = launcher.launch(coin())
    assert isinstance(result, LaunchResult)
    lines = (tmp_path / "launches.jsonl").read_text().splitlines()
    assert [json.loads(x)["coin_id"] for x in lines] == [7]
