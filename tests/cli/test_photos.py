"""`moonshot photos newest|find` through the real top-level CLI, on copies of the real
Photos library fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from moonshot.cli import cli
from tests.photos.helpers import CLOUD, COMPARE, copy_library

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner():
    return CliRunner()


def test_newest_json_names_img_1994(tmp_path, runner):
    lib = copy_library(COMPARE, tmp_path)
    res = runner.invoke(cli, ["photos", "newest", "--library", str(lib), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["original_filename"] == "IMG_1994.JPG"
    assert data["id"] == "C0054772-8788-499F-B94F-8AC6064B8A58"
    assert data["date_added"] == "2024-03-03T15:49:48Z"
    assert data["in_cloud"] is None


def test_find_lists_duplicates_newest_first(tmp_path, runner):
    lib = copy_library(COMPARE, tmp_path)
    res = runner.invoke(cli, ["photos", "find", "IMG_1994.JPG", "--library", str(lib), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["id"] for r in rows] == [
        "C0054772-8788-499F-B94F-8AC6064B8A58",
        "F269CA02-F39B-4306-882A-B05B31926C80",
    ]
    text = runner.invoke(cli, ["photos", "find", "IMG_1994.JPG", "--library", str(lib)])
    lines = text.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("C0054772-8788-499F-B94F-8AC6064B8A58  2024-03-03T15:49:48Z")
    assert lines[0].endswith("IMG_1994.JPG")


def test_find_shows_icloud_state(tmp_path, runner):
    lib = copy_library(CLOUD, tmp_path)
    res = runner.invoke(
        cli, ["photos", "find", "AFTERNOON WALK IN TOKYO.jpeg", "--library", str(lib)]
    )
    assert "icloud: not uploaded" in res.output
    res = runner.invoke(
        cli,
        [
            "photos",
            "find",
            "F78B09C2-DA3E-4171-8CB9-DF16AE4EFE72.JPG",
            "--library",
            str(lib),
            "--json",
        ],
    )
    assert [r["in_cloud"] for r in json.loads(res.output)] == [True]


def test_find_nothing(tmp_path, runner):
    lib = copy_library(COMPARE, tmp_path)
    res = runner.invoke(cli, ["photos", "find", "nope.jpg", "--library", str(lib)])
    assert (res.exit_code, res.output.strip()) == (0, "no asset named nope.jpg")
    res = runner.invoke(cli, ["photos", "find", "nope.jpg", "--library", str(lib), "--json"])
    assert json.loads(res.output) == []


def test_library_comes_from_config(tmp_path, runner):
    lib = copy_library(CLOUD, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text(f'[photos]\nlibrary = "{lib}"\n')
    res = runner.invoke(cli, ["--home", str(home), "photos", "newest", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["original_filename"] == "AFTERNOON WALK IN TOKYO.jpeg"


def test_errors_are_one_line(tmp_path, runner):
    res = runner.invoke(
        cli, ["photos", "newest", "--library", str(tmp_path / "Gone.photoslibrary")]
    )
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: Photos library not found at {tmp_path / 'Gone.photoslibrary'}; "
        "set photos.library to your `.photoslibrary` folder"
    ]
    home = tmp_path / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text("[photos]\nbogus = 1\n")
    res = runner.invoke(cli, ["--home", str(home), "photos", "newest"])
    assert res.exit_code == 1 and "unknown key photos.bogus" in res.output


def test_registered_in_the_installed_command(tmp_path):
    lib = copy_library(COMPARE, tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "moonshot", "photos", "newest", "--library", str(lib), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["original_filename"] == "IMG_1994.JPG"


def test_find_keeps_its_name_index_in_the_cache_folder(tmp_path, runner, cache_dir):
    lib = copy_library(COMPARE, tmp_path)
    args = ["photos", "find", "IMG_1994.JPG", "--library", str(lib), "--json"]
    scanned = runner.invoke(cli, [*args, "--no-index"])
    assert scanned.exit_code == 0, scanned.output
    assert list(cache_dir.iterdir()) == []
    for _ in range(2):  # built, then used
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert json.loads(res.output) == json.loads(scanned.output)
    (index,) = cache_dir.iterdir()
    assert index.name.startswith("photos-names-") and index.stat().st_mode & 0o077 == 0
    assert not any(p.name.startswith("photos-names-") for p in lib.rglob("*"))
