"""The Source contract, for every adapter that runs without an account."""

from __future__ import annotations

import pytest

from moonshot.ports import Source


def local(tmp_path):
    from moonshot.adapters.source_local import LocalSource

    return LocalSource()


@pytest.fixture(params=[pytest.param(local, id="local")])
def source(request, tmp_path) -> Source:
    return request.param(tmp_path)


def test_is_a_source(source):
    assert isinstance(source, Source)


def test_poll_report_keepalive_close(source):
    assert isinstance(source.poll(0.0, 10), list)
    source.report("ref", "launched", {"token_address": None})
    source.keepalive([], 0.0)
    source.close()
