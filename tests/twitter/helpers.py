"""Local stand-ins for the ingest tests, on 127.0.0.1 only: a server for images and a
small X API v2 (recent search and mentions) with since_id, pagination, rate-limit
headers and bearer-token checking, recording every request it gets."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=95)
    return out.getvalue()


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _ImageHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        owner = self.server.owner  # type: ignore[attr-defined]
        body = owner.files.get(urlsplit(self.path).path)
        owner.hits.append(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ImageServer(_Server):
    def __init__(self, files: dict[str, bytes]):
        self.files, self.hits = dict(files), []
        super().__init__(_ImageHandler)


@dataclass
class XState:
    tweets: list[dict[str, Any]] = field(default_factory=list)  # each with its "includes"
    token: str = "test-bearer-token"
    requests: list[dict[str, Any]] = field(default_factory=list)
    remaining: list[int | None] = field(default_factory=list)  # x-rate-limit-remaining per request
    reset_at: int = 0
    fail_next: int = 0  # answer the next N requests with 429
    echo_auth: int = 0  # answer with this status and a title echoing the Authorization header


class _XHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        state: XState = self.server.owner.state  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        state.requests.append(
            {"path": url.path, "params": q, "auth": self.headers.get("Authorization")}
        )
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._send(
                401, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}
            )
        if state.echo_auth:
            return self._send(
                state.echo_auth, {"title": f"Bad {self.headers.get('Authorization')}"}
            )
        if state.fail_next:
            state.fail_next -= 1
            return self._send(429, {"title": "Too Many Requests", "status": 429}, remaining=0)
        if not (url.path == "/2/tweets/search/recent" or url.path.endswith("/mentions")):
            return self._send(404, {"title": "Not Found Error"})
        since = int(q.get("since_id", "0"))
        newer = sorted(
            (t for t in state.tweets if int(t["id"]) > since), key=lambda t: -int(t["id"])
        )
        size = int(q.get("max_results", "10"))
        start = int(q.get("next_token") or q.get("pagination_token") or "0")
        page = newer[start : start + size]
        body: dict[str, Any] = {"meta": {"result_count": len(page)}}
        if page:
            body["data"] = [{k: v for k, v in t.items() if k != "includes"} for t in page]
            users, media = {}, {}
            for t in page:
                for u in t["includes"].get("users", []):
                    users[u["id"]] = u
                for m in t["includes"].get("media", []):
                    media[m["media_key"]] = m
            body["includes"] = {"users": list(users.values()), "media": list(media.values())}
            body["meta"].update(newest_id=page[0]["id"], oldest_id=page[-1]["id"])
        if start + size < len(newer):
            body["meta"]["next_token"] = str(start + size)
        remaining = state.remaining.pop(0) if state.remaining else 100
        self._send(200, body, remaining=remaining)

    def _send(self, status: int, body: dict, remaining: int | None = None):
        state: XState = self.server.owner.state  # type: ignore[attr-defined]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if remaining is not None:
            self.send_header("x-rate-limit-limit", "450")
            self.send_header("x-rate-limit-remaining", str(remaining))
            self.send_header("x-rate-limit-reset", str(state.reset_at))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class XServer(_Server):
    def __init__(self, state: XState):
        self.state = state
        super().__init__(_XHandler)


def make_tweet(
    tweet_id: int, text: str, image_url: str, username: str = "alice_trades", followers: int = 5000
) -> dict[str, Any]:
    """A tweet as the X API v2 returns it with expansions, its includes attached."""
    key = f"3_{tweet_id}"
    return {
        "id": str(tweet_id),
        "text": text,
        "author_id": f"9{abs(hash(username)) % 10**8}",
        "created_at": "2024-11-18T08:30:00.000Z",
        "attachments": {"media_keys": [key]},
        "edit_history_tweet_ids": [str(tweet_id)],
        "includes": {
            "media": [{"media_key": key, "type": "photo", "url": image_url}],
            "users": [
                {
                    "id": f"9{abs(hash(username)) % 10**8}",
                    "username": username,
                    "public_metrics": {"followers_count": followers},
                }
            ],
        },
    }
