"""Reading text off a fixed box of the screen (design.md invariant 6): RapidOCR on
onnxruntime, whose models ship inside the wheel, one thread, loaded once per process on
first use. Never reads the whole screen; never decides whether the text is right
(`readback` does)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageOps

# A box is cut to its ink plus a margin of PAD times the ink's height, and ink smaller than
# INK_HEIGHT is scaled up to it, before recognition. Measured (bench/ocr.py's renderings,
# the read-back rules on what was read): over 400 tickers and names (DejaVu Sans, Bold,
# Serif, Mono, Condensed, 10-20 px, 1x and 2x, six colour themes, tight or 340 px boxes)
# 312 were accepted read from the raw box, 394-398 cut to the ink; a margin of half the
# height read worse (391). Over 300 small ones (10-14 px at 1x) scaling to 32 px took the
# ink crop from 291 to 296.
PAD = 0.25
INK_HEIGHT = 32
# For the detector (read_block) text is scaled so a line is about this tall: at the boxes'
# own size it found the lines of 50 of 60 wrapped names, at 32 px all 60.
LINE_HEIGHT = 32
# A box whose every pixel is within this many grey levels of its background holds no text.
BLANK_CONTRAST = 24
# A piece of ink (connected) that spans this much of the box's width, or of its height at
# a side, and is a line or an outline (it fills at most FRAME_FILL of its bounding box) is
# a rule or a field's frame, not text: a Tk Entry's sunken frame read as '[' otherwise.
LINE_FILL = 0.8
FRAME_FILL = 0.3


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # 0..1 as the engine reports it for the line


BLANK = Reading("", 0.0)


class TextReader(Protocol):
    def read_line(self, image: Image.Image) -> Reading:
        """A known one-line box: recognition only (keeps spaces)."""
        ...

    def read_block(self, image: Image.Image) -> list[Reading]:
        """A box that may hold a wrapped name: detection + recognition, lines top to bottom."""
        ...


def _np():
    import numpy

    return numpy


def background(img: Image.Image) -> tuple[int, int, int]:
    """The box's most common colour (text covers far less of a box than its background)."""
    np = _np()
    a = np.asarray(img.convert("RGB"), dtype=np.uint32)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    v = int(values[counts.argmax()])
    return (v >> 16, (v >> 8) & 255, v & 255)


def _ink(img: Image.Image):
    """A mask of what differs from the background, without rules and a field's frame;
    None for a blank box."""
    import cv2

    np = _np()
    bg = np.asarray(background(img), dtype=np.int16)
    diff = np.abs(np.asarray(img.convert("RGB"), dtype=np.int16) - bg).max(axis=2)
    if diff.max() < BLANK_CONTRAST:
        return None
    ink = diff >= max(BLANK_CONTRAST, int(diff.max()) // 3)
    h, w = ink.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), 8)
    for i in range(1, count):
        x, y, cw, ch, area = (int(v) for v in stats[i])
        thin = area <= FRAME_FILL * cw * ch
        rule = cw >= LINE_FILL * w and (ch <= 4 or thin)
        side = ch >= LINE_FILL * h and (cw <= 4 or thin) and (x <= 2 or x + cw >= w - 2)
        if rule or side:
            ink[labels == i] = False
    return ink if ink.any() else None


def ink_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the ink, or None for a blank box."""
    ink = _ink(img)
    if ink is None:
        return None
    ys, xs = _np().nonzero(ink)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def prepare(img: Image.Image) -> Image.Image | None:
    """The text cut to its ink, small ink scaled up, with a margin of the background
    colour; None for a blank box."""
    img = img.convert("RGB")
    box = ink_box(img)
    if box is None:
        return None
    crop = img.crop(box)
    if crop.height < INK_HEIGHT:
        s = INK_HEIGHT / crop.height
        crop = crop.resize((max(1, round(crop.width * s)), INK_HEIGHT), Image.BICUBIC)
    return ImageOps.expand(crop, border=max(4, round(crop.height * PAD)), fill=background(img))


def _row_runs(ink) -> list[tuple[int, int]]:
    """Runs of rows that hold ink (a horizontal projection), top to bottom."""
    runs, start = [], None
    for y, on in enumerate([*ink.any(axis=1).tolist(), False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            runs.append((start, y))
            start = None
    return runs


def _lines(quads: list, height: int) -> list[tuple[int, int]]:
    """Detected text pieces grouped into lines (a piece whose vertical centre falls inside
    a line's extent joins it): the lines' row ranges, top to bottom."""
    spans = sorted(
        ((min(p[1] for p in q), max(p[1] for p in q)) for q in quads), key=lambda s: s[0] + s[1]
    )
    lines: list[list[float]] = []
    for top, bottom in spans:
        centre = (top + bottom) / 2
        if lines and lines[-1][0] <= centre <= lines[-1][1]:
            lines[-1] = [min(lines[-1][0], top), max(lines[-1][1], bottom)]
        else:
            lines.append([top, bottom])
    return [(max(0, int(t)), min(height, int(b + 0.999))) for t, b in lines]


class RapidReader:
    """The RapidOCR engine, one onnxruntime thread (the service shares a small Mac)."""

    def __init__(self):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            from moonshot.errors import PortUnavailable

            raise PortUnavailable(
                "reading the screen needs RapidOCR: pip install rapidocr_onnxruntime"
            ) from None
        # Global keys of its config.yaml: the thread counts are copied into the three
        # onnxruntime sessions; text_score 0 keeps low-confidence lines, so readback
        # refuses them by name instead of seeing a line silently missing.
        self._engine = RapidOCR(
            intra_op_num_threads=1,
            inter_op_num_threads=1,
            text_score=0.0,
            print_verbose=False,
            # Boxes are small: the detector's default (upscale until the short side is
            # 736 px) cost 0.6-1.3 s per name box and merged words; scale down only.
            det_limit_type="max",
            det_limit_side_len=960,
        )
        self._lock = threading.Lock()

    @staticmethod
    def _bgr(img: Image.Image):
        np = _np()
        return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])

    def read_line(self, image: Image.Image) -> Reading:
        prepared = prepare(image)
        if prepared is None:
            return BLANK
        with self._lock:
            result, _ = self._engine(
                self._bgr(prepared), use_det=False, use_cls=False, use_rec=True
            )
        if not result:
            return BLANK
        text, score = result[0][0], result[0][1]
        text = " ".join(str(text).split())
        return Reading(text, float(score) if text else 0.0)

    def read_block(self, image: Image.Image) -> list[Reading]:
        """Detection finds the lines; each line is then read as `read_line` reads one
        (the detector's tight crops lose the spaces between words)."""
        image = image.convert("RGB")
        ink = _ink(image)
        if ink is None:
            return []
        runs = _row_runs(ink)
        line = sorted(b - t for t, b in runs)[len(runs) // 2]
        if line < LINE_HEIGHT:
            s = LINE_HEIGHT / line
            image = image.resize(
                (max(1, round(image.width * s)), max(1, round(image.height * s))), Image.BICUBIC
            )
        with self._lock:
            result, _ = self._engine(self._bgr(image), use_det=True, use_cls=False, use_rec=False)
        if not result:
            return []
        out = []
        for top, bottom in _lines(result, image.height):
            reading = self.read_line(image.crop((0, top, image.width, bottom)))
            if reading.text:
                out.append(reading)
        return out

    def find_lines(self, image: Image.Image) -> list[tuple[Reading, tuple[int, int, int, int]]]:
        """Every piece of text the detector finds in a whole screenshot, each read as
        `read_line` reads one, with its box (left, top, right, bottom) in pixels. For
        `flow record`, which looks for where the app shows a coin's text once; a flow
        never runs this (detection over a screen costs 0.1-1 s)."""
        image = image.convert("RGB")
        with self._lock:
            result, _ = self._engine(self._bgr(image), use_det=True, use_cls=False, use_rec=False)
        out = []
        for quad in result or []:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            pad = 3  # the detector's boxes are tight; read_line finds the ink itself
            box = (
                max(0, int(min(xs)) - pad),
                max(0, int(min(ys)) - pad),
                min(image.width, int(max(xs) + 0.999) + pad),
                min(image.height, int(max(ys) + 0.999) + pad),
            )
            reading = self.read_line(image.crop(box))
            if reading.text:
                out.append((reading, box))
        return out


_reader: RapidReader | None = None
_reader_lock = threading.Lock()


def default_reader() -> TextReader:
    """The RapidOCR reader, created once per process (the model load is slow)."""
    global _reader
    with _reader_lock:
        if _reader is None:
            _reader = RapidReader()
        return _reader
