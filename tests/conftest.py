"""Shared fixtures: a `home` folder per test, images made with Pillow, a real HTTP
image server on 127.0.0.1, the real CLI in a subprocess, and the marker policy
(macos skipped off macOS; a missing service skips locally and fails in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from moonshot import config as config_mod
from moonshot.adapters import Ports
from moonshot.app.launcher_ledger import LedgerLauncher
from moonshot.home import open_store as open_home_store
from moonshot.photos.library_folder import FolderLibrary
from moonshot.supabase.source_local import LocalSource

ROOT = Path(__file__).resolve().parents[1]

# Every home keeps a count outside itself in the user's state folder (home.outside_marker):
# the tests' homes keep theirs in a folder of this run, inherited by the CLI subprocesses.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="moonshot-test-state-")


def pytest_collection_modifyitems(config, items):
    if sys.platform != "darwin":
        skip = pytest.mark.skip(reason="needs macOS")
        for item in items:
            if "macos" in item.keywords:
                item.add_marker(skip)


def missing_service(reason: str) -> None:
    """Skip locally, fail in CI (dramatiq's conftest): CI must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def make_image(
    path: Path, size=(64, 48), color=(200, 30, 30), fmt=None, exif: bytes | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, color)
    kwargs = {"exif": exif} if exif else {}
    im.save(path, fmt, **kwargs)
    return path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Caches (the Photos name index) go to a folder of the test's, never ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MOONSHOT_CACHE_DIR", str(path))
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def cfg_factory(home):
    def make(env: dict | None = None, toml: str | None = None):
        if toml is not None:
            (home / "moonshot.toml").write_text(toml)
        base = {"MOONSHOT_SPOOL_SETTLE_SECONDS": "0.01", "MOONSHOT_SPOOL_BACKOFF_BASE": "0.01"}
        base.update(env or {})
        cfg = config_mod.load(home, env=base)
        cfg.ensure_dirs()
        return cfg

    return make


@pytest.fixture
def cfg(cfg_factory):
    return cfg_factory()


@pytest.fixture
def store(cfg):
    """The home's store opened as the service and the CLI open it (home.open_store: the
    markers kept beside its evidence, invariant 7)."""
    s = open_home_store(cfg)
    yield s
    s.close()


@pytest.fixture
def service_factory(cfg_factory):
    """An in-process Service on the embedded adapters; pass env overrides or ports."""
    from moonshot.service import Service

    made = []

    def make(env: dict | None = None, library=None, launcher="ledger", cfg=None):
        cfg = cfg or cfg_factory(env)
        store = open_home_store(cfg)
        library = library or FolderLibrary(cfg.library_path)
        if launcher == "ledger":
            launcher = LedgerLauncher(cfg.ledger_path) if cfg.launch.mode != "off" else None
        svc = Service(cfg, store=store, ports=Ports(LocalSource(), library, launcher))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


def home_store(home: Path, env: dict | None = None):
    """A home's store opened as the CLI opens it (markers kept, invariant 7), for tests
    that write a state directly before they run the real CLI."""
    return open_home_store(config_mod.load(home, env=env or {}))


def spool_names(folder: Path) -> list[str]:
    """The names in spool/ but the home's marker (moonshot.home.MARKER)."""
    from moonshot.home import MARKER

    return sorted(n for n in os.listdir(folder) if n != MARKER)


def drain(svc, limit: int = 2000, now=None) -> int:
    """Tick until nothing is done (ignoring timed waits); returns the number of steps."""
    import time

    n = 0
    while n < limit:
        t = now() if now else time.time()
        if svc.tick(t):
            n += 1
            continue
        due = svc.next_due(t)
        if due is None:
            return n
        time.sleep(max(0.0, min(due - t, 0.05)))
    raise AssertionError("the service did not settle")


class ImageServer:
    """A real HTTP server on 127.0.0.1: routes map a path to (status, headers, body)."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                if callable(body):
                    body = body(self)
                    if body is None:
                        return
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, body: bytes, status: int = 200, headers: dict | None = None) -> str:
        self.routes[path] = (status, headers or {"Content-Type": "image/jpeg"}, body)
        return self.base + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class DripHost:
    """A raw TCP image host that is slow in one way (issue 16): `headers` sends the whole
    response a byte every `interval` seconds, `body` sends the headers at once and drips
    the body, `stall` never answers, `trickle_redirects` redirects to itself, a little
    slowly, forever; `serve` answers at once. Change `mode` at any time."""

    def __init__(self, mode: str, body: bytes = b"\xff\xd8" + b"x" * 5000, interval: float = 0.2):
        import socket

        self.mode, self.body, self.interval = mode, body, interval
        self.connections = 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/drip.jpg"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        import time

        try:
            conn.recv(65536)
            if self.mode == "stall":
                time.sleep(30)
                return
            if self.mode == "trickle_redirects":
                time.sleep(0.3)
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
                return self._serve(conn)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(self.body)
            )
            if self.mode == "serve":
                conn.sendall(head + self.body)
                return
            data = head + self.body
            if self.mode == "body":
                conn.sendall(head)
                data = self.body
            for i in range(len(data)):
                conn.send(data[i : i + 1])
                time.sleep(self.interval)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def image_server():
    srv = ImageServer()
    yield srv
    srv.close()


def cli_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONSHOT_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


# Variables the interpreter reads as it starts: a command given one runs in a fresh one.
_STARTUP_VARS = ("PYTHON", "LC_", "LANG", "TZ")
_fork_server = None


def _forked_cli(argv: list[str], env: dict, timeout: float):
    """`python -m moonshot` as a child forked from a process that has imported moonshot
    (tests/cli_forkserver.py), or None where that cannot be (TESTS_REAL_CLI=1 forces
    fresh interpreters everywhere)."""
    global _fork_server
    if os.environ.get("TESTS_REAL_CLI") or not hasattr(os, "fork"):
        return None
    if _fork_server is None:
        import atexit

        from tests.cli_forkserver import ForkServer

        _fork_server = ForkServer(cli_env())
        atexit.register(_fork_server.close)
    if not _fork_server.ok:
        return None
    with tempfile.TemporaryDirectory(prefix="moonshot-cli-") as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        code = _fork_server.run(argv, env, os.getcwd(), out, err, timeout)

        def read(path: str) -> str:
            with open(path, encoding="utf-8", errors="replace", newline=None) as f:
                return f.read()

        return subprocess.CompletedProcess(argv, code, read(out), read(err))


def run_cli(
    home: Path,
    *args: str,
    env: dict | None = None,
    timeout: float = 60,
    check: bool = False,
    real: bool = False,
):
    """The CLI as a user runs it, in a process of its own. `real=True`: a fresh
    interpreter (subprocess); else a child forked from a process that has imported
    moonshot once (the same process boundary, without ~0.5 s of start-up per command)."""
    argv = [sys.executable, "-m", "moonshot", "--home", str(home), *args]
    proc = None
    if not real and not any(k.startswith(_STARTUP_VARS) for k in env or {}):
        proc = _forked_cli(argv, cli_env(env), timeout)
    if proc is None:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=cli_env(env), timeout=timeout
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"moonshot {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


class SmallDisk:
    """A real small file system (tmpfs) that fills up: `fill()` leaves `leave` bytes free,
    `free_up()` removes the filler, `grow(size)` remounts it larger."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / ".filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        with open(self.filler, "ab") as f:
            chunk = b"\0" * 65536
            while self.free() > leave + len(chunk):
                f.write(chunk)
                f.flush()
            try:
                while self.free() > leave:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path_factory):
    """make(size) -> SmallDisk: a tmpfs of that size (root only: skipped locally
    without it, failed in CI), unmounted at the end."""
    mounted: list[Path] = []

    def make(size: str = "4m") -> SmallDisk:
        path = tmp_path_factory.mktemp("disk")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            missing_service(f"cannot mount a small tmpfs ({proc.stderr.strip()}): needs root")
        mounted.append(path)
        return SmallDisk(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def wait_for(condition, timeout: float = 60.0, every: float = 0.2, what: str = "condition"):
    """Poll until condition() is truthy (generous: the machine is shared); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture
def service_process(tmp_path_factory):
    """start(home, env=None, *args) -> Popen of `moonshot run` in the background, its
    stderr in a file (`proc.err()` reads it); stopped (TERM, then KILL) at the end."""
    procs: list[subprocess.Popen] = []

    def start(home: Path, env: dict | None = None, *args: str) -> subprocess.Popen:
        err = tmp_path_factory.mktemp("service") / "stderr.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run", *args],
            env=cli_env(env),
            stdout=subprocess.DEVNULL,
            stderr=open(err, "w"),  # noqa: SIM115 - the child owns it
        )
        proc.err = lambda: err.read_text(errors="replace")  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
