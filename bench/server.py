"""A threaded HTTP server on 127.0.0.1 that serves bytes from memory, for the
benchmarks and the fault tests. Never binds another interface."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# handler(path) -> (status, headers, body) or None for 404
Route = Callable[[str], tuple[int, dict[str, str], bytes] | None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        custom = self.server.custom
        if custom is not None and custom(self):
            return
        found = self.server.files.get(self.path)
        if found is None:
            self.send_error(404)
            return
        body, ctype = found
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.custom: Callable[[BaseHTTPRequestHandler], bool] | None = None


class ImageServer:
    """`serve(path, body, ctype)` then GET http://127.0.0.1:<port><path>. A `custom`
    callable may answer a request itself (return True) to inject faults."""

    def __init__(self, custom: Callable[[BaseHTTPRequestHandler], bool] | None = None):
        self._srv = _Server()
        self._srv.custom = custom
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._srv.server_address[1]}"

    def serve(self, path: str, body: bytes, ctype: str = "image/jpeg") -> str:
        self._srv.files[path] = (body, ctype)
        return self.base + path

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)
