"""A recorded session (`recorder`) turned into a complete flow, for `moonshot flow record`:
each click a step with a reference crop around it (or its position, where the crop would
not be unique or would show the coin's own text or photo), each field typed into a
`type` step for the name or the ticker, each new screen a `wait` on what appeared, the
picker's thumbnail a `check_photo`, the read-back steps on the last screen that shows the
coin (found by OCR and by matching the coin's photo), the outcome and `[[reset]]`.

It decides nothing about money: which click is irreversible is the person's answer
(`irreversible`), never a guess. No screen, no input here: frames in, a document out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tomlkit
from PIL import Image

from moonshot.app import matching as imagematch
from moonshot.app import readback
from moonshot.app.flow import NAME_RE, Rect, valid_address
from moonshot.app.ocr import Reading
from moonshot.app.recorder import SESSION, changed_much, element_box

ADDRESS_LIKE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{20,}")  # a Solana address, as OCR reads it
UNIQUE = 0.8  # a reference whose second-best place scores this much would be ambiguous
APART = 0.8  # a wait image must score less than this on the screen before it
PHOTO_LIKE = 160  # distinct colours (5 bits a channel) above which a crop is a photo
CLICK_BOX = (96, 32)  # points: the crop around a click when its element has no edge
BUTTON = (420, 90)  # points: a face larger than this around a click is a card, not a button
MARGIN = 6  # points around an element's edge in its crop
COPY_WAIT = 3.0  # seconds after a click in which a copied address belongs to it
TERMINAL_KEYS = 1.5  # seconds before the person's Enter in which keys are the terminal's
# Buttons an error screen has as often as a success screen: never the success image
# when the screen shows anything else of its own.
GENERIC = frozenset(
    [
        "close",
        "ok",
        "okay",
        "done",
        "back",
        "cancel",
        "continue",
        "next",
        "dismiss",
        "got-it",
        "x",
        "yes",
        "no",
        "retry",
        "try-again",
        "home",
        "finish",
    ]
)


class LineFinder(Protocol):
    def find_lines(self, image: Image.Image) -> list[tuple[Reading, tuple[int, int, int, int]]]:
        """Every piece of text in the image with its box in pixels (ocr.RapidReader)."""
        ...


class ProposeError(Exception):
    """The recording cannot become a flow; the message says what to do (one line)."""


@dataclass
class Coin:
    name: str
    ticker: str
    photo: Image.Image


@dataclass
class Click:
    n: int  # the number the person sees in the list (launch part), or 0 for a pointed button
    t: float
    at: tuple[float, float]  # points from the window's top-left
    before: Image.Image  # the window just before the click
    part: str  # launch | reset
    typed: dict | None = None
    copied: str | None = None  # a Solana address that reached the clipboard after it
    after: Image.Image | None = None  # the screen the next action was taken on
    plain: Image.Image | None = None  # `before` without the pointer's hover highlight
    rested: bool = False  # no plain look: the pointer was on the element since it showed
    pointer: tuple[float, float] | None = None  # where the pointer was in `look`

    @property
    def look(self) -> Image.Image:
        """The frame reference crops come from: the screen as the runner will see it."""
        return self.plain if self.plain is not None else self.before


@dataclass
class Session:
    folder: Path
    app: str
    window: Rect
    ratio: float
    events: list[dict]
    screens: list[tuple[float, Image.Image]]
    meta: dict[str, Any]

    @classmethod
    def load(cls, folder: Path) -> Session:
        path = Path(folder) / SESSION
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProposeError(f"no recorded session in {folder} ({type(exc).__name__})") from None

        def img(name: str) -> Image.Image:
            with Image.open(Path(folder) / name) as im:
                return im.convert("RGB")

        for ev in body["events"]:
            ev["image"] = img(ev["frame"]) if ev.get("frame") else None
            ev["plain_image"] = img(ev["plain"]) if ev.get("plain") else None
        screens = [(s["t"], img(s["frame"])) for s in body.get("screens", [])]
        known = {"app", "window", "pixel_ratio", "events", "screens"}
        return cls(
            Path(folder),
            body["app"],
            Rect(*body["window"]),
            float(body["pixel_ratio"]),
            body["events"],
            screens,
            {k: v for k, v in body.items() if k not in known},
        )

    def clicks(self) -> tuple[list[Click], list[Click], Click | None, Image.Image | None]:
        """(launch clicks, reset clicks, the pointed button or None, the screen when the
        launch part ended). Keys typed into the terminal to answer are dropped."""
        part, launch, reset, mark, end = "launch", [], [], None, None
        phases = [e["t"] for e in self.events if e["kind"] == "phase"]
        # Recordings since the way back was asked in two parts: the clicks that took the
        # app forward to a deep screen ("deep-end" ends them) are not part of [[reset]].
        two_part = self.two_part
        last: Click | None = None
        # In time order: a listener thread may append an event a little after another
        # thread appended a later one (a click is kept with its frames first).
        for ev in sorted(self.events, key=lambda e: e["t"]):
            kind = ev["kind"]
            near_phase = any(0 <= p - ev["t"] <= TERMINAL_KEYS for p in phases)
            if kind == "phase":
                if ev["text"] == "launch-end":
                    part = "forward" if two_part else "reset"
                    end = self._screen_at(ev["t"])
                elif ev["text"] == "deep-end":
                    part = "reset"
                last = None
            elif kind == "click" and ev.get("inside", True) and ev.get("image") is not None:
                c = Click(0, ev["t"], (ev["x"], ev["y"]), ev["image"], part)
                c.plain, c.rested = ev.get("plain_image"), bool(ev.get("rested"))
                c.pointer = _pair(ev.get("plain_pointer" if c.plain else "pointer"))
                if part != "forward":  # going deep, before the way back: not a step
                    (launch if part == "launch" else reset).append(c)
                last = c
            elif kind == "click":
                last = None
            elif kind == "mark" and ev.get("image") is not None:
                mark = Click(0, ev["t"], (ev["x"], ev["y"]), ev["image"], "launch")
                mark.plain, mark.rested = ev.get("plain_image"), bool(ev.get("rested"))
                mark.pointer = _pair(ev.get("plain_pointer" if mark.plain else "pointer"))
            elif kind == "type" and last is not None:
                last.typed = ev
            elif kind == "key" and last is not None and not near_phase:
                raise ProposeError(
                    f"you pressed {ev['text'].capitalize()} in the app after click"
                    f" {len(launch)}; a flow clicks instead of pressing keys: click the next"
                    " field or button, and record again"
                )
            elif kind == "clipboard" and valid_address(ev["text"]):
                owner = next((c for c in reversed(launch) if 0 <= ev["t"] - c.t <= COPY_WAIT), None)
                if owner is not None:
                    owner.copied = valid_address(ev["text"])
        for i, c in enumerate(launch, 1):
            c.n = i
        for group, tail in ((launch, end), (reset, self.screens[-1][1] if self.screens else None)):
            for a, b in zip(group, group[1:], strict=False):
                a.after = b.look
            if group:
                group[-1].after = tail
        return launch, reset, mark, end

    @property
    def two_part(self) -> bool:
        """Whether the person said where the way back began (a "deep-end" phase): then
        every click after it is part of the way back, as the person did it."""
        return any(e["kind"] == "phase" and e["text"] == "deep-end" for e in self.events)

    def _screen_at(self, t: float) -> Image.Image | None:
        """The last settled screen at time t (what showed when the person pressed Enter)."""
        shown = [img for st, img in self.screens if st <= t]
        return shown[-1] if shown else None

    def settle_delay(self, c: Click, shown: Image.Image, ignore=()) -> float:
        """Seconds from a click until the screen `shown` (the next one) appeared."""
        for st, img in self.screens:
            if st > c.t and not changed_much(img, shown, ignore):
                return st - c.t
        return 0.0


def _pair(value) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if value else None


# -- looking at frames ---------------------------------------------------------------------
def _np():
    import numpy

    return numpy


def _box_overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def photo_like(img: Image.Image) -> bool:
    np = _np()
    a = np.asarray(img.convert("RGB"), dtype=np.uint8) >> 3
    packed = (a[..., 0].astype(np.int32) << 10) | (a[..., 1].astype(np.int32) << 5) | a[..., 2]
    return len(np.unique(packed)) > PHOTO_LIKE


def second_best(frame: Image.Image, crop: Image.Image, own: tuple[int, int, int, int]) -> float:
    """The best score of `crop` anywhere in `frame` away from its own place."""
    import cv2

    np = _np()
    if crop.width > frame.width or crop.height > frame.height:
        return 0.0
    res = cv2.matchTemplate(np.asarray(frame), np.asarray(crop), cv2.TM_CCOEFF_NORMED)
    res = np.nan_to_num(res, nan=0.0, posinf=0.0, neginf=0.0)
    x0, y0 = own[0], own[1]
    w, h = crop.width, crop.height
    res[max(0, y0 - h // 2) : y0 + h // 2 + 1, max(0, x0 - w // 2) : x0 + w // 2 + 1] = -1
    return float(res.max()) if res.size else 0.0


def best_score(frame: Image.Image, crop: Image.Image) -> float:
    m = imagematch.locate(crop, frame)
    return m.score if m else 0.0


# -- the coin on a screen ------------------------------------------------------------------
@dataclass
class Found:
    box: tuple[int, int, int, int]  # pixels in the frame: the text's row, widened
    lines: int = 1
    text: str = ""
    text_box: tuple[int, int, int, int] | None = None  # the text itself


def _row_span(
    frame: Image.Image, box, others: list[tuple[int, int, int, int]], pad: int
) -> tuple[int, int, int, int]:
    """The box widened along its row up to the next other text (or the window's edge), so
    that a longer name or ticker than the test coin's still fits; a margin above/below."""
    left, right = pad, frame.width - pad
    for o in others:
        if o == box or not (o[1] < box[3] and box[1] < o[3]):
            continue
        if o[2] <= box[0]:
            left = max(left, o[2] + pad)
        elif o[0] >= box[2]:
            right = min(right, o[0] - pad)
    m = max(3, (box[3] - box[1]) // 4)
    return (
        min(left, box[0]),
        max(0, box[1] - m),
        max(right, box[2]),
        min(frame.height, box[3] + m),
    )


def _split(reading: Reading, box, wanted: str) -> tuple[int, int, int, int] | None:
    """Where `wanted` sits inside a detected line that holds more ("Ticker: $MOON"), by
    the share of characters before it (checked again by reading the part)."""
    text = reading.text
    at = text.upper().rfind(wanted.upper())
    if at < 0 or len(text) == 0:
        return None
    width = box[2] - box[0]
    start = box[0] + round(width * at / len(text))
    if at > 0 and text[at - 1] == "$":
        start = box[0] + round(width * (at - 1) / len(text))
    end = box[0] + round(width * (at + len(wanted)) / len(text))
    return (max(box[0], start - 3), box[1], min(box[2], end + 3), box[3])


def find_coin_text(
    frame: Image.Image,
    coin: Coin,
    finder: LineFinder,
    reader,
    min_confidence: float,
    lines: list | None = None,
    walls: list[tuple[int, int, int, int]] = (),
) -> tuple[Found | None, Found | None, list[tuple[int, int, int, int]]]:
    """(where the ticker shows, where the name shows, every box that shows coin text).
    A read box widens along its row up to other text or one of the `walls` (the coin's
    picture beside it: what OCR reads in a photo differs for every coin)."""
    lines = finder.find_lines(frame) if lines is None else lines
    boxes = [b for _, b in lines]
    ticker = name = None
    coin_boxes = []
    for reading, box in lines:
        candidates = [(reading, box)]
        for wanted in (coin.ticker, coin.name):
            part = _split(reading, box, wanted)
            if part and part != box:
                candidates.append((reader.read_line(frame.crop(part)), part))
        for r, b in candidates:
            if (
                ticker is None
                and readback.compare_ticker(coin.ticker, r, min_confidence=min_confidence).ok
            ):
                ticker = Found(b, 1, r.text)
                coin_boxes.append(b)
            elif (
                name is None
                and readback.compare_name(coin.name, [r], min_confidence=min_confidence).ok
            ):
                name = Found(b, 1, r.text)
                coin_boxes.append(b)
    if name is None:  # a name wrapped onto two lines
        for (r1, b1), (r2, b2) in zip(lines, lines[1:], strict=False):
            stacked = abs(b1[0] - b2[0]) < 12 and 0 <= b2[1] - b1[3] < (b1[3] - b1[1])
            if (
                stacked
                and readback.compare_name(coin.name, [r1, r2], min_confidence=min_confidence).ok
            ):
                union = (min(b1[0], b2[0]), b1[1], max(b1[2], b2[2]), b2[3])
                name = Found(union, 2, f"{r1.text} / {r2.text}")
                coin_boxes.append(union)
                break
    pad = 6
    for found in (ticker, name):
        if found is not None:
            others = [b for b in [*boxes, *walls] if not _box_overlaps(b, found.box)]
            found.text_box = found.box
            found.box = _row_span(frame, found.box, others, pad)
    return ticker, name, coin_boxes


def _needle(photo: Image.Image, size: int, shape: str) -> Image.Image:
    if shape == "fill":
        return imagematch.fill(photo, (size, size))
    s = size / max(photo.size)
    return photo.convert("RGB").resize(
        (max(8, round(photo.width * s)), max(8, round(photo.height * s))), Image.LANCZOS
    )


def _best(hay, needle, region=None):
    import cv2

    np = _np()
    x0, y0 = 0, 0
    if region is not None:
        x0, y0 = max(0, region[0]), max(0, region[1])
        hay = hay[y0 : region[3], x0 : region[2]]
    needle = np.asarray(needle)
    if needle.shape[1] > hay.shape[1] or needle.shape[0] > hay.shape[0]:
        return None
    res = np.nan_to_num(cv2.matchTemplate(hay, needle, cv2.TM_CCOEFF_NORMED), nan=0.0)
    _, score, _, (x, y) = cv2.minMaxLoc(res)
    return float(score), x + x0, y + y0


CANDIDATES = 4  # places the brightness pass hands to the colour refinement
# The coarse pass compares brightness only for a photo whose brightness keeps this share of
# its colours' variation (a gradient of two hues of one brightness is flat in grey).
GRAY_SHARE = 0.6


def brightness_share(photo: Image.Image) -> float:
    """The photo's spread in brightness over its spread in colour (0: one brightness)."""
    np = _np()
    rgb = np.asarray(photo.convert("RGB").resize((64, 64)), dtype=float)
    gray = np.asarray(photo.convert("L").resize((64, 64)), dtype=float)
    spread = np.sqrt(((rgb - rgb.mean(axis=(0, 1))) ** 2).sum(axis=2).mean() / 3)
    return float(gray.std() / spread) if spread > 1.0 else 0.0


class PhotoSearch:
    """Where the coin's photo is drawn (a thumbnail or a preview: filled into a square, or
    fitted whole), at any size from 40 px to half the window: searched at half size, then
    refined; the place is kept when `photo_score` there reaches `threshold`.

    One search serves every frame of a recording: the photo at each size and shape (the
    needles) is made once, not once per frame, and the coarse pass, which only picks a
    size, a shape and a place for the refinement, compares brightness (`gray`), a third
    of the work of comparing colours, for a photo whose brightness shows its detail
    (GRAY_SHARE), and hands its best few places to the refinement in colour."""

    def __init__(self, photo: Image.Image, threshold: float, *, gray: bool = True, keep=True):
        self.photo = photo.convert("RGB")
        self.threshold = threshold
        self.gray = gray and brightness_share(self.photo) >= GRAY_SHARE
        self._needles: dict[tuple[int, str, bool], Any] | None = {} if keep else None

    def needle(self, size: int, shape: str, gray: bool = False):
        key = (size, shape, gray)
        if self._needles is not None and key in self._needles:
            return self._needles[key]
        img = _needle(self.photo, size, shape)
        out = _np().asarray(img.convert("L") if gray else img)
        if self._needles is not None:
            self._needles[key] = out
        return out

    def _candidates(self, found: list) -> list:
        """The coarse pass's best places to refine: in colour the best one; in brightness
        the best few apart from each other (a gradient of hues is flat in brightness, and
        its best place there can be another), which the refinement, in colour, decides."""
        found = sorted(found, key=lambda f: -f[0])
        if not self.gray:
            return found[:1]
        out: list = []
        for f in found:
            if all(abs(f[1] - o[1]) + abs(f[2] - o[2]) > 6 or f[4] != o[4] for o in out):
                out.append(f)
            if len(out) == CANDIDATES:
                break
        return out

    def __call__(self, frame: Image.Image) -> tuple[tuple[int, int, int, int], float] | None:
        np = _np()
        rgb = frame.convert("RGB")
        small = rgb.resize((frame.width // 2, frame.height // 2), Image.BILINEAR)
        hay_small = np.asarray(small.convert("L") if self.gray else small)
        hay = np.asarray(rgb)
        found = []
        for size in range(20, min(small.width, small.height) // 2 + 1, 3):
            for shape in ("fill", "fit"):
                got = _best(hay_small, self.needle(size, shape, self.gray))
                if got:
                    found.append((*got, size, shape))
        best = None
        for _, cx, cy, size, shape in self._candidates(found):
            for full in range(2 * size - 5, 2 * size + 6):
                needle = self.needle(full, shape)
                h, w = needle.shape[:2]
                area = (2 * cx - 8, 2 * cy - 8, 2 * cx + w + 8, 2 * cy + h + 8)
                got = _best(hay, needle, area)
                if got and (best is None or got[0] > best[0]):
                    best = (got[0], (got[1], got[2], got[1] + w, got[2] + h))
        if best is None:
            return None
        box = best[1]
        score = imagematch.photo_score(self.photo, frame.crop(box))
        return (box, score) if score >= self.threshold else None


# -- choosing reference images -------------------------------------------------------------
def good_reference(frame: Image.Image, box, avoid: list, before: Image.Image | None = None) -> bool:
    """A crop that will be found again, only here: detailed, not a photo, clear of the
    coin's text and picture, unique on its screen, and (for a wait) not on the screen
    before it."""
    if any(_box_overlaps(box, a) for a in avoid):
        return False
    crop = frame.crop(box)
    if crop.width < 12 or crop.height < 10:
        return False
    if imagematch.detail(crop) < 2 * imagematch.MIN_DETAIL or photo_like(crop):
        return False
    if second_best(frame, crop, box) >= UNIQUE:
        return False
    return before is None or best_score(before, crop) < APART


def components(frame: Image.Image, ratio: float, depth: int = 1) -> list[tuple[int, int, int, int]]:
    """The boxes of what is drawn on the window's background: words merged into lines,
    a button with its face, an icon; top to bottom. Inside a large one (a card, a dialog)
    also what is drawn on its own background, so a title inside a dialog can be chosen
    without the rest of it."""
    import cv2

    np = _np()
    a = np.asarray(frame.convert("RGB"), dtype=np.int32)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    bg = int(values[counts.argmax()])
    bg_rgb = np.array([bg >> 16, (bg >> 8) & 255, bg & 255], dtype=np.int32)
    ink = (np.abs(a - bg_rgb).max(axis=2) > 24).astype(np.uint8)
    kernel = np.ones((max(1, round(3 * ratio)), max(1, round(9 * ratio))), np.uint8)
    merged = cv2.dilate(ink, kernel)
    n, _, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, _ = (int(v) for v in stats[i])
        # Undo the dilation's growth: shrink to the ink inside.
        ys, xs = np.nonzero(ink[y : y + h, x : x + w])
        if len(xs) == 0:
            continue
        box = (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)
        if box[2] - box[0] >= 12 * ratio and box[3] - box[1] >= 8 * ratio:
            out.append(box)
            big = box[2] - box[0] > 100 * ratio and box[3] - box[1] > 60 * ratio
            if depth and big:
                inner = components(frame.crop(box), ratio, depth - 1)
                out += [
                    (box[0] + b[0], box[1] + b[1], box[0] + b[2], box[1] + b[3])
                    for b in inner
                    if (b[2] - b[0], b[3] - b[1]) != (box[2] - box[0], box[3] - box[1])
                ]
    return sorted(out, key=lambda b: (b[1], b[0]))


def widened(box, m: int, frame: Image.Image) -> tuple[int, int, int, int]:
    """A box grown by m pixels on each side, kept inside the frame."""
    return (
        max(0, box[0] - m),
        max(0, box[1] - m),
        min(frame.width, box[2] + m),
        min(frame.height, box[3] + m),
    )


def distinctive(
    frame: Image.Image,
    ratio: float,
    avoid: list,
    before: Image.Image | None = None,
    others: list[Image.Image] = (),
    prefer: Callable[[Image.Image], bool] | None = None,
) -> tuple[int, int, int, int] | None:
    """A reference crop that tells this screen from the one `before` it and from the
    `others` of the session: the top-most drawn thing (a title, a button) that is
    detailed, unique here, not the coin's, and on none of those; with a margin. With
    `prefer`, the top-most such crop it likes, else the top-most."""
    first = None
    np = _np()
    if before is not None and before.size == frame.size:
        diff = (
            np.abs(
                np.asarray(frame.convert("L"), dtype=np.int16)
                - np.asarray(before.convert("L"), dtype=np.int16)
            )
            > 24
        )
    else:
        diff = np.ones((frame.height, frame.width), bool)
    m = round(4 * ratio)
    for box in components(frame, ratio):
        w, h = box[2] - box[0], box[3] - box[1]
        if w > 0.9 * frame.width or h > 0.3 * frame.height:
            continue
        # Unchanged since the screen before: not what tells them apart (a label that
        # changed on a button that stayed, "Mint" to "Copy address", changes ~10 %).
        if diff[box[1] : box[3], box[0] : box[2]].mean() < 0.05:
            continue
        grown = widened(box, m, frame)
        if good_reference(frame, grown, avoid, before) and all(
            best_score(o, frame.crop(grown)) < APART for o in others
        ):
            if prefer is None or prefer(frame.crop(grown)):
                return grown
            first = first or grown
    return first


def click_reference(
    frame: Image.Image, point: tuple[int, int], ratio: float, avoid: list
) -> tuple[tuple[int, int, int, int], bool]:
    """The crop around a click, centred on it (so the runner, clicking the centre of
    where it finds the image, clicks the same spot), and whether it is a good reference."""
    px, py = point
    elem = element_box(frame, point)
    if (
        elem is not None
        and (elem[2] - elem[0]) * (elem[3] - elem[1]) > (BUTTON[0] * BUTTON[1]) * ratio**2
    ):
        # A card or a dialog of the button's own colour: the button is what is drawn
        # around the point inside it (its label), the smallest such thing.
        inside = [b for b in components(frame, ratio) if b[0] <= px < b[2] and b[1] <= py < b[3]]
        inside = [
            b
            for b in inside
            if (b[2] - b[0]) * (b[3] - b[1]) < (elem[2] - elem[0]) * (elem[3] - elem[1])
        ]
        elem = min(inside, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if inside else None
    m = round(MARGIN * ratio)
    if elem is not None:
        hw = max(px - elem[0], elem[2] - px) + m
        hh = max(py - elem[1], elem[3] - py) + m
    else:
        hw, hh = round(CLICK_BOX[0] * ratio / 2), round(CLICK_BOX[1] * ratio / 2)
    hw = min(hw, px, frame.width - px)
    hh = min(hh, py, frame.height - py)
    box = (px - hw, py - hh, px + hw, py + hh)
    return box, hw >= 8 and hh >= 6 and good_reference(frame, box, avoid)


# -- naming --------------------------------------------------------------------------------
def slug(text: str, limit: int = 24) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "-".join(words)[:limit].strip("-")
    return out


class Names:
    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, base: str) -> str:
        base = base.strip("-_") or "step"
        if not NAME_RE.fullmatch(base):
            base = "step"
        name, n = base, 2
        while name in self.used:
            name = f"{base[:36]}-{n}"
            n += 1
        self.used.add(name)
        return name


# -- the proposal --------------------------------------------------------------------------
@dataclass
class Row:
    """One step for the document: its keys in order, a comment (written after the key
    `note_on`, else after the last one), and the screen it was captured on."""

    section: str
    keys: dict[str, Any]
    comment: str = ""
    screen: Image.Image | None = None
    image: Image.Image | None = None  # the reference crop to write as keys["image"]
    screen_id: int = 0  # which distinct screen it is on (0: the start screen)
    note_on: str = ""

    @property
    def name(self) -> str:
        return self.keys["name"]


@dataclass
class Proposal:
    rows: list[Row]
    window: Rect
    ratio: float
    notes: list[str] = field(default_factory=list)

    def images(self) -> dict[str, Image.Image]:
        return {r.keys["image"]: r.image for r in self.rows if r.image is not None}

    def screens(self) -> dict[str, Image.Image]:
        return {r.name: r.screen for r in self.rows if r.screen is not None}


def _pt(v: float, ratio: float) -> float:
    return round(v / ratio, 1)


def apart(a: list[float], b: list[float], gap: float = 1.0) -> bool:
    """Two read boxes [x, y, w, h] on one screen that overlap: each is cut to end halfway
    into the overlap, the upper one's bottom, the lower one's top (in place). True when
    they overlapped. A box that holds the top of the next line reads it too."""
    if a[0] >= b[0] + b[2] or b[0] >= a[0] + a[2]:
        return False
    up, down = (a, b) if a[1] + a[3] / 2 <= b[1] + b[3] / 2 else (b, a)
    top, bottom = down[1], up[1] + up[3]
    if bottom <= top:
        return False
    mid = (top + bottom) / 2
    up[3] = max(1.0, mid - gap / 2 - up[1])
    down[3] = max(1.0, down[1] + down[3] - (mid + gap / 2))
    down[1] = mid + gap / 2
    return True


def _region(box, ratio: float) -> list[float]:
    return [
        _pt(box[0], ratio),
        _pt(box[1], ratio),
        _pt(box[2] - box[0], ratio),
        _pt(box[3] - box[1], ratio),
    ]


class Proposer:
    def __init__(
        self,
        session: Session,
        coin: Coin,
        finder: LineFinder,
        reader,
        *,
        min_confidence: float = 0.8,
        photo_confidence: float = 0.8,
        timeout: float = 10.0,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.s, self.coin, self.finder, self.reader = session, coin, finder, reader
        self.progress = progress  # (screens read, of how many): the slow part, told
        self.min_confidence = min_confidence
        self.photo_confidence = photo_confidence
        self.timeout = timeout
        self.r = session.ratio
        self.names = Names()
        self.notes: list[str] = []
        self._avoid: dict[int, list] = {}
        self._photos: dict[int, Any] = {}
        self._photo_search = PhotoSearch(coin.photo, photo_confidence)
        self._screens: list[Image.Image] = []
        self._waits: list[Row] = []  # wait/verify rows so far: their images may be reused
        self._frames: list[Image.Image] = []  # every frame of the session, for avoid()
        self._ids: dict[int, int] = {}
        # Frames with an element in its hover look (the pointer rested on it): id ->
        # (the point, window points; the element's box, pixels).
        self._rest: dict[int, tuple[tuple[float, float], tuple[int, int, int, int]]] = {}

    # -- what each screen shows --------------------------------------------------------------
    def screen_id(self, img: Image.Image) -> int:
        """Distinct screens get numbers in the order the launch first shows them (0: the
        start screen): the coin's text and photo and a focus ring make no new screen.
        check = false goes on the images of screens other than 0."""
        key = id(img)
        if key in self._ids:
            return self._ids[key]
        for i, known in enumerate(self._screens):
            ignore = self.coin_boxes(known) + self.coin_boxes(img) + self._rested(known, img)
            if not changed_much(known, img, ignore):
                self._ids[key] = i
                return i
        self._screens.append(img)
        self._ids[key] = len(self._screens) - 1
        return self._ids[key]

    def same_screen(self, a: Image.Image, b: Image.Image) -> bool:
        return self.screen_id(a) == self.screen_id(b)

    def avoid(self, img: Image.Image) -> list:
        """Where a reference image must not be on this screen: where it, or the same
        screen at another moment, shows the coin (a tile that later holds the photo, a
        field that later holds the name): such a place looks different for every coin."""
        sid = self.screen_id(img)
        out = list(self.coin_boxes(img))
        for other in self._frames:
            if other is not img and self.screen_id(other) == sid:
                out += self.coin_boxes(other)
        return out

    def coin_boxes(self, img: Image.Image) -> list:
        """Boxes of this frame that show the coin itself (its text, its photo) or a token
        address (another at every launch)."""
        key = id(img)
        if key not in self._avoid:
            lines = self.finder.find_lines(img)
            _, _, boxes = find_coin_text(img, self.coin, self.finder, self.reader, 0.5, lines)
            # A token address differs at every launch: never a reference either. Nor a
            # line that holds the coin's text among other words ("$TEST1 is live"),
            # whether or not the part could be read back on its own.
            boxes += [
                b
                for r, b in lines
                if ADDRESS_LIKE.search(r.text.replace(" ", "")) or self._holds_coin(r.text)
            ]
            photo = self.photo_on(img)
            self._avoid[key] = [*boxes, self._grown(photo[0], img)] if photo else boxes
        return self._avoid[key]

    def _grown(self, box, img: Image.Image) -> tuple[int, int, int, int]:
        """A found picture's box with its edge: the search's box can be a few pixels
        inside the drawn picture (a ring of it would count as a change of screen)."""
        return widened(box, max(2, round(0.03 * max(box[2] - box[0], box[3] - box[1]))), img)

    def _holds_coin(self, text: str) -> bool:
        """Whether a line of OCR text holds the coin's ticker or name (spaces, case and
        the look-alike letters aside)."""
        line = readback.fold(text)
        return any(
            len(v) >= 2 and readback.fold(v) in line for v in (self.coin.ticker, self.coin.name)
        )

    def photo_on(self, img: Image.Image):
        """Where the coin's photo shows on this screen (cached: the search is the slow part)."""
        key = id(img)
        if key not in self._photos:
            self._photos[key] = self._photo_search(img)
        return self._photos[key]

    def _crop_name(self, img: Image.Image, box, prefix: str, fallback: str) -> str:
        reading = self.reader.read_line(img.crop(box))
        words = slug(reading.text) if reading.confidence >= 0.9 else ""
        return self.names(f"{prefix}-{words}" if len(words) >= 2 else fallback)

    def note_rest(self, c: Click) -> None:
        """Remember the element the pointer was over in this click's frame (it may show
        its hover look there: the clicked button when the pointer rested on it, or a
        button the pointer had just left)."""
        at = c.pointer or (c.at if c.rested else None)
        if at is None:
            return
        box = element_box(c.look, (round(at[0] * self.r), round(at[1] * self.r)))
        if box is not None:
            self._rest[id(c.look)] = (at, box)

    def _rested(self, *frames: Image.Image) -> list:
        """The boxes of elements in their hover look in these frames (no new screen)."""
        return [self._rest[id(f)][1] for f in frames if id(f) in self._rest]

    def _hovered(self, keys: dict, frame: Image.Image, box) -> None:
        """`hover` on a step whose crop holds an element in its hover look."""
        rest = self._rest.get(id(frame))
        if rest is not None and _box_overlaps(box, rest[1]):
            keys["hover"] = [round(rest[0][0], 1), round(rest[0][1], 1)]

    # -- rows --------------------------------------------------------------------------------
    def _click_row(self, c: Click, section: str, fallback: str, *, by_image=True, **extra) -> Row:
        point = (round(c.at[0] * self.r), round(c.at[1] * self.r))
        look = c.look
        box, good = click_reference(look, point, self.r, self.avoid(look))
        name = (
            self._crop_name(look, box, "tap", fallback)
            if good and by_image
            else self.names(fallback)
        )
        keys: dict[str, Any] = {"name": name, "action": "click"}
        row = Row(section, keys, screen=look, screen_id=self.screen_id(c.look))
        if good and by_image:
            keys["image"] = f"{name}.png"
            row.image = look.crop(box)
            self._hovered(keys, look, box)
        else:
            keys["at"] = [round(c.at[0], 1), round(c.at[1], 1)]
            row.note_on = "at"
            row.comment = (
                "a field: clicked by position (fields look alike and hold changing text)"
                if not by_image
                else "clicked by position: an image here would not be unique, or shows the coin"
            )
        keys.update(extra)
        return row

    def generic(self, crop: Image.Image) -> bool:
        """Whether a crop is a button any screen may have (Close, OK, Done)."""
        reading = self.reader.read_line(crop)
        return slug(reading.text) in GENERIC

    def steady(self, crop: Image.Image) -> bool:
        """Whether a crop holds no figure (a character counter, a balance, a clock):
        found from outside, a form's "0/32 · 0/10" was its wait image, matched at 0.94
        with another count and failed at 0.89 with a third."""
        return not any(ch.isdigit() for ch in self.reader.read_line(crop).text)

    def specific(self, crop: Image.Image) -> bool:
        """Whether a crop says something of its own: two words or more, no figure, not a
        button any screen may have. Found from outside: the word "Coin" of "Coin
        launched!" was the success image, and "Coin not launched" matched it."""
        words = re.findall(r"\w+", self.reader.read_line(crop).text)
        return len(words) >= 2 and self.steady(crop) and not self.generic(crop)

    def _wait_row(
        self,
        shown: Image.Image,
        before: Image.Image | None,
        delay: float,
        action: str = "wait",
        prefer: Callable[[Image.Image], bool] | None = None,
    ) -> Row | None:
        if prefer is None:
            prefer = self.steady
        sid = self.screen_id(shown)
        for old in self._waits:  # the same screen again: the same image
            if old.screen_id == sid and (before is None or best_score(before, old.image) < APART):
                keys = {"name": self.names(f"{old.name}-again"), "action": action}
                keys["image"] = old.keys["image"]
                if "hover" in old.keys:
                    keys["hover"] = old.keys["hover"]
                row = Row("step", keys, screen=shown, screen_id=sid)
                break
        else:
            sid_others = {self.screen_id(f): f for f in self._frames}
            sid_others.pop(sid, None)
            others = list(sid_others.values())
            avoid = self.avoid(shown)
            rest = self._rest.get(id(shown))
            # Not the element in its hover look, while the screen has anything else.
            box = distinctive(
                shown, self.r, avoid + ([rest[1]] if rest else []), before, others, prefer
            )
            if rest is not None and (box is None or (prefer and not prefer(shown.crop(box)))):
                alt = distinctive(shown, self.r, avoid, before, others, prefer)
                if alt is not None and (box is None or prefer(shown.crop(alt))):
                    box = alt
            if box is None:
                return None
            name = self._crop_name(shown, box, "on", "screen")
            keys = {"name": name, "action": action, "image": f"{name}.png"}
            self._hovered(keys, shown, box)
            row = Row("step", keys, screen=shown, image=shown.crop(box), screen_id=sid)
            self._waits.append(row)
        if delay * 3 > self.timeout:
            keys["timeout"] = float(round(delay * 3 + 1))
            row.comment = f"appeared {delay:.1f} s after the click when recorded"
        return row

    def _read_region(self, img: Image.Image, found: Found) -> list[float]:
        """The read box: the field the text sits in when it is in one, else the text's
        row widened for longer text (`find_coin_text`)."""
        box, text = found.box, found.text_box or found.box
        cy = (text[1] + text[3]) // 2
        field_box = element_box(img, (min(img.width - 1, text[2] + 4), cy))
        cx = (text[0] + text[2]) // 2
        if (
            field_box
            and field_box[0] <= cx <= field_box[2]
            and field_box[1] <= cy <= field_box[3]
            and field_box[3] - field_box[1] < 2.5 * (text[3] - text[1]) * found.lines
        ):
            box = (field_box[0] + 2, field_box[1] + 2, field_box[2] - 2, field_box[3] - 2)
        return _region(box, self.r)

    def read_back(self, screens: list[tuple[int, Image.Image]]) -> dict[int, list[Row]]:
        """The read steps, by the index of the click before which each goes: the last
        screen (nearest the spend) that shows the ticker, the name, the picture."""
        found: dict[str, tuple[int, Row]] = {}
        for index, img in reversed(screens):
            if len(found) == 3:
                break
            photo = self.photo_on(img)
            ticker, name, _ = find_coin_text(
                img,
                self.coin,
                self.finder,
                self.reader,
                self.min_confidence,
                walls=[self._grown(photo[0], img)] if photo else [],
            )
            sid = self.screen_id(img)
            for fld, hit in (("ticker", ticker), ("name", name)):
                if fld in found or hit is None:
                    continue
                keys: dict[str, Any] = {
                    "name": self.names(f"read-{fld}"),
                    "action": "read_text",
                    "field": fld,
                    "region": self._read_region(img, hit),
                }
                if hit.lines > 1:
                    keys["lines"] = hit.lines
                row = Row("step", keys, f"shows {hit.text!r} for the test coin", img, screen_id=sid)
                row.note_on = "region"
                found[fld] = (index, row)
            if "picture" not in found and photo:
                keys = {
                    "name": self.names("read-picture"),
                    "action": "read_photo",
                    "region": _region(photo[0], self.r),
                }
                row = Row("step", keys, "the chosen picture", img, screen_id=sid, note_on="region")
                found["picture"] = (index, row)
        missing = [k for k in ("ticker", "name", "picture") if k not in found]
        if missing:
            what = {
                "ticker": f"the ticker {self.coin.ticker!r}",
                "name": f"the name {self.coin.name!r}",
                "picture": "the coin's photo",
            }
            raise ProposeError(
                f"{' and '.join(what[k] for k in missing)} not found on any screen between the"
                " last typing and the spend; show the review screen before you stop (or add the"
                ' read_text/read_photo steps by hand: README "Read-back steps")'
            )
        a, b = found["ticker"][1].keys["region"], found["name"][1].keys["region"]
        if found["ticker"][0] == found["name"][0] and apart(a, b):
            self.notes.append(
                "the ticker's and the name's read boxes overlapped; each now ends halfway"
                " into the overlap (other text in a box makes its read-back refuse)"
            )
        out: dict[int, list[Row]] = {}
        for key in ("ticker", "name", "picture"):
            index, row = found[key]
            out.setdefault(index, []).append(row)
        return out

    # -- the whole flow ----------------------------------------------------------------------
    def propose(self, irreversible: int) -> Proposal:
        """`irreversible`: the number of the click that spends (from `Session.clicks`),
        or 0 for the button the person pointed at without clicking."""
        launch, reset, mark, end = self.s.clicks()
        if irreversible == 0:
            if mark is None:
                raise ProposeError("no button was pointed at; answer with the number of a click")
            spend, before, after = mark, launch, []
        else:
            if not 1 <= irreversible <= len(launch):
                raise ProposeError(
                    f"there is no click {irreversible}; the clicks are 1-{len(launch)}"
                )
            spend = launch[irreversible - 1]
            before, after = launch[: irreversible - 1], launch[irreversible:]
        start = before[0].look if before else spend.look
        self.screen_id(start)
        # Screens are numbered in the order the launch showed them, the way back last.
        self._frames = [c.look for c in launch] + ([mark.look] if mark is not None else [])
        self._frames += [end] if end is not None else []
        self._frames += [c.look for c in reset] + [c.after for c in reset[-1:] if c.after]
        for c in [*launch, *reset, *([mark] if mark is not None else [])]:
            self.note_rest(c)
        frames = list({id(img): img for img in self._frames}.values())
        for k, img in enumerate(frames, 1):
            self.coin_boxes(img)  # OCR and the photo search, cached for what follows
            if self.progress is not None:
                self.progress(k, len(frames))
        for img in self._frames:
            self.screen_id(img)
        rows: list[Row] = [Row("step", {"name": self.names("front"), "action": "activate"})]
        start_row = self._wait_row(start, None, 0.0, action="verify")
        if start_row is None:
            raise ProposeError("the start screen has nothing unique to recognise it by")
        rows.append(start_row)
        starts: dict[int, int] = {}  # click index -> where its rows start
        typed_last = picked_last = 0
        for i, c in enumerate(before):
            starts[i] = len(rows)
            nxt = c.after if c.after is not None else spend.look
            point = (round(c.at[0] * self.r), round(c.at[1] * self.r))
            thumb = self.photo_on(c.look)
            field_name = self._field(c)
            if thumb is not None and _box_overlaps(thumb[0], (*point, point[0] + 1, point[1] + 1)):
                # The coin's thumbnail in the picker: prove it is the newest, click its place.
                sid = self.screen_id(c.look)
                keys = {
                    "name": self.names("first-photo-is-coin"),
                    "action": "check_photo",
                    "region": _region(thumb[0], self.r),
                }
                rows.append(
                    Row("step", keys, "the newest photo", c.before, screen_id=sid, note_on="region")
                )
                keys = {"name": self.names("tap-first-photo"), "action": "click", "at": list(c.at)}
                rows.append(Row("step", keys, "", c.before, screen_id=sid))
                picked_last = i + 1
            elif field_name:
                rows.append(self._click_row(c, "step", f"tap-{field_name}-field", by_image=False))
            else:
                rows.append(self._click_row(c, "step", f"click-{c.n}"))
            if field_name:
                keys = {
                    "name": self.names(f"type-{field_name}"),
                    "action": "type",
                    "field": field_name,
                    "clear": True,
                }
                rows.append(Row("step", keys, screen=c.before, screen_id=self.screen_id(c.look)))
                typed_last = i + 1
            # A field opens no screen: what changed after it is what the typing drew (a
            # live preview, a button turning on), which differs for every coin and state.
            if nxt is not None and not field_name and not self.same_screen(c.look, nxt):
                delay = self.s.settle_delay(c, nxt, self.coin_boxes(nxt))
                wait = self._wait_row(nxt, c.look, delay)
                if wait is None:
                    self.notes.append(
                        f"no unique image on the screen after click {c.n}; the next step"
                        " waits for its own image"
                    )
                else:
                    rows.append(wait)
        if not typed_last:
            raise ProposeError(
                f"no typing of the name {self.coin.name!r} or the ticker {self.coin.ticker!r}"
                " was recorded; click each field and type the test coin's text"
            )
        starts[len(before)] = len(rows)
        # Read back on the screens after the last typing and the last pick, up to the spend.
        first = max(typed_last, picked_last)
        screens = [(i, before[i].look) for i in range(first, len(before))]
        reads = self.read_back([*screens, (len(before), spend.look)])
        spend_row = self._click_row(spend, "step", "spend", irreversible=True)
        spend_row.comment = "THE click that spends money: you said so when recording"
        spend_row.note_on = "irreversible"
        rows.append(spend_row)
        rows += self._after(spend, after, end)
        for index in sorted(reads, reverse=True):
            rows[starts[index] : starts[index]] = reads[index]
        rows += self._reset(reset, start_row, spend)
        for row in rows:
            later = row.section == "step" and "image" in row.keys and row.screen_id != 0
            if later and row.keys["action"] != "outcome" and not _after_spend(rows, row):
                row.keys["check"] = False
        return Proposal(rows, self.s.window, self.r, self.notes)

    def _field(self, c: Click) -> str | None:
        if not c.typed:
            return None
        text = c.typed["text"]
        for fld, value in (("name", self.coin.name), ("ticker", self.coin.ticker)):
            if text.strip() == value:
                return fld
        for fld, value in (("name", self.coin.name), ("ticker", self.coin.ticker)):
            if text.strip().casefold() == value.casefold():
                self.notes.append(
                    f"after click {c.n} you typed {text!r}; taken as the {fld} {value!r}"
                )
                return fld
        if text:
            self.notes.append(
                f"after click {c.n} you typed {text!r}, which is neither the name nor the"
                " ticker of the test coin; it is not in the flow"
            )
        return None

    def _after(self, spend: Click, after: list[Click], end: Image.Image | None) -> list[Row]:
        shown = after[0].look if after else (end if spend.n else None)
        outcome = None
        if shown is not None and not self.same_screen(spend.look, shown):
            outcome = self._wait_row(shown, spend.look, 0.0, "outcome", prefer=self.specific)
        if outcome is None:
            name = self.names("outcome")
            keys = {"name": name, "action": "outcome", "image": f"{name}.png", "timeout": 60.0}
            self.notes.append(
                "the screen after the spend was not recorded: launches end in needs_review"
                f" until you capture it (`moonshot flow calibrate --step {name} --box X,Y,W,H`"
                " while it shows)"
            )
            return [Row("step", keys, "capture it after the first launch", note_on="image")]
        outcome.keys["timeout"] = 60.0
        outcome.keys["failure"] = []
        outcome.comment = "the success screen; add failure images once you have seen one"
        outcome.note_on = "failure"
        if outcome.image is not None and self.generic(outcome.image):
            outcome.comment = (
                "a button an error screen may have too: capture something only the success"
                " screen shows"
            )
            self.notes.append(
                f"the success screen's only image of its own is a {outcome.name!r} button,"
                " which an error screen may show too: a launch whose address cannot be read"
                " then ends in needs_review. Capture something only the success screen shows"
                f" (`moonshot flow calibrate --step {outcome.name} --box X,Y,W,H` while it"
                " shows)"
            )
        rows = [outcome]
        for c in after:
            if c.copied:
                row = self._click_row(c, "step", "copy-address")
                row.keys["action"] = "read_address"
                row.comment = "the address reached the clipboard after this click"
                rows.append(row)
            else:
                rows.append(self._click_row(c, "step", f"click-{c.n}"))
        if not any(c.copied for c in after):
            self.notes.append(
                "no address was copied after the spend: add a read_address step to record"
                " the token's address"
            )
        return rows

    def _reset(self, clicks: list[Click], start_row: Row, spend: Click) -> list[Row]:
        """The way back to the start: the clicks the person made after saying where the
        way back began (Cancel, Back, Close; optional, so each runs only where its screen
        shows), and the fields it emptied. A click on the spending button is never kept.
        In a recording made before the way back was asked in two parts, clicks that went
        forward (to reach a deeper screen) are told apart by the order of the screens."""
        rows = [Row("reset", {"name": self.names("reset-front"), "action": "activate"})]
        forward = 0
        spend_point = (round(spend.at[0] * self.r), round(spend.at[1] * self.r))
        spend_box = click_reference(spend.look, spend_point, self.r, [])[0]
        for k, c in enumerate(clicks, 1):
            if c.typed and c.typed.get("cleared") and not c.typed.get("text"):
                row = self._click_row(c, "reset", "empty-field", by_image=False, clear=True)
                row.comment = "click the field and empty it"
                rows.append(row)
                continue
            point = (round(c.at[0] * self.r), round(c.at[1] * self.r))
            if self.same_screen(c.look, spend.look) and _inside(point, spend_box):
                self.notes.append(
                    f"click {k} of the way back was on the button that spends money; it is"
                    " not in [[reset]]"
                )
                continue
            # Screen numbers follow the order the launch first showed them: lower is nearer
            # the start screen (0); a screen never seen while launching counts as deeper.
            here = self.screen_id(c.look)
            if not self.s.two_part and c.after is not None and self.screen_id(c.after) >= here:
                forward += 1
                continue
            row = self._click_row(c, "reset", "back")
            if "image" in row.keys:
                row.keys["optional"] = True
                row.comment = "only when that screen shows (optional)"
                row.note_on = "optional"
            rows.append(row)
        keys = {"name": self.names("on-start"), "action": "wait", "image": start_row.keys["image"]}
        rows.append(Row("reset", keys, "back on the start screen", start_row.screen))
        if forward:
            self.notes.append(
                f"{forward} click(s) of the way back went forward (to a deeper screen) and are"
                " not in [[reset]]"
            )
        if len(rows) == 2:
            self.notes.append(
                "no way back to the start screen was recorded: [[reset]] only checks that the"
                " start screen shows (record again and answer the last question, or edit it)"
            )
        return rows


def _inside(point: tuple[int, int], box) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def _after_spend(rows: list[Row], row: Row) -> bool:
    cut = next(i for i, r in enumerate(rows) if r.keys.get("irreversible"))
    return rows.index(row) > cut


# -- the document --------------------------------------------------------------------------
HEADER = """\
Recorded by `moonshot flow record`: what you did in the app, as steps. Check it with
`moonshot flow show` (a contact sheet), `moonshot flow check --walk` and
`moonshot flow run ID --dry-run`; edit it freely (the tools keep your comments).
See README.md, "Moonshot app automation"."""

FLOW_DEFAULTS = (
    ("non_ascii", "paste", "paste | refuse (iPhone Mirroring)"),
    ("confidence", 0.9, "image match needed"),
    ("photo_confidence", 0.8, "the picker's first thumbnail vs the coin's photo"),
    ("timeout", 10.0, "seconds a step waits for its image"),
    ("pause", 0.05, "seconds after each mouse or key action"),
    ("type_interval", 0.02, "seconds between keys"),
    ("settle", 0.3, "seconds after each click or typing"),
)


def _commented(table, key: str, note: str) -> None:
    item = table.item(key)
    item.comment(note)
    item.trivia.comment_ws = "  "


def document(p: Proposal, app: str, previous: tomlkit.TOMLDocument | None) -> tomlkit.TOMLDocument:
    """The proposal as a flow document; a previous file's [flow] table, [[interrupt]]s
    and top comments are kept as they were (only the app name is set)."""
    doc = tomlkit.document()
    old_flow = previous.get("flow") if previous is not None else None
    if old_flow is not None:
        for key, item in previous.body:  # the comments above [flow]
            if key is not None:
                break
            doc.add(item)
        old_flow["app"] = app
        doc.add("flow", old_flow)
    else:
        for line in HEADER.splitlines():
            doc.add(tomlkit.comment(line))
        head = tomlkit.table()
        head.add("app", app)
        _commented(head, "app", "window title (X11) or application name (macOS)")
        for key, value, note in FLOW_DEFAULTS:
            head.add(key, value)
            _commented(head, key, note)
        doc.add("flow", head)
    cal = tomlkit.table()
    cal.add("window", [float(p.window.w), float(p.window.h)])
    _commented(cal, "window", "the window's size in points when recorded")
    cal.add("pixel_ratio", round(p.ratio, 3))
    doc.add("calibration", cal)
    if previous is not None and "interrupt" in previous:
        doc.add("interrupt", previous["interrupt"])
    for section in ("step", "reset"):
        aot = tomlkit.aot()
        for row in (r for r in p.rows if r.section == section):
            t = tomlkit.table()
            for key, value in row.keys.items():
                t.add(key, value)
            if row.comment:
                _commented(t, row.note_on or list(row.keys)[-1], row.comment)
            aot.append(t)
        if len(aot):
            doc.add(section, aot)
    return doc
