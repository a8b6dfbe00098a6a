"""Alert URLs (apprise URLs): which may live in moonshot.toml and which are secrets, how
one is named in output, and which parts of it to scrub. Plain text rules (no apprise
import, so `config` can use them); nothing here ever returns a secret part of a URL."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import parse_qsl, unquote, urlsplit

# The secret that holds every URL with a token (environment, Keychain or moonshot.env).
SECRET_NAME = "MOONSHOT_ALERT_URLS"
# Schemes that name no account anywhere: desktop notifications and plain webhooks.
# Every other scheme (tgram, discord, slack, ntfy, pover, mailto, ...) names an account on
# a service, and its URL is the credential: a secret, whatever it looks like.
DESKTOP = frozenset({"macosx", "dbus", "kde", "qt", "glib", "gnome", "windows"})
WEBHOOK = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
# A webhook query argument that may carry a credential (`?+Authorization=...` is a header).
SUSPECT = re.compile(r"token|key|secret|pass|auth|sig|bearer|session|cookie", re.I)
# MOONSHOT_ALERT_URLS: URLs separated by white space, or by a comma before the next scheme.
_SEPARATOR = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOSTNAME = re.compile(r"^(?=.{1,100}$)([a-z0-9-]{1,24}\.)+[a-z]{2,24}$", re.I)
# Separators inside a URL; the pieces between them that are long enough to be a token.
_PIECES = re.compile(r"[\s/:@?&=#+,;]+|%[0-9A-Fa-f]{2}")
MIN_PIECE = 10


def split(text: str) -> list[str]:
    return [u for u in _SEPARATOR.split(text.strip()) if u]


def scheme(url: str) -> str:
    m = _SCHEME.match(url.strip())
    return m[1].lower() if m else ""


def secret_reason(url: str) -> str | None:
    """Why this URL must not be written in moonshot.toml, or None if it holds no secret."""
    kind = scheme(url)
    if not kind:
        return "is not an apprise URL (scheme://...)"
    if kind not in DESKTOP | WEBHOOK:
        return f"{kind}:// names an account on a service: the URL is its credential"
    parts = urlsplit(url.strip())
    if parts.username or parts.password or "@" in parts.netloc:
        return "holds a user name or password"
    # apprise's `+name=` is a header: keep the `+` (parse_qsl would read it as a space).
    for key, _ in parse_qsl(parts.query.replace("+", "%2B"), keep_blank_values=True):
        if key.startswith("+") or SUSPECT.search(key):
            return f"carries {key.lstrip('+-:')!r}, which may be a credential"
    return None


def _safe_host(host: str) -> bool:
    """A host worth showing: an IP address or a plain domain name, never a token-like
    word (Telegram and Discord put their bot or webhook id where the host goes)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return host == "localhost" or bool(_HOSTNAME.match(host))


def label(url: str) -> str:
    """The URL as output may show it: scheme, host and port only (never a user name,
    password, path or query), and the host only when it is an address or a plain domain
    name (ntfy.sh, gmail.com), else `***`. A webhook (json://, xml://, form://) is named
    with its port even when it carries a credential: two receivers on one host differ
    only by it, and the port is no part of the credential; a service's secret URL is
    named by its host alone."""
    kind = scheme(url) or "?"
    rest = url.strip()[len(kind) + 3 :] if scheme(url) else ""
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    if netloc.startswith("["):  # an IPv6 address: [::1]:8123
        inside, _, after = netloc[1:].partition("]")
        host, port = f"[{inside}]", after[1:] if after.startswith(":") else ""
    else:
        host, _, port = netloc.partition(":")
    if kind in DESKTOP:
        return f"{kind}://"
    if not host or not _safe_host(host):
        return f"{kind}://***"
    shown = port.isdigit() and 0 < int(port) < 65536
    if shown and kind not in WEBHOOK:
        shown = secret_reason(url) is None
    return f"{kind}://{host}" + (f":{int(port)}" if shown else "")


def fingerprint(url: str) -> str:
    """A stable id of one URL for the alerts table (which URLs got an alert): 48 bits of
    its SHA-256, which tell nothing about a token."""
    return hashlib.sha256(url.strip().encode()).hexdigest()[:12]


def secret_pieces(url: str) -> list[str]:
    """What to scrub from any text before it is shown or stored, for a URL with a
    token: the URL itself, its password, and every token-like piece of it (10 or more
    characters, not a host name, not a plain number such as a chat id)."""
    url = url.strip()
    pieces = {url}
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password and len(password) >= 4:
        pieces.add(password)
    pieces.update(
        p
        for p in _PIECES.split(f"{url} {unquote(url)}")
        if len(p) >= MIN_PIECE and not p.isdigit() and not _safe_host(p)
    )
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, pieces: list[str]) -> str:
    for piece in pieces:
        text = text.replace(piece, "***")
    return text
