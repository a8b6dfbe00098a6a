"""Hostile input (issue 7): names, tickers, images and URLs made to escape spool/,
exhaust memory or confuse a parser. Each is refused with a reason that names the
problem, nothing is written outside spool/ and the library, memory stays bounded."""

from __future__ import annotations

import gzip
import io
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from moonshot import config as config_mod
from moonshot import images
from moonshot import machine as m
from moonshot.adapters import Ports
from moonshot.errors import Rejected
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import IncomingCoin
from moonshot.service import Service
from moonshot.supabase.source_local import LocalSource
from tests.conftest import ROOT, ImageServer, cli_env, drain, make_image, run_cli, spool_names

SERVICE_FILES = {"spool", "library", "logs", "moonshot.db", "moonshot.db-wal", "moonshot.db-shm"}
SERVICE_FILES |= {"launches.jsonl", "moonshot.toml", ".run-sync.lock", ".run-launch.lock"}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def outside_service(root: Path, home: Path) -> dict[str, bytes]:
    """Every file under `root` except the service's own (spool/, library/, db, logs)."""
    out = {}
    for name, data in snapshot(root).items():
        path = root / name
        if path.is_relative_to(home) and path.relative_to(home).parts[0] in SERVICE_FILES:
            continue
        out[name] = data
    return out


def png_bomb(side: int = 20_000) -> bytes:
    """A 1-bit grayscale PNG of side x side pixels, all black: about 60 KB on disk,
    400 million pixels (Pillow would hold 400 MB for it, a byte per pixel)."""
    return png_bomb_wh(side, side)


def png_bomb_wh(width: int, height: int) -> bytes:

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb()


def jpeg_bytes(size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


# -- names and tickers ---------------------------------------------------------------
HOSTILE_COINS = [
    # (twitter_user, ticker, what the reason must name)
    ("bob", "../ETC", "invalid ticker"),
    ("bob", "A/B", "invalid ticker"),
    ("bob", "A\\B", "invalid ticker"),
    ("bob", "..", "invalid ticker"),
    ("bob", "ＭＯＯＮ", "invalid ticker"),  # fullwidth
    ("bob", "MOOΝ", "invalid ticker"),  # Greek capital Nu
    ("bob", "ıD", "invalid ticker"),  # dotless i upper-cases to ASCII I
    ("bob", "ß", "invalid ticker"),  # upper-cases to SS
    ("bob", "MOON\n", "invalid ticker"),
    ("bob", "MO\x00ON", "invalid ticker"),
    ("bob", "\u202eNOOM", "invalid ticker"),  # right-to-left override
    ("bob", "MOON\u200b", "invalid ticker"),  # zero-width space
    ("bob", "M" * 11, "invalid ticker"),
    ("bob", "M" * 5000, "invalid ticker"),
    ("bob", "MOON_X", "invalid ticker"),  # would shift the name's parts
    ("../../tmp", "MOON", "invalid twitter user"),
    ("b/b", "MOON", "invalid twitter user"),
    ("bоb", "MOON", "invalid twitter user"),  # Cyrillic o
    ("bob\r\n", "MOON", "invalid twitter user"),
    ("b" * 16, "MOON", "invalid twitter user"),
    ("", "MOON", "invalid twitter user"),
]


def test_hostile_names_from_a_source_are_rejected_in_spool(service_factory, image_server, tmp_path):
    """A remote source may hand over anything: the spool step refuses each bad name
    with a printable reason and writes nothing anywhere."""
    url = image_server.add("/ok.jpg", jpeg_bytes())
    svc = service_factory()
    before = outside_service(tmp_path, svc.cfg.home)
    ids = {}
    for i, (user, ticker, why) in enumerate(HOSTILE_COINS):
        coin_id, _ = svc.store.add_coin(
            IncomingCoin("remote", f"h:{i}", ticker, "Hostile", url, user), twitter_user=user
        )
        ids[coin_id] = why
    drain(svc)
    for coin_id, why in ids.items():
        coin = svc.store.get(coin_id)
        assert coin.state == m.REJECTED, (coin.ticker, coin.state)
        assert why in coin.last_error and coin.last_error.isprintable()
        assert len(coin.last_error) < 200
    assert spool_names(svc.cfg.spool_dir) == []
    assert svc.ports.library.count() == 0
    assert image_server.hits.get("/ok.jpg", 0) == 0  # refused before any download
    assert outside_service(tmp_path, svc.cfg.home) == before


@pytest.fixture(scope="module")
def spool_only(tmp_path_factory):
    """One sync-only service for many hypothesis examples (a module-scoped fixture is
    not reset between examples, and needs none: each example is its own coin)."""
    home = tmp_path_factory.mktemp("hyp") / "home"
    cfg = config_mod.load(home, env={"MOONSHOT_LAUNCH_MODE": "off"})
    cfg.ensure_dirs()
    svc = Service(cfg, ports=Ports(LocalSource(), FolderLibrary(cfg.library_path), None))
    (home / "src.jpg").write_bytes(jpeg_bytes())
    yield svc
    svc.close()
    svc.store.close()


@settings(max_examples=60, deadline=None)
@given(user=st.text(max_size=40), ticker=st.text(max_size=40))
def test_any_ticker_and_user_spool_inside_spool_or_are_rejected(spool_only, user, ticker):
    """The spool step with any ticker and user a source could send: either the coin is
    rejected naming the bad part, or its file lands directly in spool/."""
    svc = spool_only
    image = svc.cfg.home / "src.jpg"
    coin_id, _ = svc.store.add_coin(
        IncomingCoin("local", f"hyp:{uuid.uuid4()}", ticker, "x", str(image), user),
        twitter_user=user,
    )
    svc.pipeline.spool(svc.store.get(coin_id), time.time())
    coin = svc.store.get(coin_id)
    if coin.state == m.REJECTED:
        assert coin.last_error.startswith(("invalid ticker", "invalid twitter user"))
        assert coin.last_error.isprintable()
    else:
        assert coin.state == m.SPOOLED
        path = (svc.cfg.spool_dir / coin.image_filename).resolve()
        assert path.parent == svc.cfg.spool_dir.resolve() and path.is_file()
        assert (
            coin.image_filename == f"{user}_{ticker.upper()}_{coin.image_filename.split('_')[-1]}"
        )


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--ticker", "../ETC", "--name", "x"], "invalid ticker"),
        (["--ticker", "ＭＯＯＮ", "--name", "x"], "invalid ticker"),
        (["--ticker", "MOON", "--name", "x", "--twitter-user", "a/../b"], "invalid twitter user"),
        (["--ticker", "MOON", "--name", "line\nbreak"], "control character"),
        (["--ticker", "MOON", "--name", "x" * 500], "longer than"),
    ],
)
def test_cli_add_refuses_hostile_values(home, tmp_path, args, reason):
    image = make_image(tmp_path / "a.jpg", fmt="JPEG")
    proc = run_cli(home, "add", *args, "--image", str(image))
    assert proc.returncode != 0 and reason in proc.stderr
    if (home / "moonshot.db").exists():  # nothing was queued
        assert sqlite3.connect(home / "moonshot.db").execute(
            "SELECT count(*) FROM coins"
        ).fetchone() == (0,)


# names a user might drop into spool/: none of these is canonical, all stay untouched
ODD_DROPS = [
    "bob_MOON_1.JPG",
    "bob_ＭＯＯＮ_1.jpg",
    "bob_MOON_01.jpg",
    "..bob_MOON_1.jpg",
    "bob_MOON_1.jpg\n",
    "bob_MOON_1.jpg.exe",
    "bob_MO\u200bON_1.jpg",
    "bоb_MOON_1.jpg",
    "b" * 200 + "_MOON_1.jpg",
]


def test_odd_drops_are_left_alone_and_reported(service_factory, cfg):
    svc = service_factory()
    for name in ODD_DROPS:
        (cfg.spool_dir / name).write_bytes(jpeg_bytes())
    svc.start(watch=False)
    drain(svc)
    assert svc.store.counts()[m.SPOOLED] == 0 and sum(svc.store.counts().values()) == 0
    assert spool_names(cfg.spool_dir) == sorted(ODD_DROPS)
    from moonshot.ops.status import unknown_spool_files

    assert sorted(unknown_spool_files(cfg)) == sorted(n for n in ODD_DROPS if not n.startswith("."))


def test_symlinked_drop_never_writes_through_the_link(service_factory, cfg, tmp_path):
    """A canonical name that is a symlink to a file outside spool/: the target is not
    modified (the re-encoded copy replaces the link inside spool/)."""
    target = tmp_path / "private.jpg"
    target.write_bytes(jpeg_bytes((50, 50)))
    original = target.read_bytes()
    svc = service_factory({"MOONSHOT_LAUNCH_MODE": "off"})  # the home first (invariant 7)
    link = cfg.spool_dir / "bob_LINK_1700000000.jpg"
    link.symlink_to(target)
    svc.start(watch=False)
    drain(svc)
    assert target.read_bytes() == original
    assert not link.is_symlink()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    )
)
def test_any_dropped_file_name_stays_in_spool(name):
    """Whatever a file in spool/ is called, handling it writes nothing outside spool/
    and the library, and only canonical names ever become coins."""
    if name in (".", "..") or len(name.encode()) > 255:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        cfg = config_mod.load(home, env={"MOONSHOT_SPOOL_SETTLE_SECONDS": "0"})
        cfg.ensure_dirs()
        (root / "outside.txt").write_text("keep")
        before = outside_service(root, home)
        (cfg.spool_dir / name).write_bytes(jpeg_bytes())
        svc = Service(cfg, ports=Ports(LocalSource(), FolderLibrary(cfg.library_path), None))
        try:
            svc.start(watch=False)
            drain(svc, limit=50)
            coins = svc.store.coins_in(m.STATES)
        finally:
            svc.close()
            svc.store.close()
        assert outside_service(root, home) == before
        from moonshot.naming import parse_name

        if parse_name(name) is None:
            assert coins == []
            assert (cfg.spool_dir / name).read_bytes() == jpeg_bytes()
        else:
            assert [c.image_filename for c in coins] == [name]


# -- images ----------------------------------------------------------------------------
def test_pixel_bomb_is_refused_from_the_header_with_bounded_memory(tmp_path, bomb):
    """Decoding the bomb would take 400 MB; the refusal must come from the header
    (Pillow's own guard fires in open(), then our cap).
    Measured in a fresh process: its peak RSS may not grow by more than 40 MB."""
    assert len(bomb) < 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    code = (
        "import resource, sys\n"
        "from moonshot import images\n"
        "from moonshot.errors import Rejected\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for cap in (50_000_000, 10**9):  # the pixel cap, then Pillow's own bomb guard\n"
        "    try:\n"
        "        images.reencode(data, max_pixels=cap)\n"
        "        print('DECODED')\n"
        "    except Rejected as exc:\n"
        "        print('REFUSED', exc.reason)\n"
        "print('GROWTH_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=60,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert (
        lines[0]
        == "REFUSED decompression bomb: Image size (400000000 pixels) exceeds limit of 178956970 pixels"
    )
    assert lines[1] == lines[0]  # a higher spool.max_pixels does not let it through
    growth_mb = int(lines[2].split()[1]) / 1024
    assert growth_mb < 40, f"peak RSS grew {growth_mb:.0f} MB"


def _chunked_gzip_bomb(handler) -> None:
    # 200 MB of zeros, about 200 KB on the wire, sent with Content-Encoding: gzip:
    # requests inflates it while reading, so the cap must count inflated bytes.
    payload = gzip.compress(b"\x00" * 200_000_000, compresslevel=9)
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _huge_declared(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b"\xff\xd8" + b"\x00" * 1000)


@pytest.fixture
def hostile_images(image_server, bomb, tmp_path):
    full = jpeg_bytes((300, 300))
    served = {
        "empty": (200, b"", "empty response"),
        "truncated": (200, full[: len(full) // 2], "image cannot be decoded"),
        "bomb": (200, bomb, "decompression bomb: Image size (400000000 pixels)"),
        "svg": (
            200,
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9e9"/>',
            "not an image (SVG or XML",
        ),
        "html": (200, b"<!DOCTYPE html><html><body>Error</body></html>", "an HTML page"),
        "huge": (200, _huge_declared, "bytes, more than the cap"),
        "gzip": (200, _chunked_gzip_bomb, "larger than the cap"),
    }
    urls = {}
    for key, (status, body, reason) in served.items():
        image_server.routes[f"/{key}"] = (status, {"Content-Type": "image/jpeg"}, body)
        urls[key] = (image_server.base + f"/{key}", reason)
    return urls


def test_hostile_images_are_rejected_with_their_reason(service_factory, hostile_images, tmp_path):
    svc = service_factory(
        {"MOONSHOT_SPOOL_MAX_BYTES": "5000000", "MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1"}
    )
    before = outside_service(tmp_path, svc.cfg.home)
    ids = {}
    for i, (key, (url, reason)) in enumerate(sorted(hostile_images.items())):
        coin_id, _ = svc.store.add_coin(
            IncomingCoin("local", f"img:{key}", f"IMG{i}", key, url, "bob"), twitter_user="bob"
        )
        ids[coin_id] = (key, reason)
    drain(svc)
    for coin_id, (key, reason) in ids.items():
        coin = svc.store.get(coin_id)
        assert coin.state == m.REJECTED, (key, coin.state, coin.last_error)
        assert reason in coin.last_error, (key, coin.last_error)
    assert [n for n in spool_names(svc.cfg.spool_dir) if not n.endswith(".part")] == []
    assert svc.ports.library.count() == 0
    assert outside_service(tmp_path, svc.cfg.home) == before


def test_local_hostile_image_files(tmp_path, bomb):
    wide = png_bomb_wh(20_000, 2_000)  # 40 M pixels: under Pillow's guard, over our cap
    cases = {
        "empty.jpg": (b"", "empty"),
        "page.jpg": (b"<html><body>404</body></html>", "an HTML page"),
        "bomb.png": (bomb, "decompression bomb"),
        "wide.png": (wide, "20000x2000 pixels, more than the cap of 30000000"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(Rejected, match=reason):
            images.reencode(images.read_local(path, max_bytes=10**7), max_pixels=30_000_000)


# -- URLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, reason",
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://127.0.0.1/x.jpg", "scheme 'ftp' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data' is not allowed"),
        ("gopher://127.0.0.1:70/_x", "scheme 'gopher' is not allowed"),
        ("//127.0.0.1/x.jpg", "scheme '(none)' is not allowed"),
        ("http:///x.jpg", "no host"),
        ("http://evil.example/x.jpg", "evil.example is not allowed"),
        ("http://127.0.0.1.evil.example/x.jpg", "is not allowed"),
        ("http://evil127.0.0.1/x.jpg", "is not allowed"),
        ("http://127.0.0.1@evil.example/x.jpg", "evil.example is not allowed"),
        ("http://localhost:1\\@127.0.0.1/x.jpg", "ambiguous"),
        ("http://127.0.0.1/x\n.jpg", "control character"),
        ("http://127.0.0.1:80:81/x.jpg", "cannot be parsed"),
        ("http://bücher.example/x.jpg", "not ASCII"),
    ],
)
def test_urls_to_other_hosts_or_schemes_are_refused(url, reason):
    with pytest.raises(Rejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
        images.check_url(url, ["127.0.0.1"])


def test_parser_confusion_cannot_reach_a_host_that_is_not_allowed(service_factory, image_server):
    """`http://localhost:P\\@127.0.0.1:Q/` reads as host 127.0.0.1 to urlsplit, but
    requests connects to localhost:P. A second server stands for the forbidden host."""
    other = ImageServer()
    try:
        forbidden = other.add("/secret.jpg", jpeg_bytes())
        port = forbidden.split(":")[2].split("/")[0]
        allowed = image_server.add("/ok.jpg", jpeg_bytes())
        tricky = f"http://localhost:{port}\\@127.0.0.1:{allowed.split(':')[2]}"
        svc = service_factory({"MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1"})
        coin_id, _ = svc.store.add_coin(
            IncomingCoin("local", "ssrf", "SSRF", "x", tricky, "bob"), twitter_user="bob"
        )
        drain(svc)
        coin = svc.store.get(coin_id)
        assert other.hits == {}, "the forbidden host was contacted"
        assert coin.state == m.REJECTED and "ambiguous" in coin.last_error
    finally:
        other.close()
