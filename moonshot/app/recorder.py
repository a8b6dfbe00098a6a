"""Watching a person use the app, for `moonshot flow record`: a screen stream of the app
window (mss: one connection, a frame every few tens of milliseconds), the person's
clicks and keys (pynput: X11 RECORD, or a macOS event tap with Accessibility), and the
clipboard. It only listens: it never clicks, types, moves the pointer or writes the
clipboard (it builds no pynput Controller). A click is kept with the screen as it was
BEFORE the click changed it; what it all means is `propose`'s job.

The frame before a click: the app may redraw before the click reaches this process, so
the frame is not the newest one but the last one of a screen that had been still for
STILL seconds (a person looks before clicking); hover highlights and a text cursor's
blink are not changes (see `changed`)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from moonshot.app import display
from moonshot.app.flow import Rect

# Seconds a screen must stay the same to count as seen by the person: longer than the
# listener's lag behind the app's redraw (the click reaches both at once), shorter than
# a fast hand takes to click a screen it just saw (xdotool at 0.3 s a click: 0.2 s).
STILL = 0.15
SETTLED = 0.4  # seconds without change after which a new screen is recorded as settled
INTERVAL = 0.04  # seconds between frames of the stream
RING = 4.0  # seconds of frames kept for choosing the frame before a click
LOOK_BACK = 40  # frames looked at, newest first, for the screen before the pointer came
# Two frames differ when more than this share of the window changed by more than
# DIFF_LEVEL grey levels (a blinking text cursor is ~0.05 %, a hover highlight ~1 %).
DIFF_SHARE = 0.002
DIFF_LEVEL = 24
SCREEN_CHANGE = 0.06  # share of what is drawn that changes when a click opens another screen
SESSION = "session.json"


def changed(a: Image.Image, b: Image.Image) -> bool:
    """Whether two frames of the window show a different screen (not just a caret)."""
    import numpy as np

    if a.size != b.size:
        return True
    x = np.asarray(a.convert("L"), dtype=np.int16)
    y = np.asarray(b.convert("L"), dtype=np.int16)
    return float((np.abs(x - y) > DIFF_LEVEL).mean()) > DIFF_SHARE


def _ink(img: Image.Image):
    """What is drawn on the window's background (its commonest colour)."""
    import numpy as np

    a = np.asarray(img.convert("RGB"), dtype=np.int32)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    bg = int(values[counts.argmax()])
    rgb = np.array([bg >> 16, (bg >> 8) & 255, bg & 255], dtype=np.int32)
    return np.abs(a - rgb).max(axis=2) > DIFF_LEVEL


def changed_share(a: Image.Image, b: Image.Image, ignore=()) -> float:
    """How much of what is drawn differs between two frames (changed pixels over the
    pixels drawn in either): sparse dark screens and busy light ones alike. Boxes in
    `ignore` (the coin's text and photo, a hovered element) do not count."""
    import numpy as np

    if a.size != b.size:
        return 1.0
    x = np.asarray(a.convert("L"), dtype=np.int16)
    y = np.asarray(b.convert("L"), dtype=np.int16)
    diff = np.abs(x - y) > DIFF_LEVEL
    drawn = _ink(a) | _ink(b)
    for x0, y0, x1, y1 in ignore:
        diff[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
        drawn[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
    return float(diff.sum()) / max(1, int(drawn.sum()))


def changed_much(a: Image.Image, b: Image.Image, ignore=()) -> bool:
    """Another screen, not a focused field, typed text or a hover (measured here: typing
    2-3 %, a new screen or a dialog over one 9-67 % of what is drawn)."""
    return changed(a, b) and changed_share(a, b, ignore) > SCREEN_CHANGE


def element_box(frame: Image.Image, point: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The box of the element under a point: the area of the colour around it (a
    button's face, a field's inside) up to its edge; None when that area is the whole
    window's background (no edge) or a speck (a glyph)."""
    import cv2
    import numpy as np

    a = np.ascontiguousarray(np.asarray(frame.convert("RGB")))
    h, w = a.shape[:2]
    x, y = min(max(0, point[0]), w - 1), min(max(0, point[1]), h - 1)
    # Seed on the commonest colour near the point (the click may land on a letter).
    x0, y0, x1, y1 = max(0, x - 20), max(0, y - 20), min(w, x + 21), min(h, y + 21)
    patch = a[y0:y1, x0:x1].reshape(-1, 3)
    colours, counts = np.unique(patch, axis=0, return_counts=True)
    seed_colour = colours[counts.argmax()]
    ys, xs = np.nonzero((a[y0:y1, x0:x1] == seed_colour).all(axis=2))
    order = np.argsort((xs + x0 - x) ** 2 + (ys + y0 - y) ** 2)
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
    box, best = None, 0
    # The nearest pixel of that colour may sit inside a letter (the hole of an "o"):
    # fill from a few of them, spread out, and keep the largest area.
    for k in order[:: max(1, len(order) // 8)][:9]:
        mask = np.zeros((h + 2, w + 2), np.uint8)
        seed = (int(xs[k] + x0), int(ys[k] + y0))
        _, _, _, (rx, ry, rw, rh) = cv2.floodFill(
            a.copy(), mask, seed, (0, 0, 0), (8, 8, 8), (8, 8, 8), flags
        )
        if best < rw * rh <= 0.35 * w * h:  # the window's background is no element
            best, box = rw * rh, (rx, ry, rx + rw, ry + rh)
    if box is None or box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return None
    return box


@dataclass(frozen=True)
class Look:
    """What the recorder found for a click's frame: the same screen before the pointer
    came over the element (or None), whether the pointer rested on it since the screen
    showed (no plain look exists), and where the pointer was in the plain frame."""

    plain: Image.Image | None
    rested: bool
    pointer: tuple[float, float] | None = None


NO_LOOK = Look(None, False)


@dataclass
class Frame:
    start: float  # monotonic time the grab began
    end: float  # and ended
    image: Image.Image
    run: int  # frames of one still screen share a run number


class Stream:
    """Frames of the window in a thread; `before(t)` is the screen as the person saw it
    just before time t; `settled` lists each new screen once it stopped changing."""

    def __init__(
        self,
        grab: Callable[[], Image.Image],
        clock: Callable[[], float] = time.monotonic,
        interval: float = INTERVAL,
    ):
        self.grab, self.clock, self.interval = grab, clock, interval
        self.ring: deque[Frame] = deque()
        self.runs: dict[int, tuple[float, float]] = {}  # run -> (first start, last end)
        self.settled: list[tuple[float, Image.Image]] = []  # (run start, frame)
        self._settled_run = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def add(self, start: float, end: float, image: Image.Image) -> None:
        """One frame (the thread calls this; tests call it with drawn frames)."""
        with self._lock:
            last = self.ring[-1] if self.ring else None
            run = (
                last.run
                if last and not changed(last.image, image)
                else (last.run + 1 if last else 0)
            )
            first = self.runs.get(run, (start, end))[0]
            self.runs[run] = (first, end)
            self.ring.append(Frame(start, end, image, run))
            while self.ring and self.ring[0].end < end - RING:
                self.ring.popleft()
            if run != self._settled_run and end - first >= SETTLED:
                self._settled_run = run
                self.settled.append((first, image))

    def before(self, t: float) -> Image.Image | None:
        """The last frame, grabbed before t, of a screen that had been still for STILL
        seconds (else the last frame grabbed before t - STILL, else the oldest)."""
        f = self.before_frame(t)
        return f.image if f else None

    def before_frame(self, t: float) -> Frame | None:
        """`before`, with when the frame was grabbed."""
        with self._lock:
            frames = [f for f in self.ring if f.end <= t]
            if not frames:
                return self.ring[0] if self.ring else None
            for f in reversed(frames):
                first, last = self.runs[f.run]
                if min(last, t) - first >= STILL:
                    return f
            early = [f for f in frames if f.end <= t - STILL]
            return (early or frames)[-1 if early else 0]

    def latest_like(self, t: float, shown: Image.Image, ignore=()) -> Frame | None:
        """The newest frame grabbed before t that shows `shown`'s screen outside the
        boxes in `ignore` (the element under the pointer), however briefly it had been
        still: a fast hand points at a button a moment after its screen appears."""
        import numpy as np

        with self._lock:
            frames = [f for f in self.ring if f.end <= t]
        want = np.asarray(shown.convert("L"), dtype=np.int16)
        for f in reversed(frames[-LOOK_BACK:]):
            if f.image.size != shown.size:
                continue
            diff = np.abs(np.asarray(f.image.convert("L"), dtype=np.int16) - want) > DIFF_LEVEL
            for x0, y0, x1, y1 in ignore:
                diff[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
            if float(diff.mean()) <= DIFF_SHARE:  # the same screen but for the element
                return f
        return None

    def latest(self) -> Image.Image | None:
        with self._lock:
            return self.ring[-1].image if self.ring else None

    def latest_frame(self) -> Frame | None:
        with self._lock:
            return self.ring[-1] if self.ring else None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                t0 = self.clock()
                try:
                    img = self.grab()
                except Exception as exc:  # the window closed, the display went away
                    self.error = f"{type(exc).__name__}: {exc}"
                    self._stop.wait(0.5)
                    continue
                self.add(t0, self.clock(), img)
                self._stop.wait(max(0.0, self.interval - (self.clock() - t0)))

        self._thread = threading.Thread(target=loop, name="moonshot-record-frames", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


@dataclass
class Event:
    """One thing the person did. kind: click | type | key | clipboard | mark | phase."""

    kind: str
    t: float
    x: float | None = None  # points, relative to the window's top-left
    y: float | None = None
    text: str = ""  # type: the text now in the field; key: the key; phase: its name
    cleared: bool = False  # type: the field was emptied first (select all + delete)
    pasted: bool = False
    inside: bool = True  # click: inside the app window
    frame: str = ""  # file name of the frame saved with it (click, mark)
    plain: str = ""  # and of the same screen before the pointer came over the element
    rested: bool = False  # no plain look: the pointer was on the element since it showed
    # Where the pointer was (window points) in `frame` and in `plain`: what it hovered.
    pointer: tuple[float, float] | None = None
    plain_pointer: tuple[float, float] | None = None
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    plain_image: Image.Image | None = field(default=None, repr=False, compare=False)


class Typing:
    """Keys into the text the field holds: select-all then a key replaces everything,
    backspace deletes, paste adds the clipboard. Keys with Ctrl/Cmd/Alt held are not text."""

    def __init__(self):
        self.text, self.cleared, self.pasted, self.selected = "", False, False, False
        self.keys = 0
        self.last = 0.0  # when the last key came

    def char(self, ch: str) -> None:
        if self.selected:
            self.text, self.cleared, self.selected = "", True, False
        self.text += ch
        self.keys += 1

    def backspace(self) -> None:
        if self.selected or len(self.text) <= 1:
            self.text, self.cleared, self.selected = "", True, False
        else:
            self.text = self.text[:-1]
        self.keys += 1

    def select_all(self) -> None:
        self.selected = True
        self.keys += 1

    def paste(self, text: str) -> None:
        self.char(text)
        self.pasted = True


class Recorder:
    """The pynput listeners, the frame stream and the clipboard poller for one window.
    `events` grows while it runs; `phase(name)` marks where the person said a part ended."""

    def __init__(
        self,
        app: str,
        window: Rect,
        ratio: float,
        clipboard: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app, self.window, self.ratio, self.clock = app, window, ratio, clock
        self.clipboard = clipboard
        self.events: list[Event] = []
        self.pointer: tuple[float, float] = (0.0, 0.0)
        self.stream = Stream(self._grab, clock)
        self._typing: Typing | None = None
        self._trail: deque[tuple[float, float, float]] = deque()
        self._mods: set[str] = set()
        self._lock = threading.Lock()
        self._listeners: list[Any] = []
        self._sct = None
        self._clip_stop = threading.Event()
        self._looks: queue.Queue = queue.Queue()
        self.look_error: str | None = None  # the last failure to find a plain look
        self._looker = threading.Thread(
            target=self._find_looks, name="moonshot-record-looks", daemon=True
        )

    # -- the window's pixels ----------------------------------------------------------------
    def _grab(self) -> Image.Image:
        import mss

        if self._sct is None:  # one connection, made in the stream's own thread
            self._sct = mss.MSS() if hasattr(mss, "MSS") else mss.mss()
        w = self.window
        shot = self._sct.grab(
            {"left": round(w.x), "top": round(w.y), "width": round(w.w), "height": round(w.h)}
        )
        img = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        return (
            img
            if img.width == round(w.w * self.ratio)
            else img.resize((round(w.w * self.ratio), round(w.h * self.ratio)))
        )

    # -- listening --------------------------------------------------------------------------
    def start(self) -> None:
        display.require()
        try:
            with display.quiet_xlib():
                from pynput import keyboard, mouse
        except Exception as exc:  # pynput picks its backend on import
            from moonshot.errors import PortUnavailable

            raise PortUnavailable(
                f"cannot listen to the mouse and keyboard ({type(exc).__name__}: {exc});"
                " on macOS grant Accessibility to this Python, on X11 the server needs RECORD"
            ) from None
        self.stream.start()
        self._looker.start()
        listeners = [
            mouse.Listener(on_click=self._on_click, on_move=self._on_move),
            keyboard.Listener(on_press=self._on_press, on_release=self._on_release),
        ]
        with display.quiet_xlib():
            for listener in listeners:
                listener.start()
            for listener in listeners:
                listener.wait()
        self._listeners = listeners
        if self.clipboard is not None:
            threading.Thread(target=self._poll_clipboard, daemon=True).start()
        time.sleep(0.3)
        dead = [type(x).__module__ for x in listeners if not x.is_alive()]
        if dead:
            from moonshot.errors import PortUnavailable

            self.stop()
            raise PortUnavailable(
                "the mouse/keyboard listener stopped at once: on X11 the server needs the"
                " RECORD extension (Xvfb: +extension RECORD); on macOS grant Accessibility"
                " and Input Monitoring to this Python"
            )

    def stop(self) -> None:
        self._flush(self.clock())
        for listener in self._listeners:
            listener.stop()
        self._clip_stop.set()
        self._looks.put(None)  # the looks of the last clicks, then the thread ends
        if self._looker.is_alive():
            self._looker.join(timeout=30)
        self.stream.stop()

    def phase(self, name: str) -> None:
        """The person said a part of the recording ended (pressed Enter in the terminal)."""
        t = self.clock()
        with self._lock:
            self._flush(t)
            # Keys typed in the terminal to answer (the Enter itself) are not the app's.
            self._typing = None
            self.events.append(Event("phase", t, text=name))

    def mark(self) -> Event:
        """Where the pointer is now, with the screen: the person points at a button."""
        t = self.clock()
        x, y = self.pointer
        frame = self.stream.latest_frame()
        shown = frame.image if frame else None
        shown_at = frame.start if frame else None
        look = self._plain(t, (x, y), shown, shown_at)
        ev = Event(
            "mark",
            t,
            x - self.window.x,
            y - self.window.y,
            image=shown,
            plain_image=look.plain,
            rested=look.rested,
            pointer=self.pointer_at(shown_at),
            plain_pointer=look.pointer,
        )
        with self._lock:
            self.events.append(ev)
        return ev

    def _inside(self, x: float, y: float) -> bool:
        w = self.window
        return w.x <= x < w.x + w.w and w.y <= y < w.y + w.h

    def _on_move(self, x, y) -> None:
        self.pointer = (float(x), float(y))
        with self._lock:
            self._trail.append((self.clock(), float(x), float(y)))
            while len(self._trail) > 2000:
                self._trail.popleft()

    def _plain(
        self,
        t: float,
        point: tuple[float, float],
        shown: Image.Image | None,
        shown_at: float | None = None,
    ):
        """(the same screen before the pointer came over the element under `point`, or
        None; whether the pointer rested there since the screen appeared). A hover
        highlight is not what the runner sees: it parks the pointer first. When the
        pointer was already where the new screen put its button (a person clicking one
        spot screen after screen), no frame shows the plain look: the step is marked so
        that the runner points there too before it looks (the flow's `hover`)."""
        if shown is None:
            return NO_LOOK
        r = self.ratio
        px = (round((point[0] - self.window.x) * r), round((point[1] - self.window.y) * r))
        box = element_box(shown, px)
        if box is None:
            return NO_LOOK
        inside = lambda x, y: (  # noqa: E731
            box[0] <= (x - self.window.x) * r < box[2]
            and box[1] <= (y - self.window.y) * r < box[3]
        )
        with self._lock:
            trail = [p for p in self._trail if p[0] <= t]
        entered, outside = None, False
        for when, x, y in reversed(trail):
            if not inside(x, y):
                outside = True
                break
            entered = when
        if entered is None:
            # Not on the element at the click (it moved in between), or no move ever
            # seen: there since the recording began, as far as anyone knows.
            return Look(None, not trail)
        if shown_at is not None and entered > shown_at:
            return NO_LOOK  # the frame was grabbed before the pointer came: plain
        if not outside:
            return Look(None, True)  # the pointer was there as far back as we know
        # Only the element under the pointer may differ (its hover look); a frame that
        # differs elsewhere is of another screen: the pointer rested where the new
        # screen put its button, and there is no plain look to take.
        grown = (box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4)
        plain = self.stream.latest_like(entered, shown, [grown])
        if plain is None:
            return Look(None, True)
        return Look(plain.image, False, self.pointer_at(plain.start))

    def pointer_at(self, t: float | None) -> tuple[float, float] | None:
        """Where the pointer was at time t (window points), from its trail; None when
        it was outside the window or no move is known before t."""
        if t is None:
            return None
        with self._lock:
            known = [p for p in self._trail if p[0] <= t]
        if not known:
            return None
        _, x, y = known[-1]
        return (x - self.window.x, y - self.window.y) if self._inside(x, y) else None

    def _on_click(self, x, y, button, pressed) -> None:
        if not pressed:
            return
        t = self.clock()
        self.pointer = (float(x), float(y))
        frame = self.stream.before_frame(t)
        image = frame.image if frame else None
        inside = self._inside(x, y)
        ev = Event(
            "click",
            t,
            float(x) - self.window.x,
            float(y) - self.window.y,
            text=str(getattr(button, "name", button)),
            inside=inside,
            image=image,
        )
        if inside:  # the plain look is looked for on a thread of its own: the listener
            # must not lag behind the hand
            self._looks.put((ev, (float(x), float(y)), frame.start if frame else None))
        with self._lock:
            self._flush(t)
            self.events.append(ev)
            # Keys go to the field clicked last; a click elsewhere (the terminal) ends that.
            self._typing = Typing() if inside else None

    def _find_looks(self) -> None:
        while (job := self._looks.get()) is not None:
            ev, point, shown_at = job
            try:
                ev.pointer = self.pointer_at(shown_at)
                look = self._plain(ev.t, point, ev.image, shown_at)
                ev.plain_image, ev.rested, ev.plain_pointer = look.plain, look.rested, look.pointer
            except Exception as exc:  # noqa: BLE001 - the click keeps its frame as seen
                self.look_error = f"{type(exc).__name__}: {exc}"

    def _flush(self, t: float) -> None:
        typing = self._typing
        if typing is not None and typing.keys:
            when = typing.last or t
            self.events.append(
                Event("type", when, text=typing.text, cleared=typing.cleared, pasted=typing.pasted)
            )
            self._typing = Typing()

    def _key_name(self, key) -> str:
        name = getattr(key, "name", None)
        return name or str(key)

    def _on_press(self, key) -> None:
        name = self._key_name(key)
        base = name.split("_")[0]
        if base in ("ctrl", "cmd", "alt", "shift"):
            self._mods.add(base)
            return
        with self._lock:
            typing = self._typing
            if typing is None:
                return
            typing.last = self.clock()
            ch = getattr(key, "char", None)
            command = self._mods & {"ctrl", "cmd"}
            if command and ch and ch.lower() == "a":
                typing.select_all()
            elif command and ch and ch.lower() == "v" and self.clipboard:
                typing.paste(self.clipboard())
            elif command or "alt" in self._mods:
                return
            elif ch is not None and ch.isprintable():
                typing.char(ch)
            elif name == "space":
                typing.char(" ")
            elif name in ("backspace", "delete"):
                typing.backspace()
            elif name in ("tab", "enter"):
                self._flush(self.clock())
                self.events.append(Event("key", self.clock(), text=name))

    def _on_release(self, key) -> None:
        self._mods.discard(self._key_name(key).split("_")[0])

    def _poll_clipboard(self) -> None:
        last = None
        while not self._clip_stop.wait(0.3):
            try:
                text = self.clipboard() or ""
            except Exception:
                continue
            if last is not None and text != last:
                with self._lock:
                    self.events.append(Event("clipboard", self.clock(), text=text[:200]))
            last = text

    # -- the session on disk ----------------------------------------------------------------
    def save(self, folder: Path, meta: dict[str, Any]) -> Path:
        return save_session(
            folder, self.events, self.stream.settled, self.window, self.ratio, self.app, meta
        )


def save_session(
    folder: Path,
    events: list[Event],
    settled: list[tuple[float, Image.Image]],
    window: Rect,
    ratio: float,
    app: str,
    meta: dict[str, Any],
) -> Path:
    """Frames as PNG files and the events as JSON: what `propose` works from, and what
    `flow record --session DIR` builds a flow from again without a new recording."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ev in enumerate(events):
        row = asdict(ev)
        row.pop("image")
        row.pop("plain_image")
        if ev.image is not None:
            row["frame"] = f"{i:03d}-{ev.kind}.png"
            ev.image.save(folder / row["frame"])
        if ev.plain_image is not None:
            row["plain"] = f"{i:03d}-{ev.kind}-plain.png"
            ev.plain_image.save(folder / row["plain"])
        rows.append(row)
    screens = []
    for i, (t, img) in enumerate(settled):
        name = f"screen-{i:03d}.png"
        img.save(folder / name)
        screens.append({"t": t, "frame": name})
    body = {
        "app": app,
        "window": [window.x, window.y, window.w, window.h],
        "pixel_ratio": ratio,
        "events": rows,
        "screens": screens,
        **meta,
    }
    path = folder / SESSION
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
    return path
