"""The `receiver` fixture: a loopback alert receiver (tests/ops/receivers.py), closed after
the test. Load it with `pytest_plugins = ["tests.ops.receiver_plugin"]`."""

from __future__ import annotations

import pytest

from tests.ops.receivers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
