"""A loopback HTTP receiver for apprise's `json://` URLs, started by the test, and its
hostile modes: answer 200, answer a status (500, 429), accept the connection and never
answer, answer 200 only after a delay, fail the first N posts. Records every post.
The `receiver` fixture is in tests/ops/receiver_plugin.py."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALERT_ID = re.compile(r"alert-id: (\S+?)(?:\]|$)", re.M)


class Receiver:
    def __init__(
        self, mode: str = "ok", status: int = 500, delay: float = 0.0, fail_first: int = 0
    ):
        self.mode, self.status, self.delay, self.fail_first = mode, status, delay, fail_first
        self.posts: list[dict] = []  # every post, answered or not
        self.open = 0  # requests being held (hang, slow)
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                auth = self.headers.get("Authorization") or ""
                with receiver._lock:
                    n = len(receiver.posts)
                    receiver.posts.append(
                        {"at": time.time(), "path": self.path, "body": body, "auth": auth}
                    )
                mode = receiver.mode
                if mode == "hang":
                    with receiver._lock:
                        receiver.open += 1
                    receiver._release.wait(120)  # never answers while the test runs
                    with receiver._lock:
                        receiver.open -= 1
                    return
                if mode == "slow":
                    with receiver._lock:
                        receiver.open += 1
                    time.sleep(receiver.delay)
                    with receiver._lock:
                        receiver.open -= 1
                code = 200
                if mode == "status" or (mode == "flaky" and n < receiver.fail_first):
                    code = receiver.status
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"json://{auth}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- what arrived ------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Every alert-id line of every post, repeats included, in arrival order."""
        out = []
        for p in list(self.posts):
            out += ALERT_ID.findall(p["body"].get("message", ""))
        return out

    def alert_keys(self) -> list[str]:
        """The local part of each alert-id (after `<host>:<hash>/`)."""
        return [i.split("/", 1)[1] for i in self.ids()]

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    @staticmethod
    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
