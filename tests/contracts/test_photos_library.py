"""The PhotosLibrary contract, one suite for every adapter (huey's StorageTests):
what the pipeline relies on. The macOS adapter joins on a Mac."""

from __future__ import annotations

import sys
import time

import pytest

from moonshot.ports import PhotosLibrary
from tests.conftest import make_image


def folder(tmp_path):
    from moonshot.photos.library_folder import FolderLibrary

    return FolderLibrary(tmp_path / "lib")


def macos(tmp_path):
    if sys.platform != "darwin":
        pytest.skip("the macOS Photos adapter imports into the real library: macOS only")
    from moonshot import config
    from moonshot.photos.library_macos import MacPhotosLibrary

    return MacPhotosLibrary.from_config(config.load(tmp_path, env={}))


ADAPTERS = [
    pytest.param(folder, id="folder"),
    pytest.param(macos, id="macos", marks=pytest.mark.macos),
]


@pytest.fixture(params=ADAPTERS)
def library(request, tmp_path) -> PhotosLibrary:
    return request.param(tmp_path)


def test_is_a_photos_library(library):
    assert isinstance(library, PhotosLibrary)


def test_import_then_find_newest_confirm(library, tmp_path):
    before = time.time()
    path = make_image(tmp_path / f"contract_C{int(before)}_1.jpg", fmt="JPEG")
    asset = library.import_file(path)
    assert asset.original_filename == path.name and asset.date_added >= before - 1
    assert [a.id for a in library.find(path.name, added_after=before - 1)] == [asset.id]
    assert library.newest().id == asset.id
    found = library.confirm(asset.id, path.name, before - 1)
    assert found.present and found.ready and found.asset.id == asset.id


def test_find_respects_added_after(library, tmp_path):
    path = make_image(tmp_path / "contract_AFTER_2.jpg", fmt="JPEG")
    asset = library.import_file(path)
    assert library.find(path.name, added_after=asset.date_added + 60) == []


def test_second_import_is_a_second_asset_and_newest(library, tmp_path):
    path = make_image(tmp_path / "contract_TWICE_3.jpg", fmt="JPEG")
    first = library.import_file(path)
    second = library.import_file(path)
    assert first.id != second.id
    assert [a.id for a in library.find(path.name)][:2] == [second.id, first.id]  # newest first
    assert library.newest().id == second.id


def test_confirm_of_unknown_file_is_not_present(library):
    found = library.confirm(None, "never_NEVER_4.jpg", time.time())
    assert not found.present and not found.ready and "never_NEVER_4.jpg" in found.detail
