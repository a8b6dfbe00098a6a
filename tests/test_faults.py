"""Fault injection (issue 7): a flaky image server on 127.0.0.1 and a folder library
that is sometimes locked. Every coin must end `launched` (one ledger line, one asset)
or, for a permanent fault, `rejected` with the true reason; nothing twice."""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import struct
import time
from collections import Counter

import pytest
from PIL import Image

from moonshot import machine as m
from moonshot.errors import TransientError
from moonshot.photos.library_folder import FolderLibrary
from moonshot.ports import IncomingCoin
from tests.conftest import drain

pytestmark = pytest.mark.stress

TIMEOUT = 0.3  # spool.download_timeout; a "slow" response comes after 2x this
TRANSIENT = ("500", "reset", "slow", "truncated")
# permanent faults: what the server does, and the reason the coin must be rejected with
PERMANENT = {
    "404": "HTTP 404",
    "html200": "not an image (an HTML page)",
    "svg": "not an image (SVG or XML",
    "broken_jpeg": "image cannot be decoded",
}
ENV = {
    "MOONSHOT_SPOOL_DOWNLOAD_TIMEOUT": str(TIMEOUT),
    "MOONSHOT_SPOOL_DOWNLOAD_ATTEMPTS": "8",  # plans hold at most 4 faults: slack for load
    "MOONSHOT_SPOOL_BACKOFF_BASE": "0.01",
    "MOONSHOT_SPOOL_BACKOFF_MAX": "0.05",
    "MOONSHOT_SPOOL_ALLOWED_HOSTS": "127.0.0.1",
    "MOONSHOT_PHOTOS_IMPORT_ATTEMPTS": "6",
    "MOONSHOT_LAUNCH_RETRY_BACKOFF": "0.01",
}


def jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    im = Image.new("RGB", (48, 48), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


class FlakyRoute:
    """One coin's image: the faults in `plan`, one per request, then the image."""

    def __init__(self, body: bytes, plan: list[str], ctype: str = "image/jpeg"):
        self.body, self.plan, self.ctype = body, list(plan), ctype
        self.served: list[str] = []

    def __call__(self, h) -> None:
        fault = self.plan.pop(0) if self.plan else "ok"
        self.served.append(fault)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(h, fault)  # (the client may have given up first: the slow case)
        return None  # the response is written here, not by the conftest handler

    def _answer(self, h, fault: str) -> None:
        if fault == "reset":  # RST before any byte of the response
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        if fault == "slow":
            time.sleep(TIMEOUT * 2)
        if fault == "500":
            return self._send(h, 500, "text/plain", b"internal error")
        if fault == "404":
            return self._send(h, 404, "text/html", b"<html>not found</html>")
        if fault == "html200":  # a login or error page served as a success
            page = b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>"
            return self._send(h, 200, "image/jpeg", page)
        if fault == "svg":
            svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'
            return self._send(h, 200, "image/svg+xml", svg)
        if fault == "truncated":  # announces the whole image, sends half, hangs up
            h.send_response(200)
            h.send_header("Content-Type", self.ctype)
            h.send_header("Content-Length", str(len(self.body)))
            h.end_headers()
            h.wfile.write(self.body[: len(self.body) // 2])
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        self._send(h, 200, self.ctype, self.body)

    @staticmethod
    def _send(h, status: int, ctype: str, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


class LockingLibrary(FolderLibrary):
    """The folder library, but Photos is sometimes "locked": an import is refused,
    or (worse) the import happens and the call still reports a timeout; a confirm
    query is sometimes refused too. Each at most `limit` times per file."""

    def __init__(self, root, rng: random.Random, limit: int = 2):
        super().__init__(root)
        self.rng, self.limit = rng, limit
        self.injected: Counter[str] = Counter()
        self._per_file: Counter[str] = Counter()

    def _fault(self, key: str, p: float, limit: int | None = None) -> bool:
        if self._per_file[key] < (limit or self.limit) and self.rng.random() < p:
            self._per_file[key] += 1
            return True
        return False

    def import_file(self, path):
        if self._fault(path.name, 0.35):
            self.injected["locked"] += 1
            raise TransientError("Photos library is locked (another import is running)")
        asset = super().import_file(path)
        if self._fault(path.name + ":late", 0.25):
            self.injected["late_timeout"] += 1
            raise TransientError("import did not answer within the timeout")
        return asset

    def confirm(self, asset_id, original_filename, since):
        if self._fault(original_filename + ":confirm", 0.1, limit=1):  # costs a 1 s poll
            self.injected["confirm_locked"] += 1
            raise TransientError("Photos library is locked")
        return super().confirm(asset_id, original_filename, since)


@pytest.mark.parametrize("seed", [7, 2026])
def test_every_coin_ends_launched_or_truly_rejected(
    cfg_factory, service_factory, image_server, seed
):
    rng = random.Random(seed)
    cfg = cfg_factory(ENV)
    library = LockingLibrary(cfg.library_path, random.Random(seed + 1))
    svc = service_factory(cfg=cfg, library=library)
    routes: dict[int, FlakyRoute] = {}
    expected_reject: dict[int, str] = {}
    for i in range(21):
        body = jpeg(seed * 1000 + i)
        kind = i % 7
        reason = None
        if kind < 4:  # transient faults, fewer than the attempts allowed, then the image
            plan = rng.choices(TRANSIENT, k=rng.randint(1, 4))
            route = FlakyRoute(body, plan)
        elif kind == 4:  # a real image with a wrong content type is still an image
            route = FlakyRoute(body, [], ctype=rng.choice(["text/html", "application/json"]))
        elif kind == 5:
            fault = rng.choice(sorted(PERMANENT))
            if fault == "broken_jpeg":
                route = FlakyRoute(body[: len(body) // 3], [])  # the stored file itself is cut
            else:
                route = FlakyRoute(body, [fault] * 10)
            reason = PERMANENT[fault]
        else:  # no fault at all
            route = FlakyRoute(body, [])
        url = image_server.base + f"/img/{i}.jpg"
        image_server.routes[f"/img/{i}.jpg"] = (200, {}, route)
        coin_id, _ = svc.store.add_coin(
            IncomingCoin("local", f"fault:{i}", f"F{i}", f"Fault {i}", url, "flaky"),
            twitter_user="flaky",
        )
        routes[coin_id] = route
        if reason:
            expected_reject[coin_id] = reason

    drain(svc, limit=5000)

    served = Counter(f for r in routes.values() for f in r.served)
    for fault in TRANSIENT:  # the faults really happened
        assert served[fault] > 0, f"no {fault} fault was injected: {served}"
    assert library.injected["locked"] > 0 and library.injected["late_timeout"] > 0

    ledger = [json.loads(x) for x in svc.cfg.ledger_path.read_text().splitlines()]
    launches = Counter(e["coin_id"] for e in ledger)
    assets = Counter(
        name for (name,) in library._conn.execute("SELECT original_filename FROM assets")
    )
    for coin_id in routes:
        coin = svc.store.get(coin_id)
        if coin_id in expected_reject:
            assert coin.state == m.REJECTED, (coin_id, coin.state, coin.last_error)
            assert expected_reject[coin_id] in coin.last_error
            assert launches[coin_id] == 0
            assert not coin.image_filename or assets[coin.image_filename] == 0
        else:
            assert coin.state == m.LAUNCHED, (coin_id, coin.state, coin.last_error)
            assert launches[coin_id] == 1
            assert assets[coin.image_filename] == 1, f"coin {coin_id}: second asset"
    deferred = [
        json.loads(d)["error"]
        for (d,) in svc.store.db.execute("SELECT detail FROM transitions WHERE trigger = 'defer'")
    ]
    # transient faults were retried with a reason that names them, not rejected
    for needle in ("HTTP 500", "ReadTimeout", "locked", "did not answer"):
        assert any(needle in d for d in deferred), f"no retry mentions {needle!r}: {deferred}"
