"""Downloads and re-encoding: caps, redirects re-checked, error classes."""

from __future__ import annotations

import pytest

from moonshot import images
from moonshot.errors import Rejected, TransientError
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
