"""Getting a coin's image into a clean JPEG: download with requests (one deadline for
the whole download, size cap, allowed hosts re-checked on every redirect), decode with
Pillow (pixel cap against decompression bombs), re-encode without metadata, in a small
pool of threads off the pipeline's. Raises Rejected for the coin's own problems and
TransientError for what a later attempt may fix."""

from __future__ import annotations

import contextlib
import io
import queue
import socket
import threading
import time
import warnings
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
from PIL import Image, ImageOps, UnidentifiedImageError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from moonshot.errors import MoonshotError, Rejected, TransientError

MAX_REDIRECTS = 5
# What an image host's refusal means, after "HTTP <status> from <host>" (one line).
REFUSALS = {
    401: ": the image host asks for credentials (the URL is not a public image)",
    403: ": the image host refuses access to it",
    404: ": no image at that URL",
    410: ": the image was removed",
}
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK = 64 * 1024


def check_url(url: str, allowed_hosts: list[str]) -> str:
    """The URL's host, if the URL is http(s) and the host is allowed."""
    if any(ch < " " or ch == "\x7f" for ch in url):
        raise Rejected("image URL contains a control character or line break")
    try:
        parts = urlsplit(url)  # raises on e.g. an unclosed IPv6 bracket
    except ValueError:
        raise Rejected("image URL cannot be parsed") from None
    if parts.scheme not in ("http", "https"):
        raise Rejected(
            f"image URL scheme {parts.scheme or '(none)'!r} is not allowed: only http and https"
        )
    try:
        host = (parts.hostname or "").lower()
        # requests connects where urllib3's parser says: the host checked must be that one
        # (e.g. `http://a\\@b/`: urlsplit reads host b, urllib3 host a).
        connects_to = (parse_url(url).host or "").lower().strip("[]")
    except (ValueError, LocationParseError):
        raise Rejected("image URL cannot be parsed") from None
    if not host:
        raise Rejected("image URL has no host")
    if not host.isascii():
        raise Rejected(f"image host {host!r} is not ASCII: give its xn-- form")
    if connects_to != host:
        raise Rejected(f"image URL is ambiguous: host {host} or {connects_to}")
    if allowed_hosts and not any(
        host == h.lower() or host.endswith("." + h.lower()) for h in allowed_hosts
    ):
        raise Rejected(f"image host {host} is not allowed (spool.allowed_hosts)")
    return host


def _storage_status(resp: requests.Response) -> int:
    """Supabase Storage answers errors with HTTP 400 and the real status in the JSON
    body's `statusCode` (a 503 or 429 there is worth retrying); 0 when absent."""
    if resp.status_code != 400 or "json" not in resp.headers.get("content-type", ""):
        return 0
    try:
        status = int(resp.json().get("statusCode"))
    except (ValueError, TypeError, AttributeError):
        return 0
    return status


class Cancel:
    """Cuts one download off in whatever phase it is in: at its deadline (the whole of
    `spool.download_timeout`, issue 16: a host that drips a byte a second is cut there)
    or when the service stops. Every socket the download opens is attached here;
    shutting a socket down wakes a read blocked on it in another thread (closing it
    would not). Connecting has its own timeout, the time left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self.reason: str | None = None
        self._deadline: float | None = None
        self._deadline_reason = ""

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            fired = self.reason is not None
        if fired:
            _shutdown(sock)

    def fire(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            socks, self._socks = self._socks, []
        for sock in socks:
            _shutdown(sock)

    def arm(self, seconds: float, reason: str) -> None:
        self._deadline, self._deadline_reason = time.monotonic() + seconds, reason
        self._timer = threading.Timer(max(seconds, 0.0), self.fire, args=(reason,))
        self._timer.daemon = True
        self._timer.start()

    def expired(self) -> bool:
        """Cut off, or past the deadline (a socket timeout of the time left may end a
        read a moment before the timer fires: the cause is the same deadline)."""
        deadline = self._deadline
        if self.reason is None and deadline is not None and time.monotonic() >= deadline:
            self.fire(self._deadline_reason)
        return self.reason is not None

    def disarm(self) -> None:
        """The download is over: its (pooled) connections are no longer ours to cut."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._socks = []


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # .cancel: the Cancel of the download this thread runs


class _Attached:
    """urllib3 connections that attach their socket to the running download's Cancel:
    new ones when they connect (before any TLS byte), reused ones at each request."""

    def _new_conn(self):
        sock = super()._new_conn()
        cancel = getattr(_current, "cancel", None)
        if cancel is not None:
            cancel.attach(sock)
        return sock

    def request(self, *args, **kwargs):
        cancel = getattr(_current, "cancel", None)
        if cancel is not None and self.sock is not None:
            cancel.attach(self.sock)
        return super().request(*args, **kwargs)


class _HTTPConnection(_Attached, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Attached, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def new_session() -> requests.Session:
    """A requests Session whose downloads a Cancel can cut off (one per thread)."""
    http = requests.Session()
    adapter = _Adapter()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def download(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    allowed_hosts: list[str],
    session: requests.Session | None = None,
    cancel: Cancel | None = None,
) -> bytes:
    """The body of `url`, following at most MAX_REDIRECTS redirects, each re-checked.
    `timeout` is the whole budget (connect, redirects and every read); `cancel` lets
    another thread cut the download off (TransientError with its reason)."""
    host = check_url(url, allowed_hosts)
    cancel = cancel or Cancel()
    cancel.arm(
        timeout,
        f"download from {host} took longer than {timeout:g} s (spool.download_timeout)",
    )
    own = session is None
    http = session or new_session()
    _current.cancel = cancel
    try:
        body = _fetch(url, time.monotonic() + timeout, max_bytes, allowed_hosts, http, cancel)
    except MoonshotError:
        if cancel.expired():  # whatever the cut looked like (a reset, a timeout): transient
            raise TransientError(cancel.reason) from None
        raise
    finally:
        _current.cancel = None
        cancel.disarm()
        if own:
            http.close()
    if cancel.reason:  # cut off at the very end: the body may be short
        raise TransientError(cancel.reason)
    return body


def _fetch(
    url: str,
    deadline: float,
    max_bytes: int,
    allowed_hosts: list[str],
    http: requests.Session,
    cancel: Cancel,
) -> bytes:
    first = None
    for _ in range(MAX_REDIRECTS + 1):
        host = check_url(url, allowed_hosts)
        first = first or host
        left = deadline - time.monotonic()
        if left <= 0 or cancel.reason:
            raise TransientError(cancel.reason or f"download from {host} ran out of time")
        try:
            resp = http.get(url, timeout=(left, left), stream=True, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"download from {host} failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            if cancel.reason:
                raise TransientError(cancel.reason) from None
            raise Rejected(f"image URL cannot be fetched: {type(exc).__name__}") from None
        with resp:
            if resp.is_redirect:
                location = resp.headers.get("location")
                if not location:
                    raise Rejected(f"HTTP {resp.status_code} from {host} without a Location")
                url = urljoin(url, location)
                continue
            if resp.status_code in TRANSIENT_STATUS or resp.status_code >= 500:
                raise TransientError(f"HTTP {resp.status_code} from {host}")
            real = _storage_status(resp)
            if real in TRANSIENT_STATUS or real >= 500:
                raise TransientError(f"HTTP 400 from {host}: storage status {real}")
            if resp.status_code != 200:
                shown = f"HTTP {resp.status_code} from {host}"
                if real:
                    shown += f" (storage status {real})"
                raise Rejected(shown + REFUSALS.get(real or resp.status_code, ""))
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise Rejected(
                    f"image is {int(declared)} bytes, more than the cap of {max_bytes} (spool.max_bytes)"
                )
            body = bytearray()
            try:
                for chunk in resp.iter_content(CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise Rejected(
                            f"image is larger than the cap of {max_bytes} bytes (spool.max_bytes)"
                        )
                    if cancel.reason:
                        raise TransientError(cancel.reason)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                OSError,
            ) as exc:
                raise TransientError(
                    f"download from {host} broke off: {type(exc).__name__}"
                ) from None
            if (
                declared
                and declared.isdigit()
                and len(body) != int(declared)
                and not resp.headers.get("content-encoding")
            ):
                raise TransientError(
                    f"download from {host} truncated: {len(body)} of {declared} bytes"
                )
            if not body:
                raise Rejected(f"empty response from {host}")
            return bytes(body)
    raise Rejected(
        f"more than {MAX_REDIRECTS} redirects from {first}: a redirect loop, or no image at"
        " the end of them"
    )


class Downloads:
    """A few daemon threads that download and re-encode images off the pipeline's
    thread (issue 16: a slow host holds only its own coin). A job never touches
    moonshot.db or spool/: its result goes back to the pipeline, which writes the file
    and commits on its own thread, so the store stays the only writer. Daemon threads:
    a download cut off at a stop cannot keep the process alive."""

    def __init__(
        self,
        workers: int,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ):
        self.workers = max(1, workers)
        self.wake = wake
        self.clock = clock
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._running: dict[Hashable, tuple[Any, Cancel]] = {}  # key -> (tag, cancel)
        self._threads: list[threading.Thread] = []

    @property
    def room(self) -> int:
        with self._lock:
            return self.workers - len(self._running)

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._running

    def running(self) -> dict[Hashable, Any]:
        """key -> tag of every job not yet collected."""
        with self._lock:
            return {k: tag for k, (tag, _) in self._running.items()}

    def submit(self, key: Hashable, tag: Any, job: Callable[[Cancel, requests.Session], Any]):
        """Run job(cancel, session) on a worker; its outcome (value or exception) comes
        back from `results` with the tag and the time it ended."""
        cancel = Cancel()
        with self._lock:
            if key in self._running:
                raise ValueError(f"{key!r} is already downloading")
            self._running[key] = (tag, cancel)
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name="moonshot-download", daemon=True)
                self._threads.append(t)
                t.start()
        self._jobs.put((key, tag, job, cancel))

    def _work(self) -> None:
        http = new_session()
        while True:
            key, tag, job, cancel = self._jobs.get()
            try:
                outcome: Any = job(cancel, http)
            except Exception as exc:  # noqa: BLE001 - handed to the pipeline, which decides
                outcome = exc
            self._done.put((key, tag, outcome, self.clock()))
            self.wake()

    def results(self, timeout: float = 0.0) -> list[tuple[Hashable, Any, Any, float]]:
        """Finished jobs (key, tag, outcome, ended at); waits up to `timeout` for one."""
        out = []
        try:
            out.append(self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait())
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            for key, tag, _, _ in out:
                if self._running.get(key, (None,))[0] == tag:
                    del self._running[key]
        return out

    def cancel_all(self, reason: str) -> dict[Hashable, Any]:
        """Cut every running download off; returns key -> tag of the jobs given up
        (their results, if they still come, are never collected)."""
        with self._lock:
            given_up = dict(self._running)
            self._running.clear()
        for _, cancel in given_up.values():
            cancel.fire(reason)
        return {k: tag for k, (tag, _) in given_up.items()}


def read_local(path: Path, *, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise Rejected(f"image file {path} does not exist") from None
    except OSError as exc:
        raise TransientError(f"image file {path} cannot be read: {exc.strerror}") from None
    if size > max_bytes:
        raise Rejected(
            f"image file is {size} bytes, more than the cap of {max_bytes} (spool.max_bytes)"
        )
    if size == 0:
        raise Rejected(f"image file {path} is empty")
    return path.read_bytes()


def reencode(data: bytes, *, max_pixels: int, max_side: int = 0, quality: int = 90) -> bytes:
    """Decode any image Pillow reads, refuse more than `max_pixels`, return a JPEG
    with no metadata (no EXIF, no ICC, no capture date), optionally shrunk so its
    longest side is `max_side`."""
    if not data:
        raise Rejected("image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size  # header only: nothing decoded yet
            if width * height > max_pixels:
                raise Rejected(
                    f"image is {width}x{height} pixels, more than the cap of {max_pixels} (spool.max_pixels)"
                )
            if max_side and im.format == "JPEG" and max(width, height) > max_side:
                im.draft("RGB", (max_side, max_side))  # decode at a fraction of the size
            im.load()
            # in place: without an orientation tag the default returns a full copy
            ImageOps.exif_transpose(im, in_place=True)
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's guard fires in open(), before our cap: say what it saw, which is
        # the image's real size ("Image size (N pixels) exceeds limit of M pixels").
        raise Rejected(f"decompression bomb: {str(exc).split(',')[0]}") from None
    except UnidentifiedImageError:
        kind = _sniff(data)
        raise Rejected(f"not an image ({kind})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Rejected(f"image cannot be decoded: {str(exc)[:80]}") from None
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        im = flat
    elif im.mode != "RGB":
        im = im.convert("RGB")
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=False)  # no exif=, no icc_profile=: stripped
    return out.getvalue()


def _sniff(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "an HTML page"
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "SVG or XML, which is not accepted"
    if head.startswith((b"{", b"[")):
        return "JSON"
    return f"{len(data)} bytes of unknown data"
