"""Downloads and re-encoding: caps, redirects re-checked, error classes."""

from __future__ import annotations

import pytest

from moonshot import images
from moonshot.errors import Rejected, TransientError
from tests.conftest import DripHost as Drip
from tests.conftest import make_image


def test_redirect_to_another_host_is_refused(image_server):
    image_server.routes["/r"] = (302, {"Location": "http://example.invalid/x.jpg"}, b"")
    with pytest.raises(Rejected, match="example.invalid is not allowed"):
        images.download(
            image_server.base + "/r", timeout=5, max_bytes=10**6, allowed_hosts=["127.0.0.1"]
        )


def test_redirect_within_allowed_host_is_followed(image_server, tmp_path):
    data = make_image(tmp_path / "a.jpg", fmt="JPEG").read_bytes()
    image_server.add("/final.jpg", data)
    image_server.routes["/r"] = (301, {"Location": "/final.jpg"}, b"")
    assert (
        images.download(
            image_server.base + "/r", timeout=5, max_bytes=10**6, allowed_hosts=["127.0.0.1"]
        )
        == data
    )


@pytest.mark.parametrize(
    "status, error",
    [
        (404, Rejected),
        (403, Rejected),
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
    ],
)
def test_status_classes(image_server, status, error):
    image_server.routes["/s"] = (status, {}, b"x")
    with pytest.raises(error, match=f"HTTP {status}"):
        images.download(image_server.base + "/s", timeout=5, max_bytes=10**6, allowed_hosts=[])


def test_declared_length_over_cap_is_refused_before_reading(image_server):
    image_server.routes["/big"] = (200, {"Content-Length": str(10**9)}, b"")
    with pytest.raises(Rejected, match="cap of 1000"):
        images.download(image_server.base + "/big", timeout=5, max_bytes=1000, allowed_hosts=[])


def test_undeclared_body_over_cap_is_refused(image_server):
    def chunked(handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(20):
            handler.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    image_server.routes["/stream"] = (200, {}, chunked)
    with pytest.raises(Rejected, match="larger than the cap"):
        images.download(image_server.base + "/stream", timeout=5, max_bytes=5000, allowed_hosts=[])


def test_connection_refused_is_transient():
    with pytest.raises(TransientError):
        images.download("http://127.0.0.1:9/x.jpg", timeout=2, max_bytes=1000, allowed_hosts=[])


def test_pixel_cap(tmp_path):
    data = make_image(tmp_path / "a.png", size=(1000, 1000), fmt="PNG").read_bytes()
    with pytest.raises(Rejected, match="1000x1000 pixels"):
        images.reencode(data, max_pixels=999_999)


def test_transparency_is_flattened_onto_white(tmp_path):
    from io import BytesIO

    from PIL import Image

    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buf = BytesIO()
    im.save(buf, "PNG")
    out = Image.open(BytesIO(images.reencode(buf.getvalue(), max_pixels=10**6)))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255)


# -- one deadline for the whole download (issue 16) ---------------------------------------
@pytest.mark.parametrize("mode", ["headers", "body", "stall", "trickle_redirects"])
def test_the_deadline_covers_the_whole_download(mode):
    import time

    host = Drip(mode)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="longer than 1 s .spool.download_timeout"):
            images.download(
                f"http://127.0.0.1:{host.port}/x.jpg", timeout=1, max_bytes=10**6, allowed_hosts=[]
            )
        took = time.monotonic() - started
    finally:
        host.close()
    assert took < 1.0 + 0.8, f"{mode}: cut off after {took:.2f} s, not at the 1 s deadline"


def test_another_thread_can_cut_a_download_off_at_once():
    import threading
    import time

    host = Drip("body")
    cancel = images.Cancel()
    threading.Timer(0.3, cancel.fire, args=("the service is stopping",)).start()
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="the service is stopping"):
            images.download(
                f"http://127.0.0.1:{host.port}/x.jpg",
                timeout=30,
                max_bytes=10**6,
                allowed_hosts=[],
                cancel=cancel,
            )
    finally:
        host.close()
    assert time.monotonic() - started < 1.5


def test_a_reused_connection_is_cut_off_too(image_server, tmp_path):
    """Keep-alive: the second download on a worker's session reuses the first one's
    connection, which must be attached to the second download's deadline."""
    import time

    data = make_image(tmp_path / "a.jpg", fmt="JPEG").read_bytes()
    image_server.add("/ok.jpg", data)

    def slow(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.2)

    image_server.routes["/slow.jpg"] = (200, {}, slow)
    http = images.new_session()
    opts = dict(max_bytes=10**6, allowed_hosts=[], session=http)
    assert images.download(image_server.base + "/ok.jpg", timeout=5, **opts) == data
    started = time.monotonic()
    with pytest.raises(TransientError, match="longer than 1 s"):
        images.download(image_server.base + "/slow.jpg", timeout=1, **opts)
    assert time.monotonic() - started < 1.8
    assert images.download(image_server.base + "/ok.jpg", timeout=5, **opts) == data  # usable


def test_the_pool_runs_downloads_side_by_side_and_gives_up_on_cancel():
    import time

    pool = images.Downloads(2)
    hosts = [Drip("stall"), Drip("stall")]
    for i, host in enumerate(hosts):
        url = f"http://127.0.0.1:{host.port}/x.jpg"
        pool.submit(
            i,
            "tag",
            lambda cancel, http, url=url: images.download(
                url, timeout=30, max_bytes=10**6, allowed_hosts=[], session=http, cancel=cancel
            ),
        )
    assert pool.room == 0 and pool.busy(0) and pool.busy(1)
    deadline = time.monotonic() + 5
    while sum(h.connections for h in hosts) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(h.connections for h in hosts) == 2  # both at once
    assert pool.cancel_all("stopping") == {0: "tag", 1: "tag"}
    assert pool.room == 2
    outcomes = []
    deadline = time.monotonic() + 3
    while len(outcomes) < 2 and time.monotonic() < deadline:
        outcomes += [o for _, _, o, _ in pool.results(timeout=0.1)]
    assert all(isinstance(o, TransientError) and "stopping" in str(o) for o in outcomes), outcomes
    for h in hosts:
        h.close()
