"""Issue 15, tried from outside as a new user would: the real CLI in a subprocess on a
scratch home, with the ledger launcher counting launches, and a person who follows
`moonshot status` literally (tests/person.py). Each test failed on the main branch the
issue was filed against."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from moonshot import machine as m
from moonshot.crash import CRASH_EXIT
from tests.conftest import cli_env, make_image, missing_service, run_cli, wait_for
from tests.person import follow_status, launch_counts, launches, status_json

FAST = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01"}
ADDRESS = "So11111111111111111111111111111111111111112"


def one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def add(home, tmp_path, ticker="DN", user="bob", color=(10, 200, 10), *extra, check=True):
    img = make_image(tmp_path / f"{ticker}-{color}.png", color=color, fmt="PNG")
    return run_cli(
        home,
        "add",
        "--ticker",
        ticker,
        "--name",
        f"{ticker} coin",
        "--image",
        str(img),
        "--twitter-user",
        user,
        *extra,
        check=check,
    )


def to_needs_review(home, tmp_path) -> None:
    """A coin whose launch was cut off right after `launching` was committed."""
    add(home, tmp_path)
    proc = run_cli(home, "run", "--once", env={"MOONSHOT_CRASH_AT": "after_launching_commit"})
    assert proc.returncode == CRASH_EXIT
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off"}, check=True)
    assert status_json(home)["counts"]["needs_review"] == 1


# -- 1. a hand-drop for a failed coin, then a restart ------------------------------------------
def test_hand_drop_for_a_failed_coin_then_restart_launches_it_once(home, tmp_path):
    add(home, tmp_path)
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_DENY_USERS": "bob", **FAST}, check=True)
    (coin,) = status_json(home)["attention"]
    assert coin["state"] == m.FAILED
    old = sorted(p.name for p in (home / "spool").glob("bob_DN_*.jpg"))
    assert len(old) == 1
    # The person drops a new image for the failed coin, with a later time in its name.
    make_image(home / "spool" / "bob_DN_1999999999.jpg", color=(200, 10, 10), fmt="JPEG")
    follow_status(home, env=FAST)  # restarts the service; approves what status asks for
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1}
    assert [e["image_filename"] for e in launches(home)] == ["bob_DN_1999999999.jpg"]
    assert not (home / "spool" / old[0]).exists()  # retired with the move: one owner
    assert (home / "spool" / "done" / old[0]).exists()
    assert status_json(home)["total"] == 1


# -- 2. an emptied or deleted moonshot.db ---------------------------------------------------------
def _lose(home, how: str, tmp_path) -> None:
    db = home / "moonshot.db"
    if how == "deleted":
        for p in home.glob("moonshot.db*"):
            p.unlink()
    elif how == "emptied":
        for p in home.glob("moonshot.db-*"):
            p.unlink()
        db.write_bytes(b"")
    else:  # replaced by another home's database
        other = tmp_path / "other"
        other.mkdir()
        add(other, tmp_path, ticker="ZZ")
        for p in home.glob("moonshot.db*"):
            p.unlink()
        shutil.copy(other / "moonshot.db", db)


@pytest.mark.parametrize("how", ["deleted", "emptied", "replaced"])
def test_a_lost_database_is_never_started_afresh_over_the_homes_evidence(home, tmp_path, how):
    add(home, tmp_path)
    add(home, tmp_path, ticker="UP", color=(1, 2, 250))
    run_cli(home, "run", "--once", env=FAST, check=True)
    assert launch_counts(home) == {("bob", "DN"): 1, ("bob", "UP"): 1}
    _lose(home, how, tmp_path)
    img = str(make_image(tmp_path / "q.png"))
    for args in (
        ["run", "--once"],
        ["status"],
        ["add", "--ticker", "Q", "--name", "q", "--image", img],
    ):
        line = one_line_error(run_cli(home, *args, env=FAST))
        assert "moonshot recover" in line and "Troubleshooting" in line, line
    follow_status(home, env=FAST)  # nothing to follow: status refuses
    assert launch_counts(home) == {("bob", "DN"): 1, ("bob", "UP"): 1}
    if how == "replaced":
        assert "not this home's database" in one_line_error(run_cli(home, "status"))
        return
    # The documented way back: `moonshot recover`, then settle each coin.
    proc = run_cli(home, "recover", check=True)
    assert "2 coin(s) wait in needs_review" in proc.stdout
    report = status_json(home)
    assert report["counts"]["needs_review"] == 2
    for coin in report["attention"]:
        refused = run_cli(home, "resolve", str(coin["id"]), "--not-launched")
        assert "never launched again from here" in one_line_error(refused)
        # Found from outside: the advice said "--withdraw ... `moonshot add` it anew" to a
        # coin the ledger records, and adding it anew launched it a second time.
        assert "anew" not in coin["reason"] and "was launched" in coin["reason"], coin
        refused = run_cli(home, "resolve", str(coin["id"]), "--withdraw")
        assert "would launch it a second time" in one_line_error(refused)
        run_cli(home, "resolve", str(coin["id"]), "--launched", check=True)
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1, ("bob", "UP"): 1}


def test_a_database_deleted_under_the_running_service_is_noticed(home, tmp_path, service_process):
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=FAST, check=True)
    proc = service_process(home, FAST)
    wait_for(lambda: status_json(home)["service"]["state"] == "running", what="the service")
    (home / "moonshot.db").unlink()
    line = one_line_error(run_cli(home, "status"))  # never "never started, 0 coins"
    assert "missing" in line, line
    assert proc.wait(timeout=30) != 0  # the service stops by itself
    err = proc.err()
    assert "moonshot.db was deleted or moved away while moonshot run used it" in err
    assert "Traceback" not in err
    (saved,) = home.glob("moonshot.db.saved-*")
    line = one_line_error(run_cli(home, "status"))
    assert saved.name in line, line  # status says where the last state is
    saved.rename(home / "moonshot.db")
    assert status_json(home)["counts"]["launched"] == 1  # back, with its memory


def test_an_older_copy_of_the_database_is_refused_until_a_person_settles_it(home, tmp_path):
    add(home, tmp_path)
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    backup = tmp_path / "backup.db"
    src = sqlite3.connect(home / "moonshot.db")
    dst = sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    run_cli(home, "run", "--once", env=FAST, check=True)  # launched after the backup
    assert launch_counts(home) == {("bob", "DN"): 1}
    for p in home.glob("moonshot.db*"):
        p.unlink()
    shutil.copy(backup, home / "moonshot.db")  # "restore moonshot.db from a backup"
    line = one_line_error(run_cli(home, "run", "--once", env=FAST))
    assert "older than this home" in line and "moonshot recover" in line
    run_cli(home, "recover", check=True)
    (coin,) = status_json(home)["attention"]
    assert coin["state"] == m.NEEDS_REVIEW and "restored from an older copy" in coin["reason"]
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1}


def test_a_fresh_home_starts_with_no_ceremony(home, tmp_path):
    """Invariant 7 must not cost the quick start: `moonshot run` on an empty folder."""
    run_cli(home, "run", "--once", env=FAST, check=True)
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=FAST, check=True)
    assert launch_counts(home) == {("bob", "DN"): 1}


# -- 3. resolve's options -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--launched", "--not-launched"],
        ["--not-launched", "--launched"],
        ["--not-launched", "--token-address", ADDRESS],
        ["--launched", "--token-address", "any text at all"],
        ["--launched", "--withdraw"],
        [],
    ],
)
def test_resolve_takes_exactly_one_outcome_and_a_real_address(home, tmp_path, args):
    to_needs_review(home, tmp_path)
    proc = run_cli(home, "resolve", "1", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert status_json(home)["counts"]["needs_review"] == 1
    follow_status(home, env=FAST)
    assert len(launches(home)) == 0  # the cut-off launch is the only one


def test_resolve_launched_records_the_address_and_clears_the_error(home, tmp_path):
    to_needs_review(home, tmp_path)
    run_cli(home, "resolve", "1", "--launched", "--token-address", f" {ADDRESS} ", check=True)
    coin = json.loads(run_cli(home, "history", "1", "--json").stdout)["coin"]
    assert coin["state"] == m.LAUNCHED and coin["token_address"] == ADDRESS
    assert coin["last_error"] is None  # issue 15 item 10: no stale error on a launched coin


# -- 4. tweet ids ---------------------------------------------------------------------------------
def test_one_tweet_is_one_coin_whatever_its_spelling(home, tmp_path):
    first = add(home, tmp_path, "T42", "bob", (1, 1, 1), "--tweet-id", "42")
    for spelling in ("042", "0042", "+42", " 42", "42.0", "9" * 20):
        proc = add(home, tmp_path, "T42", "bob", (1, 1, 1), "--tweet-id", spelling, check=False)
        assert "invalid tweet id" in one_line_error(proc)
    again = add(home, tmp_path, "T42", "bob", (1, 1, 1), "--tweet-id", "42")
    assert again.stdout == first.stdout

    def tweet(tweet_id):
        return {
            "id": tweet_id,
            "text": "$T42 Forty Two",
            "author_id": "7",
            "attachments": {"media_keys": ["m1"]},
            "includes": {
                "users": [{"id": "7", "username": "bob"}],
                "media": [
                    {"media_key": "m1", "type": "photo", "url": "https://pbs.twimg.com/a.jpg"}
                ],
            },
        }

    (tmp_path / "t.json").write_text(json.dumps([tweet(42), tweet("042")]))
    proc = run_cli(home, "ingest", "--json", str(tmp_path / "t.json"), check=True)
    same, odd = json.loads(proc.stdout)
    assert same["tweet_id"] == "42" and same["coin_ref"] == "coin 1"  # the same tweet: an int
    assert odd["status"] == "invalid"
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "T42"): 1}
    assert status_json(home)["total"] == 1


# -- 8. one line where one line is promised ----------------------------------------------------------
def _bad_home(home, what: str) -> list[str]:
    """Make the home bad in one way; returns a prefix for the command (setpriv as root)."""
    prefix: list[str] = []
    toml = home / "moonshot.toml"
    if what == "unreadable toml":
        toml.write_text("[launch]\nmode = 'off'\n")
        toml.chmod(0)
        if os.geteuid() == 0:  # root reads anything: drop the override, as a user has none
            if not shutil.which("setpriv"):
                missing_service("setpriv (util-linux) is needed to read as a non-root user")
            caps = "-dac_override,-dac_read_search"
            prefix = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    elif what == "toml is a folder":
        toml.mkdir()
    elif what == "spool = 3":
        toml.write_text("spool = 3\n")
    elif what == "garbage db":
        (home / "moonshot.db").write_bytes(os.urandom(8192))
    elif what == "malformed db":
        run_cli(home, "run", "--once", check=True)
        data = bytearray((home / "moonshot.db").read_bytes())
        data[100 : len(data)] = os.urandom(len(data) - 100)  # the header survives
        (home / "moonshot.db").write_bytes(bytes(data))
    return prefix


@pytest.mark.parametrize(
    "what", ["unreadable toml", "toml is a folder", "spool = 3", "garbage db", "malformed db"]
)
@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["run", "--once"],
        ["add", "--ticker", "A", "--name", "a", "--image", "IMG"],
        ["history", "1"],
        ["withdraw", "1"],
        ["doctor"],
    ],
)
def test_bad_homes_are_one_line_for_every_command(home, tmp_path, what, command):
    img = make_image(tmp_path / "a.png")
    prefix = _bad_home(home, what)
    args = [str(img) if a == "IMG" else a for a in command]
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "moonshot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    if command == ["doctor"]:  # doctor reports on every part: a fail line, no traceback
        assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
        return
    line = one_line_error(proc)
    expect = {
        "unreadable toml": "cannot be read",
        "toml is a folder": "is a folder",
        "spool = 3": "spool must be a table",
        "garbage db": "not a usable SQLite database",
        "malformed db": "not a usable SQLite database",
    }[what]
    assert expect in line, line


# -- 10. the minor ones ------------------------------------------------------------------------------
def test_an_image_that_is_a_folder_says_so(home):
    proc = run_cli(home, "add", "--ticker", "A", "--name", "a", "--image", "/tmp")
    assert "is a folder" in one_line_error(proc)


def test_an_empty_home_option_is_refused_and_writes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "moonshot", "--home", "", "run", "--once"],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2 and "--home" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_ingest_of_an_endless_file_is_bounded(home):
    proc = run_cli(home, "ingest", "/dev/zero", timeout=60)
    assert "more than" in one_line_error(proc)


def test_the_same_name_dropped_twice_with_other_content_is_said_and_never_imported(home, tmp_path):
    env = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    drop = home / "spool" / "eve_TWICE_1700000000.jpg"
    run_cli(home, "run", "--once", env=env, check=True)
    make_image(drop, color=(0, 90, 0), fmt="JPEG")
    run_cli(home, "run", "--once", env=env, check=True)
    (coin,) = status_json(home)["held"]
    first = drop.read_bytes()
    make_image(drop, color=(250, 0, 250), fmt="JPEG")  # the same name, other content
    run_cli(home, "run", "--once", env=env, check=True)
    report = status_json(home)
    assert "changed after coin" in report["refused_drops"][drop.name]
    assert "changed after coin" in run_cli(home, "status").stdout
    assert report["total"] == 1
    assert drop.read_bytes() != first  # the person's file is left alone, not overwritten
    # The library holds the first image only; nothing else was imported.
    lib = sqlite3.connect(home / "library" / "library.db")
    assert lib.execute("SELECT count(*) FROM assets").fetchone()[0] == 1
    assert coin["id"] == 1


# -- 9. wrong configuration, from outside ------------------------------------------------------------
def test_a_misspelt_variable_or_a_dangling_config_link_stops_the_service(home, tmp_path):
    add(home, tmp_path)
    proc = run_cli(home, "run", "--once", env={"MOONSHOT_LANCH_MODE": "off"})
    assert "did you mean MOONSHOT_LAUNCH_MODE?" in one_line_error(proc)
    (home / "moonshot.toml").symlink_to(tmp_path / "settings" / "moonshot.toml")  # not mounted
    proc = run_cli(home, "run", "--once")
    assert "which does not exist" in one_line_error(proc)
    assert launches(home) == []  # the deny lists and limits never silently went away


# -- withdraw (issue 14, item 7) ---------------------------------------------------------------------
def test_a_withdrawn_coin_never_launches_by_any_path(home, tmp_path):
    off = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    add(home, tmp_path, "WD", "bob", (9, 9, 9), "--tweet-id", "4711")
    run_cli(home, "run", "--once", env=off, check=True)  # confirmed: next would be the launch
    (name,) = [p.name for p in (home / "spool").glob("bob_WD_*.jpg")]
    proc = run_cli(home, "withdraw", "1", "--reason", "test coin", check=True)
    assert "confirmed -> rejected (test coin)" in proc.stdout
    coin = json.loads(run_cli(home, "history", "1", "--json").stdout)["coin"]
    assert coin["state"] == m.REJECTED and coin["last_error"] == "withdrawn: test coin"
    assert not (home / "spool" / name).exists()  # its file left spool/ with it
    # Every way back: retry, approve, resolve, the same tweet again, its file dropped
    # again, a restart, and a person following status.
    for args in (["retry", "1"], ["approve", "1"], ["resolve", "1", "--not-launched"]):
        assert run_cli(home, *args).returncode != 0
    again = add(home, tmp_path, "WD", "bob", (9, 9, 9), "--tweet-id", "4711")
    assert again.stdout.strip() == "1" and "already queued" in again.stderr
    shutil.copy(home / "spool" / "done" / name, home / "spool" / name)
    follow_status(home, env=FAST)  # restarts: the rescan sees the file
    follow_status(home, env=FAST)
    assert launches(home) == [] and status_json(home)["total"] == 1
    assert json.loads(run_cli(home, "history", "1", "--json").stdout)["coin"]["state"] == m.REJECTED
    assert not (home / "spool" / name).exists()  # retired again


def test_the_withdrawn_coins_own_file_dropped_back_makes_no_coin(home, tmp_path):
    add(home, tmp_path, "WF")
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_DENY_USERS": "bob", **FAST}, check=True)
    run_cli(home, "withdraw", "1", check=True)  # from failed
    (name,) = [p.name for p in (home / "spool" / "done").glob("bob_WF_*.jpg")]
    shutil.copy(home / "spool" / "done" / name, home / "spool" / name)
    follow_status(home, env=FAST)
    assert launches(home) == [] and status_json(home)["total"] == 1


@pytest.mark.parametrize(
    "state, advice",
    [
        (m.NEEDS_REVIEW, "moonshot resolve 1 --withdraw"),
        (m.LAUNCHED, "cannot be withdrawn"),
    ],
)
def test_withdraw_refuses_a_coin_that_may_have_launched_and_says_what_to_do(
    home, tmp_path, state, advice
):
    to_needs_review(home, tmp_path)
    if state == m.LAUNCHED:
        run_cli(home, "resolve", "1", "--launched", check=True)
    assert advice in one_line_error(run_cli(home, "withdraw", "1"))
    assert status_json(home)["counts"][state] == 1
    if state == m.NEEDS_REVIEW:  # the advice, followed: no relaunch can slip in between
        run_cli(home, "resolve", "1", "--withdraw", "--reason", "never made", check=True)
        follow_status(home, env=FAST)
        assert launches(home) == [] and status_json(home)["counts"][m.REJECTED] == 1


# -- the attacker pass ---------------------------------------------------------------------------------
def test_a_launched_coins_image_dropped_again_under_another_time_is_not_approved_blindly(
    home, tmp_path
):
    """A person re-drops a launched coin's file under a new name (say, copied back from
    spool/done/ and renamed). It is a new manual coin; status must not read as "approve
    it" alone: it names the launched twin and the withdraw first."""
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=FAST, check=True)
    (launched,) = launches(home)
    src = next((home / "spool").rglob(launched["image_filename"]))
    shutil.copy(src, home / "spool" / "bob_DN_1999999999.jpg")
    run_cli(home, "run", "--once", env=FAST, check=True)
    (held,) = status_json(home)["held"]
    assert "was coin 1 (launched)" in held["reason"]
    assert held["reason"].index("withdraw") < held["reason"].index("approve")
    follow_status(home, env=FAST)  # the literal reader runs withdraw first, then approve fails
    assert launch_counts(home) == {("bob", "DN"): 1}


def test_a_live_coins_file_renamed_by_hand_does_not_make_a_second_launch(home, tmp_path):
    """mv spool/bob_DN_<t>.jpg spool/bob_DN_<t+1>.jpg while the coin waits: the new name is
    a new manual coin, the first coin loses its file. README says retry a failed coin,
    status says approve the manual one: followed literally, both must not launch."""
    off = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=off, check=True)
    (own,) = (home / "spool").glob("bob_DN_*.jpg")
    own.rename(home / "spool" / "bob_DN_1999999999.jpg")
    run_cli(home, "run", "--once", env=off, check=True)
    (held,) = [h for h in status_json(home)["held"] if h["id"] == 2]
    assert "was coin 1" in held["reason"] and "moonshot withdraw 2" in held["reason"]
    follow_status(home, env=FAST)
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1}


def test_a_database_copied_to_another_folder_without_its_spool_is_refused(home, tmp_path):
    add(home, tmp_path)
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    src = sqlite3.connect(home / "moonshot.db")
    dst = sqlite3.connect(copy / "moonshot.db")
    src.backup(dst)
    src.close()
    dst.close()
    line = one_line_error(run_cli(copy, "run", "--once", env=FAST))
    assert "without its spool/" in line
    run_cli(home, "run", "--once", env=FAST, check=True)  # the home itself goes on
    assert launch_counts(home) == {("bob", "DN"): 1}
    assert launches(copy) == []


# -- the second outside attack (README and CLI only): backups, withdrawals, recover -------------
def backup_db(home, to):
    src, dst = sqlite3.connect(home / "moonshot.db"), sqlite3.connect(to)
    src.backup(dst)  # the README's `sqlite3 moonshot.db ".backup ..."`
    src.close()
    dst.close()


def restore(home, saved_db, saved_spool=None) -> None:
    for p in home.glob("moonshot.db*"):
        p.unlink()
    shutil.copy(saved_db, home / "moonshot.db")
    if saved_spool is not None:
        shutil.rmtree(home / "spool")
        shutil.copytree(saved_spool, home / "spool", symlinks=True)


def outside_markers() -> list:
    root = os.environ["XDG_STATE_HOME"]
    return [p for p in Path(root, "moonshot", "homes").glob("*/.moonshot-home")]


@pytest.mark.parametrize("what", ["db and spool", "the whole home but the app's record"])
def test_a_backup_restored_with_its_spool_is_still_older_than_the_home(home, tmp_path, what):
    """Found from outside: spool/.moonshot-home came back with the backup, matched the old
    database, and the coin launched after the backup launched a second time (exit 0). The
    home keeps its count outside itself too, which no restore of the home rolls back."""
    off = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=off, check=True)  # confirmed
    saved = tmp_path / "saved"
    if what == "db and spool":
        saved.mkdir()
        backup_db(home, saved / "moonshot.db")
        shutil.copytree(home / "spool", saved / "spool", symlinks=True)
    else:
        shutil.copytree(home, saved, symlinks=True)
    run_cli(home, "run", "--once", env=FAST, check=True)  # launched after the backup
    assert launch_counts(home) == {("bob", "DN"): 1}
    if what == "db and spool":
        restore(home, saved / "moonshot.db", saved / "spool")
    else:
        ledger = (home / "launches.jsonl").read_bytes()  # the app: no backup rolls it back
        shutil.rmtree(home)
        shutil.copytree(saved, home, symlinks=True)
        (home / "launches.jsonl").write_bytes(ledger)
    line = one_line_error(run_cli(home, "run", "--once", env=FAST))
    assert "older than this home" in line and "moonshot recover" in line
    assert str(Path(os.environ["XDG_STATE_HOME"])) in line  # it names the count it read
    run_cli(home, "recover", check=True)
    (coin,) = status_json(home)["attention"]
    assert coin["state"] == m.NEEDS_REVIEW
    assert "launches.jsonl records its launch" in coin["reason"]
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1}


def test_the_ledger_never_launches_a_coin_it_has_launched(home, tmp_path):
    """With every count rolled back too (the user's state folder restored or wiped along
    with the home), the launcher's own record still stops the second launch: the coin
    fails before `launching`, nothing spent, and status says to recover."""
    off = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    add(home, tmp_path)
    run_cli(home, "run", "--once", env=off, check=True)
    saved = tmp_path / "saved"
    saved.mkdir()
    backup_db(home, saved / "moonshot.db")
    shutil.copytree(home / "spool", saved / "spool", symlinks=True)
    run_cli(home, "run", "--once", env=FAST, check=True)
    restore(home, saved / "moonshot.db", saved / "spool")
    for marker in outside_markers():
        shutil.rmtree(marker.parent)  # the whole disk restored from the same backup
    run_cli(home, "run", "--once", env=FAST)
    (coin,) = status_json(home)["attention"]
    assert coin["state"] == m.NEEDS_REVIEW, coin  # for a person, who can settle it
    assert "already records the launch of coin 1" in coin["reason"]
    assert "moonshot resolve 1 --launched" in coin["reason"]
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("bob", "DN"): 1}
    run_cli(home, "resolve", "1", "--launched", check=True)  # no dead end (was: failed)
    assert status_json(home)["counts"]["launched"] == 1


def test_a_backup_from_before_a_withdrawal_is_older_than_the_home(home, tmp_path):
    """Found from outside: a withdrawal counted as nothing, so the README's own backup,
    taken just before it and put back, was accepted and the withdrawn coins launched (one
    at once, one after status's `retry`)."""
    off = {"MOONSHOT_LAUNCH_MODE": "off", **FAST}
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env=off, check=True)  # coin 1 confirmed
    add(home, tmp_path, "BBB", "alice", (10, 10, 200))  # coin 2 fetched
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "withdraw", "1", "--reason", "bad", check=True)
    run_cli(home, "withdraw", "2", "--reason", "bad", check=True)
    restore(home, tmp_path / "before.db")
    line = one_line_error(run_cli(home, "run", "--once", env=FAST))
    assert "older than this home" in line
    run_cli(home, "recover", check=True)
    states = {c["id"]: c["state"] for c in status_json(home)["attention"]}
    assert states == {1: m.NEEDS_REVIEW, 2: m.NEEDS_REVIEW}
    follow_status(home, env=FAST)
    assert launches(home) == []


def test_recover_joins_a_file_and_a_launch_to_the_coin_the_old_copy_knew(home, tmp_path):
    """Found from outside: a copy made before the coins' downloads knew them without their
    files; recover made a second, `recovered` coin of each file and ledger line ("moonshot.db
    did not know it") beside the known coin, and resolving the pair by the app (one token:
    the rebuilt one launched, the known one not) looped the known one on an assert."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    add(home, tmp_path, "BBB", "alice", (10, 10, 200))
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "run", "--once", env=FAST, check=True)  # both launched
    restore(home, tmp_path / "before.db")
    run_cli(home, "recover", check=True)
    status = status_json(home)
    assert status["total"] == 2  # no rebuilt twins
    for coin in status["attention"]:
        assert coin["state"] == m.NEEDS_REVIEW
        assert "launches.jsonl records its launch" in coin["reason"], coin
    # A person who finds no token for coin 2 in the app: it launches once more, no assert.
    run_cli(home, "resolve", "1", "--launched", check=True)
    run_cli(home, "resolve", "2", "--not-launched", check=True)
    follow_status(home, env=FAST)
    history = run_cli(home, "history", "2").stdout
    assert "AssertionError" not in history
    assert launch_counts(home)[("alice", "AAA")] == 1


def test_a_coin_without_a_spool_file_fails_with_its_reason_not_an_assert(home, tmp_path):
    """A copy made before the download, settled `--not-launched` by a person: the coin has
    no file; it fails once with what to do, and a retry downloads it again."""
    add(home, tmp_path, "CCC", "carol", (10, 150, 10))
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    (home / "spool" / "done").mkdir(exist_ok=True)
    for p in (home / "spool").glob("carol_CCC_*.jpg"):
        p.unlink()  # its file is gone too: nothing to join
    restore(home, tmp_path / "before.db")
    run_cli(home, "recover", check=True)
    run_cli(home, "resolve", "1", "--not-launched", check=True)
    run_cli(home, "run", "--once", env=FAST)
    (coin,) = status_json(home)["attention"]
    assert coin["state"] == m.FAILED and "no spooled file" in coin["reason"], coin
    follow_status(home, env=FAST)
    assert launch_counts(home) == {("carol", "CCC"): 1}


def test_a_second_run_on_the_same_home_is_a_home_error_not_an_unexpected_one(
    home, tmp_path, service_process
):
    add(home, tmp_path)
    service_process(home, FAST)
    wait_for(lambda: status_json(home)["service"]["state"] == "running", what="the service")
    proc = run_cli(home, "run", "--once", env=FAST)
    assert proc.returncode == 2, proc.stderr  # RET_CONFIG: the home is unusable now
    assert "another moonshot run" in one_line_error(proc)


def test_a_spooled_coins_file_changed_before_its_import_is_said_truly(home, tmp_path):
    """Found from outside: status said the changed file was "not taken" and "the coin keeps
    the image it spooled" for a coin still in `spooled`, whose only copy it was; the coin
    then failed, and after `retry` launched the new content while status still said so."""
    env = {"MOONSHOT_LAUNCH_REQUIRE_APPROVAL": "true", **FAST}
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env=env)  # coin 1 holds the import gate, awaits approval
    drop = home / "spool" / "bob_MAN_1700000000.jpg"
    make_image(drop, color=(0, 200, 0), fmt="JPEG")
    run_cli(home, "run", "--once", env=env)
    assert json.loads(run_cli(home, "history", "2", "--json").stdout)["coin"]["state"] == m.SPOOLED
    make_image(drop, color=(0, 0, 200), fmt="JPEG")  # overwritten in place
    run_cli(home, "run", "--once", env=env)
    said = status_json(home)["refused_drops"][drop.name]
    assert "before its import" in said and "keeps the image" not in said, said
    assert "`moonshot retry 2` takes THIS content" in said
    run_cli(home, "approve", "1", check=True)
    run_cli(home, "run", "--once", env=env)
    coin = json.loads(run_cli(home, "history", "2", "--json").stdout)["coin"]
    assert coin["state"] == m.FAILED and "was changed after" in coin["last_error"]
    run_cli(home, "retry", "2", check=True)
    run_cli(home, "run", "--once", env=env)
    assert drop.name not in status_json(home)["refused_drops"]  # it is the coin's now


# -- the third outside attack: restores under a running service, twins, the same tweet again ----
def test_a_database_restored_in_place_under_the_running_service_stops_it(
    home, tmp_path, service_process
):
    """Found from outside: `sqlite3 moonshot.db ".restore backup.db"` writes into the same
    file; the service went on with the older state and launched a coin withdrawn after the
    backup. Only the count tells: the service stops within a second, and no launch."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env=FAST, check=True)
    add(home, tmp_path, "BBB", "bob", (10, 200, 10))  # coin 2, fetched
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "withdraw", "2", "--reason", "scam", check=True)
    # Launching held off until the restore, so the race is the service's check, not ours.
    proc = service_process(home, {**FAST, "MOONSHOT_LAUNCH_MODE": "off"})
    wait_for(lambda: status_json(home)["service"]["state"] == "running", what="the service")
    src, dst = sqlite3.connect(tmp_path / "before.db"), sqlite3.connect(home / "moonshot.db")
    src.backup(dst)  # what `.restore` does: the same file, the older pages
    src.close()
    dst.close()
    assert proc.wait(timeout=30) != 0
    err = proc.err()
    assert "older" in err and "moonshot recover" in err and "Traceback" not in err, err
    line = one_line_error(run_cli(home, "run", "--once", env=FAST))
    assert "older than this home" in line
    assert launch_counts(home) == {("alice", "AAA"): 1}


def test_the_before_launch_check_refuses_an_older_count_in_the_transaction(home, tmp_path):
    """The last guard, inside the transaction that commits `launching`."""
    from moonshot import config as config_mod
    from moonshot import home as home_mod
    from moonshot.errors import HomeError

    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    cfg = config_mod.load(home, env={})
    store = home_mod.open_store(cfg)
    try:
        home_id, seq = store.identity()
        home_mod.write_marker(cfg.spool_dir, home_mod.Marker(home_id, seq + 5), durable=True)
        coin = store.get(1)
        with pytest.raises(HomeError, match="older than this home"):
            store.fire(coin, "start_launch")
        assert store.get(1).state == m.CONFIRMED  # rolled back: nothing to launch
    finally:
        store.close()


def test_the_file_that_replaced_the_database_under_the_service_is_refused(
    home, tmp_path, service_process
):
    """Found from outside: after the service stopped for a replaced moonshot.db, the next
    start took the replacing file (a mix of a backup and the service's last writes) and
    launched a coin withdrawn after the backup."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env=FAST, check=True)
    add(home, tmp_path, "BBB", "bob", (10, 200, 10))
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "withdraw", "2", "--reason", "scam", check=True)
    proc = service_process(home, {**FAST, "MOONSHOT_LAUNCH_MODE": "off"})
    wait_for(lambda: status_json(home)["service"]["state"] == "running", what="the service")
    shutil.copy(tmp_path / "before.db", home / "new.db")
    os.replace(home / "new.db", home / "moonshot.db")
    assert proc.wait(timeout=30) != 0
    for command in (["run", "--once"], ["status"]):
        line = one_line_error(run_cli(home, *command, env=FAST))
        assert "replaced the home's database" in line and "moonshot.db.saved-" in line
    (saved,) = home.glob("moonshot.db.saved-*")
    for p in home.glob("moonshot.db*"):
        if p != saved:
            p.unlink()
    saved.rename(home / "moonshot.db")  # as the line says
    run_cli(home, "run", "--once", env=FAST)
    assert launch_counts(home) == {("alice", "AAA"): 1}  # the withdrawal held
    assert json.loads(run_cli(home, "history", "2", "--json").stdout)["coin"]["state"] == m.REJECTED


def test_a_copy_of_a_home_beside_it_is_refused(home, tmp_path):
    """Found from outside: `cp -a home home2` run beside the original: the same id, the
    same coins, both launched the confirmed one."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    twin = tmp_path / "twin"
    shutil.copytree(home, twin, symlinks=True)
    line = one_line_error(run_cli(twin, "run", "--once", env=FAST))
    assert f"is a copy of the home at {home.resolve()}" in line
    run_cli(home, "run", "--once", env=FAST, check=True)  # the original goes on
    assert launch_counts(home) == {("alice", "AAA"): 1} and launches(twin) == []
    moved = tmp_path / "moved"
    shutil.rmtree(twin)
    home.rename(moved)  # a home that moved takes its new place
    run_cli(moved, "status", check=False)
    assert "copy" not in run_cli(moved, "run", "--once", env=FAST).stderr


def test_the_same_tweet_queued_again_after_a_restore_is_not_launched_again(home, tmp_path):
    """Found from outside: with the home and the state folder restored (both counts rolled
    back), the same tweet queued again took another coin id, and the ledger's guard, which
    matched the id only, let it launch a second time."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10), "--tweet-id", "111")
    run_cli(home, "run", "--once", env=FAST, check=True)
    saved = tmp_path / "saved"
    shutil.copytree(home, saved, symlinks=True)
    state = Path(os.environ["XDG_STATE_HOME"]) / "moonshot" / "homes"
    kept_state = tmp_path / "state"
    shutil.copytree(state, kept_state)
    add(home, tmp_path, "BBB", "bob", (10, 200, 10), "--tweet-id", "222")
    run_cli(home, "run", "--once", env=FAST, check=True)
    ledger = (home / "launches.jsonl").read_bytes()
    shutil.rmtree(home)
    shutil.copytree(saved, home, symlinks=True)
    shutil.rmtree(state)
    shutil.copytree(kept_state, state)
    (home / "launches.jsonl").write_bytes(ledger)
    add(home, tmp_path, "XXX", "xavier", (10, 10, 200), "--tweet-id", "999")  # takes id 2
    add(home, tmp_path, "BBB", "bob", (10, 200, 10), "--tweet-id", "222")  # id 3 now
    run_cli(home, "run", "--once", env=FAST)
    assert launch_counts(home)[("bob", "BBB")] == 1
    review = [c for c in status_json(home)["attention"] if c["state"] == m.NEEDS_REVIEW]
    assert [c["id"] for c in review] == [3] and "already records" in review[0]["reason"]


def test_recover_pairs_two_coins_of_one_user_and_ticker_with_their_files(home, tmp_path):
    """Found from outside: two coins of one user and ticker spooled after the copy came
    back as four (each file rebuilt beside its coin)."""
    add(home, tmp_path, "ZZZ", "zed", (50, 50, 50))
    run_cli(home, "run", "--once", env=FAST, check=True)
    add(home, tmp_path, "AAA", "alice", (200, 10, 10), "--tweet-id", "1")
    add(home, tmp_path, "AAA", "alice", (10, 200, 10), "--tweet-id", "2")
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    restore(home, tmp_path / "before.db")
    run_cli(home, "recover", check=True)
    status = status_json(home)
    assert status["total"] == 3, status["attention"]  # no rebuilt twins


def test_a_coin_imported_after_the_copy_is_not_lost_by_recover(home, tmp_path):
    """Found from outside: db and spool/ restored; a coin imported after the copy had only
    its photo in the folder library left, and recover reported nothing: lost."""
    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    run_cli(home, "run", "--once", env=FAST, check=True)
    saved = tmp_path / "saved"
    saved.mkdir()
    backup_db(home, saved / "moonshot.db")
    shutil.copytree(home / "spool", saved / "spool", symlinks=True)
    add(home, tmp_path, "CCC", "carol", (10, 10, 200))
    run_cli(home, "run", "--once", env={"MOONSHOT_LAUNCH_MODE": "off", **FAST}, check=True)
    restore(home, saved / "moonshot.db", saved / "spool")
    run_cli(home, "recover", check=True)
    (coin,) = status_json(home)["attention"]
    assert coin["ticker"] == "CCC" and coin["state"] == m.NEEDS_REVIEW
    assert "the folder library" in coin["reason"]


def test_a_database_gone_back_under_the_store_is_refused_even_when_the_markers_agree(
    home, tmp_path
):
    """The race the markers cannot see: restored in place, then one evidence commit by the
    running service brings the older file's count level with the markers again. The
    store remembers the highest count it saw and refuses that commit."""
    from moonshot import config as config_mod
    from moonshot import home as home_mod
    from moonshot.errors import HomeError

    add(home, tmp_path, "AAA", "alice", (200, 10, 10))
    add(home, tmp_path, "BBB", "bob", (10, 200, 10))
    backup_db(home, tmp_path / "before.db")
    run_cli(home, "withdraw", "2", "--reason", "scam", check=True)  # the count moves on
    cfg = config_mod.load(home, env={})
    store = home_mod.open_store(cfg)
    try:
        src, dst = sqlite3.connect(tmp_path / "before.db"), sqlite3.connect(home / "moonshot.db")
        src.backup(dst)  # restored into the open file
        src.close()
        dst.close()
        coin = store.get(2)
        assert coin.state == m.FETCHED  # the withdrawal is gone from the file
        with pytest.raises(HomeError, match="went back to an older state"):
            store.fire(coin, "spool", image_filename="bob_BBB_1700000000.jpg")
        assert store.get(2).state == m.FETCHED  # rolled back
    finally:
        store.close()
