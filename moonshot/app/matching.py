"""Finding a reference image in a screenshot, and comparing the picker's thumbnail
with the coin's photo: normalized cross-correlation (OpenCV's TM_CCOEFF_NORMED, the
measure behind pyscreeze's `confidence`) on Pillow images. No screen access here."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageOps

from moonshot.app.flow import Rect

MIN_DETAIL = 4.0  # std-dev of grey levels below which a reference cannot be told apart


@dataclass(frozen=True)
class Match:
    rect: Rect  # in screenshot pixels
    score: float  # 1.0 = identical


def _cv():
    try:
        import cv2
        import numpy
    except ImportError:  # pragma: no cover - a dependency of moonshot
        from moonshot.errors import PortUnavailable

        raise PortUnavailable(
            "image matching needs OpenCV: pip install opencv-python-headless"
        ) from None
    return cv2, numpy


def _array(img: Image.Image):
    _, np = _cv()
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def detail(img: Image.Image) -> float:
    """Grey-level spread: a flat patch matches anywhere, so it is refused as a reference."""
    _, np = _cv()
    return float(np.asarray(img.convert("L"), dtype=np.float32).std())


def locate(
    needle: Image.Image, haystack: Image.Image, scale: float = 1.0, region: Rect | None = None
) -> Match | None:
    """The best place for `needle` (resized by `scale`) in `haystack`, or None when it
    does not fit; callers compare `score` with their confidence."""
    cv2, np = _cv()
    if abs(scale - 1.0) > 0.01:
        w, h = max(1, round(needle.width * scale)), max(1, round(needle.height * scale))
        needle = needle.resize((w, h), Image.LANCZOS)
    ox = oy = 0
    if region is not None:
        ox, oy = max(0, int(region.x)), max(0, int(region.y))
        haystack = haystack.crop((ox, oy, int(region.x + region.w), int(region.y + region.h)))
    if needle.width > haystack.width or needle.height > haystack.height:
        return None
    result = cv2.matchTemplate(_array(haystack), _array(needle), cv2.TM_CCOEFF_NORMED)
    result = np.nan_to_num(result, nan=0.0, posinf=0.0, neginf=0.0)
    _, best, _, (x, y) = cv2.minMaxLoc(result)
    return Match(Rect(ox + x, oy + y, needle.width, needle.height), float(best))


def fill(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo scaled and centre-cropped to fill `size`, as pickers draw thumbnails."""
    return ImageOps.fit(photo.convert("RGB"), size, Image.LANCZOS)


def photo_score(photo: Image.Image, shown: Image.Image) -> float:
    """How well the thumbnail on screen matches the coin's photo (1.0 = identical)."""
    cv2, np = _cv()
    w, h = max(8, shown.width), max(8, shown.height)
    a = _array(fill(photo, (w, h)))
    b = _array(shown.convert("RGB").resize((w, h), Image.LANCZOS))
    result = cv2.matchTemplate(b, a, cv2.TM_CCOEFF_NORMED)
    value = float(np.nan_to_num(result, nan=0.0)[0][0])
    if np.asarray(a).std() < MIN_DETAIL:  # a flat photo: compare colours instead
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() / 255.0
        value = 1.0 - float(diff) * 4
    return value
