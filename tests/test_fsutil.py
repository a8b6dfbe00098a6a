"""Durable writes on a disk that is really full (a small tmpfs, not a mock): a failed
write leaves no `.part` and no half line, and the service waits for space instead of
failing every coin (issue 15, item 5)."""

from __future__ import annotations

import io
import json
import os
import random
import threading

import pytest
from PIL import Image

from moonshot.errors import HomeTrouble
from moonshot.fsutil import append_durable, copy_atomic, write_atomic
from tests.conftest import run_cli, wait_for
from tests.person import launch_counts, status_json

FAST = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01", "MOONSHOT_SERVICE_IDLE_SLEEP_MAX": "0.2"}


def noise_png(path, side=800, seed=0) -> bytes:
    """An image whose JPEG is large (~590 KB: random noise does not compress)."""
    im = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def parts(*folders) -> list[str]:
    return [p.name for f in folders if f.exists() for p in f.rglob("*.part")]


def test_each_write_leaves_nothing_behind_on_a_full_disk(small_disk):
    disk = small_disk("1m")
    disk.fill(leave=8192)
    big = os.urandom(64 * 1024)
    with pytest.raises(HomeTrouble, match="disk is full"):
        write_atomic(disk.path / "a.jpg", big)
    (disk.path / "src").write_bytes(b"")  # an inode is still there
    assert parts(disk.path) == [] and not (disk.path / "a.jpg").exists()
    disk.free_up()
    src = disk.path / "src"
    src.write_bytes(big)
    disk.fill(leave=8192)
    with pytest.raises(HomeTrouble, match="disk is full"):
        copy_atomic(src, disk.path / "b.jpg")
    assert parts(disk.path) == []
    disk.free_up()
    ledger = disk.path / "launches.jsonl"
    append_durable(ledger, json.dumps({"coin_id": 1}))
    disk.fill(leave=100)
    with pytest.raises(HomeTrouble):
        append_durable(ledger, json.dumps({"coin_id": 2, "pad": "x" * 8000}))
    assert ledger.read_text() == '{"coin_id": 1}\n'  # no half line


@pytest.mark.stress
@pytest.mark.parametrize("full", ["spool", "library"])
def test_a_full_disk_pauses_the_service_leaves_no_part_files_and_every_coin_launches(
    small_disk, service_process, tmp_path, full
):
    """The spool's disk full (home on a small tmpfs), or the folder library's own disk
    full: no coin fails for it, no `.part` is left, and when space comes back every coin
    launches once."""
    home_disk = small_disk("48m")
    home = home_disk.path / "home"
    home.mkdir()
    env = dict(FAST)
    if full == "library":
        lib_disk = small_disk("1000k")
        env["MOONSHOT_PHOTOS_LIBRARY"] = str(lib_disk.path / "lib")
        library = lib_disk.path / "lib"
    else:
        library = home / "library"
    images = []
    for i in range(6):
        images.append(tmp_path / f"n{i}.png")
        noise_png(images[-1], seed=i)
    for i, img in enumerate(images):
        run_cli(
            home,
            "add",
            "--ticker",
            f"F{i}",
            "--name",
            f"f{i}",
            "--image",
            str(img),
            env=env,
            check=True,
        )
    if full == "spool":
        home_disk.fill(leave=300_000)  # room for the database, not for a 590 KB JPEG
    proc = service_process(home, env)
    if full == "library":
        wait_for(lambda: launch_counts(home), what="the first launch")  # one fits
    report = wait_for(
        lambda: (
            (r := status_json(home))
            and r["service"]["alive"]
            and any("full" in p for p in r["problems"])
            and r
        ),
        what="status to say the disk is full",
    )
    assert report["counts"]["failed"] == 0 and report["service"]["alive"]
    assert parts(home / "spool", library) == []
    assert proc.poll() is None and "Traceback" not in proc.err()
    if full == "spool":
        home_disk.free_up()
    else:
        lib_disk.grow("16m")
    wait_for(lambda: sum(launch_counts(home).values()) == 6, timeout=120, what="6 launches")
    assert set(launch_counts(home).values()) == {1}
    assert parts(home / "spool", library) == []
    assert status_json(home)["counts"]["failed"] == 0
    assert "Traceback" not in proc.err()


def test_two_writers_of_one_file_never_trip_over_each_other(tmp_path):
    """The sync and the launch agent of `--split` both keep the home's marker: each write
    has its own part file (a shared `<name>.part` was renamed away under the other one,
    ENOENT, and the launch agent paused with a coin in launching)."""
    target = tmp_path / ".moonshot-home"
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(n: int) -> None:
        start.wait()
        try:
            for i in range(300):
                write_atomic(target, json.dumps({"writer": n, "i": i}).encode(), durable=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text())["i"] == 299
    assert parts(tmp_path) == []
