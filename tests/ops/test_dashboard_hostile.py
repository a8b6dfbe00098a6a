"""The outside attack on `moonshot dashboard` (a tester with README and CLI only), finding
by finding, against the real command in a subprocess over a home made by the real
pipeline: a coin in needs_review with the launcher's screenshot, 1,500 tweets refused
from as many authors, a moonshot.env full of secrets. The hostile layouts (symlinks,
FIFOs, hard links) are made after the dashboard started, as the attack made them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from moonshot.app.runner import Runner
from moonshot.crash import CRASH_EXIT
from moonshot.ops import dashboard as dash
from tests.conftest import make_image, run_cli
from tests.ops.test_dashboard_live import ENV, QUERIES, Screen, add, get, serving

SECRETS = "SUPABASE_SERVICE_ROLE_KEY=sk-very-secret\nX_BEARER_TOKEN=bearer-very-secret\n"
AUTHORS = 1500


def tweets(n: int) -> dict:
    """An X API response: n tweets with a photo from n authors with 10 followers each
    (the home's policy wants 1,000: each is refused, author recorded)."""
    data, media, users = [], [], []
    for i in range(n):
        key = f"3_{1_000_000 + i}"
        data.append(
            {
                "id": str(1_900_000_000_000_000_000 + i),
                "text": f"$T{i} Coin {i}",
                "author_id": str(10_000 + i),
                "created_at": "2024-11-18T08:33:02.000Z",
                "attachments": {"media_keys": [key]},
                "entities": {"cashtags": [{"start": 0, "end": 2 + len(str(i)), "tag": f"T{i}"}]},
            }
        )
        media.append({"media_key": key, "type": "photo", "url": f"https://pbs.twimg.com/m/{i}.jpg"})
        users.append(
            {
                "id": str(10_000 + i),
                "name": f"User {i}",
                "username": f"author{i:05d}",
                "public_metrics": {"followers_count": 10},
            }
        )
    return {"data": data, "includes": {"media": media, "users": users}}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text("[policy]\nmin_followers = 1000\n")
    image = str(make_image(tmp / "moon.png", size=(300, 300), fmt="PNG"))
    coin = add(home, "REVU", "Review Me", image, "carol")
    crash = run_cli(
        home, "run", "--once", env={**ENV, "MOONSHOT_CRASH_AT": "after_launching_commit"}
    )
    assert crash.returncode == CRASH_EXIT, crash.stderr[-1000:]
    run_cli(home, "run", "--once", env=ENV)  # finds it in launching: needs_review
    (tmp / "tweets.json").write_text(json.dumps(tweets(AUTHORS)))
    run_cli(home, "ingest", str(tmp / "tweets.json"), check=True, timeout=300)
    shot = Runner(None, Screen(), home / "logs" / "screens").save_screen(
        SimpleNamespace(name="read-back"), coin
    )
    (home / "moonshot.env").write_text(SECRETS)
    db = sqlite3.connect(home / "moonshot.db")
    assert db.execute("select state from coins where id = ?", (coin,)).fetchone() == (
        "needs_review",
    )
    assert db.execute("select count(*) from decisions where decision = 'refused'").fetchone() == (
        AUTHORS,
    )
    db.close()
    return SimpleNamespace(path=home, coin=coin, shot=shot, screens=home / "logs" / "screens")


@pytest.fixture(scope="module")
def served(home):
    with serving(home.path) as s:
        yield s


def screen_srcs(served) -> list[str]:
    status, page = get(f"{served.base}/moonshot/needs_review")
    assert status == 200
    return re.findall(r'<img src="([^"]+)"', page.decode())


def png(path: Path, color=(20, 120, 200)) -> bytes:
    Image.new("RGB", (40, 30), color).save(path, "PNG")
    return path.read_bytes()


# -- finding 1: the screenshots ------------------------------------------------------


def test_only_the_launchers_pngs_are_linked_and_served(home, served):
    coin, screens = home.coin, home.screens
    odd_name = f"20250101T000009.000000Z-coin{coin}-my 'odd' 100% shot.png"
    odd = png(screens / odd_name)
    hostile = {
        "not_png": f"20250101T000001.000000Z-coin{coin}-text.png",
        "hard_link": f"20250101T000002.000000Z-coin{coin}-hard.png",
        "fifo": f"20250101T000003.000000Z-coin{coin}-fifo.png",
        "symlink": f"20250101T000004.000000Z-coin{coin}-sym.png",
        "folder": f"20250101T000005.000000Z-coin{coin}-dir.png",
    }
    (screens / hostile["not_png"]).write_text("coin-3-x.txt, renamed")
    os.link(home.path / "moonshot.env", screens / hostile["hard_link"])
    os.mkfifo(screens / hostile["fifo"])
    (screens / hostile["symlink"]).symlink_to(home.path / "moonshot.env")
    (screens / hostile["folder"]).mkdir()
    try:
        srcs = screen_srcs(served)
        assert [urllib.parse.unquote(s) for s in srcs] == [
            f"/screens/{odd_name}",
            f"/screens/{home.shot.name}",
        ]
        for src in srcs:  # every thumbnail on the page is a PNG that loads
            status, body = get(served.base + src)
            assert status == 200 and body.startswith(b"\x89PNG"), src
        assert get(served.base + srcs[0])[1] == odd
        for kind, name in hostile.items():
            status, body = get(f"{served.base}/screens/{urllib.parse.quote(name)}", timeout=10)
            assert status == 404, (kind, status)
            assert b"secret" not in body, kind
        for name in ("moonshot.env", "moonshot.db", "..%2Fmoonshot.env", "%2E%2E%2Fmoonshot.env"):
            status, body = get(f"{served.base}/screens/{name}")
            assert status == 404 and b"secret" not in body, name
    finally:
        for name in [odd_name, *hostile.values()]:
            path = screens / name
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


@pytest.mark.parametrize(
    "layout", ["screens -> ..", "screens -> /", "logs -> a copy elsewhere", "screens -> a copy"]
)
def test_a_symlinked_folder_made_after_start_serves_nothing(home, served, layout, tmp_path):
    """`mv logs/screens logs/screens.real && ln -s .. logs/screens` after the start:
    the home's own files (moonshot.env) and even real PNGs behind the link are refused."""
    logs, screens = home.path / "logs", home.screens
    bait = f"20250101T000007.000000Z-coin{home.coin}-bait.png"
    png(home.path / bait)  # reachable as /screens/bait through `screens -> ..` ... -> home
    png(logs / bait)
    moved = {}
    try:
        if layout.startswith("screens"):
            moved[screens] = screens.with_name("screens.real")
            screens.rename(moved[screens])
            target = {"..": Path(".."), "/": Path("/")}.get(layout.split()[-1])
            if target is None:
                target = tmp_path / "copy"
                shutil.copytree(moved[screens], target)
                png(target / bait)
            screens.symlink_to(target)
        else:
            moved[logs] = logs.with_name("logs.real")
            logs.rename(moved[logs])
            shutil.copytree(moved[logs], tmp_path / "logs")
            png(tmp_path / "logs" / "screens" / bait)
            logs.symlink_to(tmp_path / "logs")
        for name in (bait, home.shot.name, "moonshot.env", "moonshot.db", "hostname"):
            status, body = get(f"{served.base}/screens/{name}")
            assert status == 404, (layout, name, status)
            assert b"secret" not in body and not body.startswith(b"SQLite")
        assert get(f"{served.base}/screens/etc/hostname")[0] == 404
        assert screen_srcs(served) == []  # "none saved": nothing links through the link
    finally:
        for link, real in moved.items():
            link.unlink()
            real.rename(link)
        (home.path / bait).unlink()
        (logs / bait).unlink()
    assert len(screen_srcs(served)) == 1  # restored: the real shot is linked again


def test_term_stops_it_after_a_request_for_a_fifo(home):
    fifo = home.screens / f"20250101T000008.000000Z-coin{home.coin}-fifo.png"
    os.mkfifo(fifo)
    try:
        with serving(home.path) as s:
            assert get(f"{s.base}/screens/{fifo.name}", timeout=10)[0] == 404
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(30)  # one TERM is enough
            assert "Traceback" not in s.err.read_text()
    finally:
        fifo.unlink()


# -- finding 2: runaway queries ---------------------------------------------------------


def sql_get(served, sql: str, timeout: float = 60) -> tuple[int, dict]:
    status, body = get(
        f"{served.base}/moonshot.json?" + urllib.parse.urlencode({"sql": sql}), timeout
    )
    return status, json.loads(body)


def test_a_runaway_call_does_not_starve_the_services_checkpoints(home, served):
    """The attack's instr() on multi-megabyte strings ran 8-44 s past the 1 s limit with
    its read snapshot open; this one (4 MB) would run minutes. The client hangs up after
    2 s, as the attacker's did, while the service keeps committing: the WAL must be
    reset by a checkpoint well within that time."""
    attack = (
        "select count(*), instr(printf('%.*c', 4000000, 'a'), printf('%.*c', 2000000, 'a')"
        " || 'b') from coins"
    )
    url = f"{served.base}/moonshot.json?" + urllib.parse.urlencode({"sql": attack})
    clients = [threading.Thread(target=lambda: _hang_up(url, 2.0)) for _ in range(3)]
    for c in clients:
        c.start()
    writer = sqlite3.connect(home.path / "moonshot.db", timeout=10, isolation_level=None)
    try:
        deadline = time.monotonic() + 30
        while True:
            writer.execute(
                "INSERT INTO meta (key, value) VALUES ('hostile', 1)"
                " ON CONFLICT(key) DO UPDATE SET value = value + 1"
            )
            if writer.execute("pragma wal_checkpoint(truncate)").fetchone() == (0, 0, 0):
                break
            assert time.monotonic() < deadline, "a dashboard read kept the WAL from resetting"
            time.sleep(0.1)
    finally:
        writer.execute("DELETE FROM meta WHERE key = 'hostile'")
        writer.close()
        for c in clients:
            c.join()
    status, body = sql_get(served, attack)
    assert status == 200 and body["rows"] == [[1, None]]  # printf over the bound is NULL
    status, body = sql_get(served, "select zeroblob(4000000)")
    assert status == 400 and "too big" in body["error"]


def _hang_up(url: str, after: float) -> None:
    with contextlib.suppress(OSError):
        get(url, timeout=after)


def test_a_row_of_slow_calls_is_bounded(served):
    """A progress handler (datasette's time limit) runs at jumps, and a row of calls has
    none: what one row can hold is bounded instead, the pattern and the statement."""
    big = "printf('%.*c', 9000, 'a')"
    glob = f"{big} glob '*' || printf('%.*c', 1000, 'a') || 'b'"
    status, body = sql_get(served, f"select {', '.join([glob] * 40)}")
    assert status == 400 and "pattern too complex" in body["error"]
    status, body = sql_get(served, "select " + "+".join(["length('abc')"] * 400))
    assert status == 400 and "query string is too large" in body["error"]
    # At the bounds, the time limit still holds a loop of calls (checked at each jump).
    loop = (
        "with recursive n(x) as (select 1 union all select x + 1 from n where x < 10000000)"
        " select count(*) from n where instr(printf('%.*c', 9990 - x % 2, 'a'),"
        " printf('%.*c', 4990, 'a') || 'b')"
    )
    status, body = sql_get(served, loop)
    assert status == 400 and "too long" in body["error"]


def test_real_pages_answer_under_the_bounds(home, served):
    pages = ["/", "/moonshot", "/-/dashboards/moonshot", f"/moonshot/coins/{home.coin}"]
    db = sqlite3.connect(home.path / "moonshot.db")
    tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    db.close()
    for table in tables:
        pages += [f"/moonshot/{table}", f"/moonshot/{table}.json?_shape=objects&_size=max"]
    pages += [
        "/moonshot/coins?_facet=state&_facet=twitter_user",
        "/moonshot/decisions?_facet=reason",
    ]
    for name in QUERIES:
        pages += [f"/moonshot/{name}?id={home.coin}", f"/moonshot/{name}.json?id={home.coin}"]
    for page in pages:
        assert get(served.base + page)[0] == 200, page
    status, body = get(f"{served.base}/moonshot/refused_tweets.json?_shape=objects")
    (row,) = json.loads(body)["rows"]
    assert row["tweets"] == row["authors"] == AUTHORS
    latest = row["latest_authors"].split(", ")
    assert len(latest) == 10 and all(a.startswith("author") for a in latest)


def test_the_values_of_a_real_home_are_far_below_the_bound(home):
    db = sqlite3.connect(home.path / "moonshot.db")
    longest = 0
    for (table,) in db.execute("select name from sqlite_master where type = 'table'").fetchall():
        for column in [r[1] for r in db.execute(f"pragma table_info({table})")]:
            (n,) = db.execute(f"select max(length(cast({column} as blob))) from {table}").fetchone()
            longest = max(longest, n or 0)
    db.close()
    assert 0 < longest * 10 < dash.MAX_VALUE_BYTES


def test_an_oversized_value_is_a_400_and_one_line(home, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(home.path, copy, ignore=shutil.ignore_patterns("screens"))
    db = sqlite3.connect(copy / "moonshot.db")
    db.execute("update coins set last_error = ? where id = ?", ("x" * 20_000, home.coin))
    db.commit()
    db.close()
    pages = ("/", "/moonshot/coins", "/moonshot/coins.json", f"/moonshot/coins/{home.coin}")
    with serving(copy, logs=tmp_path) as s:
        for page in pages:
            status, body = get(s.base + page)
            assert status == 400, (page, status)
            assert b"string or blob too big" in body and b"10,000 bytes" in body, page
        assert get(s.base + "/moonshot/transitions")[0] == 200  # the other tables read on
    err = s.err.read_text().splitlines()
    assert not [line for line in err if "Traceback" in line or "locals" in line]
    # datasette's own line per failed query (the SQL, without values), nothing more
    assert 0 < len(err) <= len(pages) and all(line.startswith("ERROR: conn=") for line in err)


# -- finding 3: a database that is not moonshot's ------------------------------------------


def test_a_database_that_is_not_this_homes_is_refused_at_start(tmp_path, home):
    """An empty file, another program's database, one of a newer moonshot, another
    home's: one line at start, the line `moonshot status` prints (home.check_readonly),
    and the file unchanged. The dashboard used to start and print tracebacks instead."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "moonshot.db").touch()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "moonshot.db")
    db.execute("create table notes (body text)")
    db.execute("pragma user_version = 2")
    db.commit()
    db.close()
    newer = tmp_path / "newer"
    shutil.copytree(home.path, newer, ignore=shutil.ignore_patterns("logs", "library"))
    db = sqlite3.connect(newer / "moonshot.db")
    db.execute("pragma user_version = 999")
    db.commit()
    db.close()
    other = tmp_path / "other"
    shutil.copytree(home.path, other, ignore=shutil.ignore_patterns("logs", "library"))
    marker = other / "spool" / ".moonshot-home"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "home_id": "f" * 32}))
    cases = {
        empty: "nothing has run here yet",
        foreign: "is not a usable SQLite database (no such table: meta)",
        newer: "schema version 999 is newer than this moonshot",
        other: "is not this home's database",
    }
    for folder, expected in cases.items():
        before = (folder / "moonshot.db").read_bytes()
        out = run_cli(folder, "dashboard", "--port", str(_free_port()), timeout=60)
        assert out.returncode == 1, (folder.name, out.stdout)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (folder.name, out.stderr)
        assert (folder / "moonshot.db").read_bytes() == before
        if folder is not foreign:  # status would migrate another program's file
            status = run_cli(folder, "status")
            assert status.returncode == 1 and status.stderr.strip() == lines[0], folder.name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- lower severity ----------------------------------------------------------------------


def test_only_host_headers_naming_loopback_are_answered(served):
    """DNS rebinding: a page of attacker.example whose name now points at 127.0.0.1
    sends Host: attacker.example."""
    port = served.port
    for host, expected in (
        ("attacker.example", 421),
        (f"attacker.example:{port}", 421),
        (f"127.0.0.1.attacker.example:{port}", 421),
        (f"localhost.attacker.example:{port}", 421),
        (f"127.0.0.1:{port}", 200),
        (f"localhost:{port}", 200),
        (f"LOCALHOST:{port}", 200),
        (f"[::1]:{port}", 200),
        ("127.0.0.1", 200),
    ):
        status, body = _raw(served.port, f"GET /-/versions.json HTTP/1.1\r\nHost: {host}\r\n")
        assert status == expected, (host, status, body[:200])


def _raw(port: int, head: str, connection: str = "close") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"{head}Connection: {connection}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if connection != "close" and b"\r\n\r\n" in data:
                break
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_a_websocket_is_refused_cleanly(served):
    before = served.err.read_text()
    status, _ = _raw(
        served.port,
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        connection="Upgrade",
    )
    assert status == 403  # uvicorn's answer to a websocket closed before it was accepted
    assert get(served.base + "/")[0] == 200
    assert served.err.read_text() == before  # no traceback, nothing at all


def test_write_routes_and_a_bad_sort_are_4xx(home, served):
    before = served.err.read_text()
    for page in (
        "/moonshot/coins/-/insert",
        "/moonshot/coins/-/upsert",
        f"/moonshot/coins/{home.coin}/-/delete",
        f"/moonshot/coins/{home.coin}/-/update",
        "/moonshot/coins/-/drop",
        "/moonshot/-/create",
        "/moonshot/coins?_sort=nonexist",
        "/moonshot/coins.json?_sort_desc=nonexist",
        "/moonshot/coins.json?_sort=id&_sort_desc=id",
        "/no/such/page",
    ):
        status, body = get(served.base + page)
        assert 400 <= status < 500, (page, status, body[:300])
    assert "Traceback" not in served.err.read_text()[len(before) :]


def test_switched_off_plugins_are_never_imported(home, tmp_path):
    """A datasette plugin installed in the same environment: its module's code (here,
    writing a file) must not run, not merely its hooks be unregistered."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "imported"
    (site / "evil_plugin.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['EVIL_MARKER']).write_text('its module ran')\n"
        "from datasette import hookimpl\n\n"
        "@hookimpl\ndef startup(datasette):\n"
        "    pathlib.Path(os.environ['EVIL_MARKER']).write_text('its hook ran')\n"
    )
    info = site / "evil_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[datasette]\nevil = evil_plugin\n")
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["EVIL_MARKER"] = str(marker)
    with serving(home.path, env=env, logs=tmp_path) as s:
        plugins = json.loads(get(s.base + "/-/plugins.json")[1])
    names = {p["name"] for p in plugins}
    assert "evil-plugin" not in names and "evil_plugin" not in names
    assert "datasette-dashboards" in names  # the allowed one is loaded
    assert not marker.exists(), marker.read_text()
    assert "not loaded (the dashboard runs only its own plugins): evil-plugin" in s.err.read_text()
