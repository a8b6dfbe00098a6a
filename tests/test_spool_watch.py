"""Drops into spool/ as people make them: a real second process copying a file at
10 KB/s (a slow network share) while `moonshot run` watches (issue 15, item 6)."""

from __future__ import annotations

import random
import subprocess
import sys

from PIL import Image

from moonshot import machine as m
from tests.conftest import run_cli, wait_for
from tests.person import launch_counts, status_json

SLOW_COPY = """
import sys, time
src, dst, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
with open(dst, "wb") as f:
    for i in range(0, len(data), 5120):   # 5 KB bursts, `rate` bytes a second (rsync, pv)
        f.write(data[i : i + 5120])
        f.flush()
        time.sleep(5120 / rate)
"""


def test_a_file_dropped_at_10_kb_per_second_is_taken_once_complete(home, tmp_path, service_process):
    src = tmp_path / "slow.jpg"
    im = Image.frombytes("RGB", (300, 300), random.Random(6).randbytes(300 * 300 * 3))
    im.save(src, "JPEG", quality=95)  # ~100 KB: about 10 s at 10 KB/s, past any grace
    assert src.stat().st_size > 80_000
    service = service_process(home, {"MOONSHOT_LAUNCH_MODE": "ledger"})
    wait_for(lambda: (home / "spool").is_dir() and status_json(home)["service"]["alive"])
    drop = home / "spool" / "carol_SLOW_1700000000.jpg"
    writer = subprocess.Popen([sys.executable, "-c", SLOW_COPY, str(src), str(drop), "10240"])
    assert writer.wait(timeout=120) == 0
    report = wait_for(
        lambda: (r := status_json(home))["counts"][m.CONFIRMED] == 1 and r,
        what="the finished drop to be taken",
    )
    assert report["counts"][m.REJECTED] == 0 and report["total"] == 1
    assert report["refused_drops"] == {}  # refused while incomplete, then taken
    (held,) = report["held"]
    run_cli(home, "approve", str(held["id"]), check=True)  # a manual coin: status says so
    wait_for(lambda: launch_counts(home) == {("carol", "SLOW"): 1}, what="the launch")
    assert service.poll() is None
