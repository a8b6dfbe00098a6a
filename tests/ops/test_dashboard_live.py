"""The real `moonshot dashboard` in a subprocess over a home made by the real pipeline
(`moonshot add`, `run --once` with the ledger launcher, `ingest`): a launched coin, one
failed on a server that answers 503, one in needs_review after a crash at
`after_launching_commit` (with a screenshot as the GUI launcher saves it), one held in
confirmed, two waiting, five refused tweets. Every canned query's JSON is checked against
the database itself; writes are refused and leave moonshot.db byte for byte; nothing new
appears in the home; the service writes while a dashboard query runs; headless Chromium
shows the index, needs_review and the plots with the network cut off."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from moonshot.app.runner import Runner
from moonshot.crash import CRASH_EXIT
from moonshot.store import Store
from tests.conftest import (
    ImageServer,
    cli_env,
    make_image,
    missing_service,
    run_cli,
)
from tests.ops.test_dashboard import QUERIES

ENV = {
    "MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01",
    "MOONSHOT_SPOOL_BACKOFF_BASE": "0.01",
    "MOONSHOT_SERVICE_RETRY_WINDOW": "0",  # the broken image fails at its first error
}
TWEETS = Path(__file__).resolve().parents[1] / "fixtures" / "tweets"
SQLITE_OWN = {"moonshot.db-wal", "moonshot.db-shm"}


def files_in(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): p.stat().st_size for p in home.rglob("*")}


def digest(path: Path) -> str:
    """A missing -wal counts as an empty one (SQLite creates it empty for a reader)."""
    return hashlib.sha256(path.read_bytes() if path.exists() else b"").hexdigest()


def add(home: Path, ticker: str, name: str, image: str, user: str, env=None) -> int:
    out = run_cli(
        home, "add", "--ticker", ticker, "--name", name, "--image", image,
        "--twitter-user", user, env=env, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


class Screen:
    """A screen for the launcher's runner, so the screenshot in logs/screens has the
    name and place the GUI launcher gives it (Runner.save_screen)."""

    def screenshot(self) -> Image.Image:
        return Image.new("RGB", (320, 200), (20, 120, 200))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    home = tmp / "home"
    home.mkdir()
    (home / "moonshot.toml").write_text('[policy]\ndeny_authors = ["bob"]\n')
    image = str(make_image(tmp / "moon.png", size=(300, 300), fmt="PNG"))
    server = ImageServer()
    broken = server.add("/broken.jpg", b"down for maintenance", status=503)
    ids = {
        "launched": add(home, "MOON", "To the Moon", image, "alice"),
        "failed": add(home, "BROKE", "Broken Image", broken, "bob"),
    }
    run_cli(home, "run", "--once", env=ENV, timeout=120)
    server.close()
    ids["review"] = add(home, "REVU", "Review Me", image, "carol")
    crash = run_cli(
        home, "run", "--once", env={**ENV, "MOONSHOT_CRASH_AT": "after_launching_commit"}
    )
    assert crash.returncode == CRASH_EXIT, crash.stderr[-1000:]
    run_cli(home, "run", "--once", env=ENV)  # finds it in launching: needs_review
    ids["held"] = add(home, "HOLD", "Held Back", image, "dave")
    run_cli(home, "run", "--once", env={**ENV, "MOONSHOT_LAUNCH_MODE": "off"})
    ids["waiting1"] = add(home, "WAIT1", "First Waiting", image, "erin")
    ids["waiting2"] = add(home, "WAIT2", "Second Waiting", image, "erin")
    run_cli(home, "ingest", str(TWEETS / "quote.json"), str(TWEETS / "no_media.json"), check=True)
    shot = Runner(None, Screen(), home / "logs" / "screens").save_screen(
        SimpleNamespace(name="read-back"), ids["review"]
    )
    assert shot is not None

    db = sqlite3.connect(home / "moonshot.db")
    states = dict(db.execute("select id, state from coins"))
    db.close()
    assert states == {
        ids["launched"]: "launched",
        ids["failed"]: "failed",
        ids["review"]: "needs_review",
        ids["held"]: "confirmed",
        ids["waiting1"]: "fetched",
        ids["waiting2"]: "fetched",
    }
    yield SimpleNamespace(home=home, ids=ids, shot=shot)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, data: dict) -> tuple[int, bytes]:
    body = urllib.parse.urlencode(data).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def dashboard(audited):
    home = audited.home
    before = files_in(home)
    db_before = {n: digest(home / n) for n in ("moonshot.db", "moonshot.db-wal")}
    port = free_port()
    out, err = home.parent / "dashboard.out", home.parent / "dashboard.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moonshot", "--home", str(home), "dashboard", "--port", str(port)],
        env=cli_env(),
        stdout=out.open("w"),
        stderr=err.open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"dashboard exited {proc.returncode}: {err.read_text()[-2000:]}")
        try:
            if get(base + "/-/versions.json", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the dashboard did not answer in 90 s"
        time.sleep(0.2)
    yield SimpleNamespace(
        base=base,
        proc=proc,
        out=out,
        err=err,
        files_before=before,
        db_before=db_before,
        **vars(audited),
    )
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def query(dash, name: str, **params) -> list[dict]:
    qs = urllib.parse.urlencode({**params, "_shape": "objects"})
    status, body = get(f"{dash.base}/moonshot/{name}.json?{qs}")
    assert status == 200, body[:500]
    return json.loads(body)["rows"]


def rows(home: Path, sql: str, params=()) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{home / 'moonshot.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_it_says_where_it_listens_and_nothing_about_authentication(dashboard):
    out = dashboard.out.read_text()
    assert out.startswith("moonshot dashboard (read-only) on http://127.0.0.1:")
    assert "authentication" not in out + dashboard.err.read_text()


def test_needs_review_names_the_commands_and_links_the_screenshot(dashboard):
    (row,) = query(dashboard, "needs_review")
    coin = dashboard.ids["review"]
    assert (row["id"], row["ticker"], row["name"]) == (coin, "REVU", "Review Me")
    assert "launching" in row["reason"]
    home = shlex.quote(str(dashboard.home))
    assert row["if_it_launched"] == f"moonshot --home {home} resolve {coin} --launched"
    assert row["if_it_did_not"] == f"moonshot --home {home} resolve {coin} --not-launched"
    # the HTML cell links the screenshot, served read-only from logs/screens
    status, page = get(f"{dashboard.base}/moonshot/needs_review")
    assert status == 200
    src = f"/screens/{dashboard.shot.name}"
    assert f'src="{src}"'.encode() in page
    status, png = get(dashboard.base + src)
    assert status == 200 and png == dashboard.shot.read_bytes()
    for outside in ("/screens/..%2F..%2Fmoonshot.db", "/screens/../../moonshot.db"):
        status, body = get(dashboard.base + outside)
        assert status == 404 or not body.startswith(b"SQLite format"), outside


def test_failed_shows_reason_attempts_and_failed_from(dashboard):
    (row,) = query(dashboard, "failed")
    assert (row["id"], row["ticker"]) == (dashboard.ids["failed"], "BROKE")
    assert "HTTP 503" in row["reason"]
    assert row["attempts"] == 1 and row["failed_from"] == "fetched"
    assert row["retry"].endswith(f" retry {dashboard.ids['failed']}")


def test_waiting_is_per_state_oldest_first(dashboard):
    got = [(r["state"], r["ticker"]) for r in query(dashboard, "waiting")]
    assert got == [("fetched", "WAIT1"), ("fetched", "WAIT2"), ("confirmed", "HOLD")]
    assert all(r["waiting_s"] >= 0 for r in query(dashboard, "waiting"))


def test_launches_per_day_and_per_hour(dashboard):
    (launch,) = rows(dashboard.home, "select at from transitions where to_state = 'launched'")
    assert query(dashboard, "launches_per_day") == [{"day_utc": launch["at"][:10], "launches": 1}]
    hours = query(dashboard, "launches_per_hour")
    assert len(hours) == 48
    assert [h["hour_utc"] for h in hours] == sorted(h["hour_utc"] for h in hours)
    assert sum(h["launches"] for h in hours) == 1
    (hit,) = [h for h in hours if h["launches"]]
    assert hit["hour_utc"] == launch["at"][:13] + ":00:00Z"


def nearest_rank(values: list[float], p: int) -> float:
    values = sorted(values)
    return values[max(1, -(-len(values) * p // 100)) - 1]


def test_stage_latency_matches_the_transitions(dashboard):
    """p50/p95 of the last 7 days recomputed here from the raw transitions, in Python."""
    waits: dict[str, list[float]] = defaultdict(list)
    last: dict[int, str] = {}
    since = time.time() - 7 * 86400
    for t in rows(dashboard.home, "select * from transitions order by id"):
        if t["from_state"] is not None and t["from_state"] == t["to_state"]:
            continue
        if t["coin_id"] in last and seconds(t["at"]) >= since:
            waits[f"{t['from_state']} -> {t['to_state']}"].append(
                seconds(t["at"]) - seconds(last[t["coin_id"]])
            )
        last[t["coin_id"]] = t["at"]
    got = {r["stage"]: r for r in query(dashboard, "stage_latency")}
    assert set(got) == set(waits)
    assert {"fetched -> spooled", "launching -> launched", "launching -> needs_review"} <= set(got)
    for stage, values in waits.items():
        r = got[stage]
        assert r["moves"] == len(values), stage
        assert r["p50_s"] == pytest.approx(nearest_rank(values, 50), abs=2e-3), stage
        assert r["p95_s"] == pytest.approx(nearest_rank(values, 95), abs=2e-3), stage
        assert r["p50_s"] <= r["p95_s"] <= r["max_s"]
    order = list(got)
    assert order.index("fetched -> spooled") < order.index("spooled -> imported")
    assert order.index("confirmed -> launching") < order.index("launching -> launched")


def test_refused_tweets_by_reason(dashboard):
    expected = Counter(
        r["reason"]
        for r in rows(dashboard.home, "select reason from decisions where decision = 'refused'")
    )
    got = {r["reason"]: r["tweets"] for r in query(dashboard, "refused_tweets")}
    assert got == dict(expected) and sum(got.values()) == 5
    assert any("deny_authors" in reason for reason in got)


def test_coin_history_is_what_history_prints(dashboard):
    coin = dashboard.ids["review"]
    got = query(dashboard, "coin_history", id=coin)
    cli = json.loads(run_cli(dashboard.home, "history", str(coin), "--json", check=True).stdout)
    assert [(r["id"], r["to_state"], r["trigger"]) for r in got] == [
        (t["id"], t["to_state"], t["trigger"]) for t in cli["transitions"]
    ]
    assert got[-1]["to_state"] == "needs_review" and {r["ticker"] for r in got} == {"REVU"}
    assert query(dashboard, "coin_history", id=999999) == []


def test_every_canned_query_answers(dashboard):
    for name in QUERIES:
        params = {"id": dashboard.ids["launched"]} if name == "coin_history" else {}
        assert isinstance(query(dashboard, name, **params), list), name


def test_writes_are_refused_and_the_database_is_unchanged(dashboard):
    home, base = dashboard.home, dashboard.base
    for path, data in (
        ("/moonshot", {"sql": "update coins set state = 'launched'"}),
        ("/moonshot/needs_review", {"id": "1"}),
        ("/moonshot.json", {"sql": "delete from transitions"}),
    ):
        status, body = post(base + path, data)
        assert status == 405 and b"read-only" in body, (path, status, body[:200])
    for sql in (
        "update coins set state = 'launched'",
        "select 1; delete from coins",
        "insert into meta values ('x', 'y')",
        "attach database 'x.db' as x",
        "pragma journal_mode = delete",
    ):
        status, body = get(f"{base}/moonshot.json?" + urllib.parse.urlencode({"sql": sql}))
        assert status == 400, (sql, body[:200])
    assert {n: digest(home / n) for n in ("moonshot.db", "moonshot.db-wal")} == dashboard.db_before
    assert not (home / "x.db").exists()


def test_the_home_gets_no_file_but_sqlites_own(dashboard):
    for path in ("/", "/moonshot", "/moonshot/coins", "/-/dashboards/moonshot", "/moonshot/failed"):
        assert get(dashboard.base + path)[0] == 200, path
    new = set(files_in(dashboard.home)) - set(dashboard.files_before)
    assert new <= SQLITE_OWN, new


# -- in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing_service("browser tests need Debian's chromium: apt-get install chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    base = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # No network but this machine: a page that needs a CDN would not draw.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",  # let the page's scripts fetch and draw first
    ]

    def run(*args: str) -> str:
        out = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=120, env=os.environ.copy()
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    return run


def shoot(chromium, url: str, png: Path, size="1280,900") -> Image.Image:
    chromium(f"--screenshot={png}", f"--window-size={size}", url)
    img = Image.open(png).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 20, f"{png.name} looks blank"
    return img


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Screenshots land here; MOONSHOT_SCREENSHOTS=DIR keeps them (README's tour)."""
    keep = os.environ.get("MOONSHOT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("shots")


@pytest.mark.browser
def test_the_index_shows_the_coins(dashboard, chromium, shots):
    dom = chromium("--dump-dom", dashboard.base + "/")
    for text in ("moonshot audit trail", "Waiting for a person", "REVU", "BROKE", "needs_review"):
        assert text in dom, text
    assert f"resolve {dashboard.ids['review']} --launched" in dom
    shoot(chromium, dashboard.base + "/", shots / "index.png")


@pytest.mark.browser
def test_needs_review_in_the_browser(dashboard, chromium, shots):
    url = dashboard.base + "/moonshot/needs_review"
    dom = chromium("--dump-dom", url)
    assert "REVU" in dom and "Review Me" in dom and "--not-launched" in dom
    assert dashboard.shot.name in dom
    img = shoot(chromium, url, shots / "needs_review.png", size="1400,700")
    # the launcher's screenshot (a flat blue) is drawn in the page as a thumbnail
    blue = sum(n for n, c in img.getcolors(1 << 20) if c == (20, 120, 200))
    assert blue > 500, "the screenshot thumbnail is not on the page"


@pytest.mark.browser
def test_the_plots_are_drawn_without_network(dashboard, chromium, shots):
    url = dashboard.base + "/-/dashboards/moonshot"
    dom = chromium("--dump-dom", url)
    assert dom.count("<svg") >= 2, "the charts were not drawn"
    assert "launches: 1" in dom  # a bar of launches_per_hour
    assert "fetched -&gt; spooled" in dom or "fetched -> spooled" in dom  # a stage label
    img = shoot(chromium, url, shots / "plots.png", size="1280,1100")
    bars = sum(n for n, c in img.getcolors(1 << 20) if c == (76, 120, 168))  # vega's blue
    assert bars > 200, "no bar is drawn"


# -- last: these change the home the tests above read ----------------------------


def test_the_service_writes_while_a_dashboard_query_runs(dashboard):
    """A read that runs until datasette's time limit (1 s) is in flight while the
    service's own Store commits a coin and a raw writer takes the write lock with no
    busy wait at all; the new coin shows up in the next request (mode=ro, not
    immutable); once the dashboard is idle a checkpoint empties the WAL."""
    home, base = dashboard.home, dashboard.base
    slow = (
        "with recursive n(x) as (select 1 union all select x + 1 from n where x < 100000000)"
        " select count(*) from n, coins"
    )
    done: dict[str, float] = {}

    def read():
        get(f"{base}/moonshot.json?" + urllib.parse.urlencode({"sql": slow}), timeout=60)
        done["at"] = time.monotonic()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    writes_in_flight = 0
    store = Store(home / "moonshot.db", readonly=True)
    raw = sqlite3.connect(home / "moonshot.db", timeout=0, isolation_level=None)
    try:
        while reader.is_alive():
            raw.execute("BEGIN IMMEDIATE")  # SQLITE_BUSY at once if a lock were held
            raw.execute("INSERT INTO meta (key, value) VALUES ('dashboard_test', '1')"
                        " ON CONFLICT(key) DO UPDATE SET value = value + 1")  # fmt: skip
            raw.execute("COMMIT")
            if "at" not in done:
                writes_in_flight += 1
            time.sleep(0.05)
        reader.join()
        assert writes_in_flight >= 3, "the slow query was not in flight"
        from moonshot.ports import IncomingCoin

        coin_id, _ = store.add_coin(
            IncomingCoin("local", "late", "LATE", "Late Comer", "/x.png", "frank"),
            twitter_user="frank",
        )
        got = [r["ticker"] for r in query(dashboard, "waiting")]
        assert "LATE" in got
        assert raw.execute("pragma wal_checkpoint(truncate)").fetchone() == (0, 0, 0)
        assert (home / "moonshot.db-wal").stat().st_size == 0
    finally:
        raw.close()
        store.close()


def test_a_person_follows_needs_review_literally(dashboard):
    """Runs the page's command as written; the page then shows the change (last: it
    changes the home the other tests read)."""
    (row,) = query(dashboard, "needs_review")
    argv = shlex.split(row["if_it_did_not"])
    assert argv[0] == "moonshot"
    done = subprocess.run(
        [sys.executable, "-m", "moonshot", *argv[1:]],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert query(dashboard, "needs_review") == []
    assert ("confirmed", "REVU") in [(r["state"], r["ticker"]) for r in query(dashboard, "waiting")]


def test_ctrl_c_stops_it_cleanly(dashboard):
    dashboard.proc.send_signal(signal.SIGINT)
    assert dashboard.proc.wait(30) == 0
    assert dashboard.out.read_text().rstrip().endswith("dashboard stopped")
    assert "Traceback" not in dashboard.err.read_text()
