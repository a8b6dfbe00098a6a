"""A fork server for the tests' `python -m moonshot` (conftest.run_cli): one process per
test process imports moonshot's CLI once, then forks a child for each command. The child
is a real process as `python -m moonshot` makes one (its own stdout, stderr, exit code,
signals, locks, os._exit at a crash point, atexit and finalizers run at its end), minus
the ~0.5 s of interpreter start and imports that dominated the fast loop.

Protocol on the server's stdin/stdout, one JSON line each way: the request
{"argv", "env", "cwd", "out", "err"} is answered with {"pid"} once forked, then with
{"status"} (os.waitstatus_to_exitcode: negative for a signal) once the child ended.
Run as a script; the client is `ForkServer` below."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time

# Imported once in the server; what `moonshot run --once`, `add` and `status` import
# lazily. Nothing here reads the environment or starts a thread at import (checked below).
PRELOAD = (
    "moonshot.cli",
    "moonshot.service",
    "moonshot.home",
    "moonshot.pipeline",
    "moonshot.ops.status",
)


def _finalize() -> None:
    """What the interpreter's finalization does for the tests' evidence: every object
    freed, so every SQLite connection is closed (its WAL checkpointed into moonshot.db and
    removed, as a corrupted-copy test expects). The signal handlers (`run` installs them,
    bound to its service) are dropped first, then what is still reachable is closed."""
    import gc
    import signal
    import sqlite3

    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
    gc.collect()
    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            with contextlib.suppress(Exception):
                obj.close()


def _child(req: dict) -> int:
    import atexit
    import runpy
    import traceback

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    # [python, -m, moonshot, *args] -> [moonshot, *args]; runpy puts __main__.py's path first
    sys.argv = list(req["argv"][2:])
    code = 0
    try:
        runpy.run_module("moonshot", run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter ends on one
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
        del exc
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # logging.shutdown and the like, first as at exit
    _finalize()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120  # as the interpreter does when stdout cannot be flushed
    return code


def serve() -> None:
    import importlib

    sys.path[0] = os.getcwd()  # as `python -m` has it (a script's own folder otherwise)
    for name in PRELOAD:
        importlib.import_module(name)
    ready = {"ready": threading.active_count() == 1}  # fork only a single-threaded process
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    if not ready["ready"]:
        return
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(req)
            finally:
                os._exit(code)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


class ForkServer:
    """The client: `run(argv, env, cwd, out, err, timeout)` -> exit code, or
    subprocess.TimeoutExpired after killing the child. `ok` is False when the server could
    not fork safely (then the caller starts real interpreters)."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self.ok = bool(self._read(120).get("ready"))

    def _read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], max(0.0, timeout))[0]:
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the moonshot fork server ended")
        return json.loads(line)

    def run(self, argv, env: dict, cwd: str, out: str, err: str, timeout: float) -> int:
        assert self.proc.stdin is not None
        req = {"argv": list(argv), "env": env, "cwd": cwd, "out": out, "err": err}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        pid = self._read(30)["pid"]
        try:
            return self._read(deadline - time.monotonic())["status"]
        except TimeoutError:
            os.kill(pid, 9)  # as subprocess.run does on its timeout
            self._read(30)
            raise subprocess.TimeoutExpired(argv, timeout) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    serve()
