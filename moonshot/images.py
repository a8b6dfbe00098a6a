"""Getting a coin's image into a clean JPEG: download with requests (timeout, size
cap, allowed hosts re-checked on every redirect), decode with Pillow (pixel cap
against decompression bombs), re-encode without metadata. Raises Rejected for the
coin's own problems and TransientError for what a later attempt may fix."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image, ImageOps, UnidentifiedImageError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from moonshot.errors import Rejected, TransientError

MAX_REDIRECTS = 5
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


def download(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    allowed_hosts: list[str],
    session: requests.Session | None = None,
) -> bytes:
    """The body of `url`, following at most MAX_REDIRECTS redirects, each re-checked."""
    http = session or requests.Session()
    for _ in range(MAX_REDIRECTS + 1):
        host = check_url(url, allowed_hosts)
        try:
            resp = http.get(url, timeout=timeout, stream=True, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"download from {host} failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
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
                raise Rejected(f"HTTP {resp.status_code} from {host}")
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
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
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
    raise Rejected(f"more than {MAX_REDIRECTS} redirects")


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
