"""A screen Driver without a display, for the flow's unit tests: a drawn app window with
a form, a picker, success and error screens, a popup that blocks clicks, at any position,
size and pixel ratio. It records clicks, typed and pasted text, and every create. Its
TextReader double reads what the drawn form holds (the fake draws no letters). The gui
tests use the real pyautogui driver and the real OCR engine instead."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from moonshot.app.flow import Rect
from moonshot.app.ocr import Reading

CAL = (300, 400)  # the fake window's size in points at calibration, pixel ratio 1
# Scene elements in calibration points: (x, y, w, h, seed of their pattern).
SCENES = {
    "form": {
        "header": (10, 10, 200, 30, 1),
        "name": (10, 60, 280, 30, 11),
        "ticker": (10, 100, 280, 30, 12),
        "tile": (10, 150, 80, 80, 13),
        "create": (10, 340, 280, 40, 2),
    },
    "picker": {"header": (10, 10, 150, 30, 3), "thumb": (10, 60, 80, 80, 0)},
    "success": {
        "header": (10, 10, 200, 30, 4),
        "copy": (10, 60, 130, 40, 5),
        "done": (150, 60, 130, 40, 6),
    },
    "error": {"header": (10, 10, 200, 30, 7)},
}
# A "What's new" card over any scene: it takes every click until closed.
POPUP = {"card": (40, 160, 220, 120, 20), "close": (60, 240, 180, 30, 21)}
ADDRESS = "So11111111111111111111111111111111111111112"
STALE = "11111111111111111111111111111111"

FLOW = """
[flow]
app = "Fake"
non_ascii = "{non_ascii}"
timeout = 0.5
pause = 0.0
settle = 0.0

[calibration]
window = [300.0, 400.0]
pixel_ratio = 1.0

[[step]]
name = "front"
action = "activate"
[[step]]
name = "form"
action = "verify"
image = "form.png"
[[step]]
name = "tap-name"
action = "click"
at = [150.0, 75.0]
[[step]]
name = "type-name"
action = "type"
field = "name"
clear = true
[[step]]
name = "tap-ticker"
action = "click"
at = [150.0, 115.0]
[[step]]
name = "type-ticker"
action = "type"
field = "ticker"
clear = true
[[step]]
name = "tap-image"
action = "click"
at = [50.0, 190.0]
[[step]]
name = "picker"
action = "wait"
image = "picker.png"
check = false
[[step]]
name = "first-photo-is-coin"
action = "check_photo"
region = [10.0, 60.0, 80.0, 80.0]
timeout = 0.2
[[step]]
name = "tap-first-photo"
action = "click"
at = [50.0, 100.0]
[[step]]
name = "read-name"
action = "read_text"
field = "name"
region = [10.0, 60.0, 280.0, 30.0]
timeout = 0.2
[[step]]
name = "read-ticker"
action = "read_text"
field = "ticker"
region = [10.0, 100.0, 280.0, 30.0]
timeout = 0.2
[[step]]
name = "read-picture"
action = "read_photo"
region = [10.0, 150.0, 80.0, 80.0]
timeout = 0.2
[[step]]
name = "tap-create"
action = "click"
image = "create.png"
irreversible = true
timeout = 0.3
[[step]]
name = "outcome"
action = "outcome"
image = "success.png"
failure = ["error.png"]
timeout = 0.3
[[step]]
name = "copy-address"
action = "read_address"
image = "copy.png"
timeout = 0.3
[[step]]
name = "done"
action = "click"
image = "done.png"
timeout = 0.3
[[interrupt]]
name = "whats-new"
image = "popup.png"
target = "popup-close.png"
times = 2
[[reset]]
name = "leave-picker"
action = "click"
image = "picker.png"
optional = true
timeout = 0.2
[[reset]]
name = "on-form"
action = "verify"
image = "form.png"
"""


def pattern(w: int, h: int, seed: int) -> Image.Image:
    """Blocks of colour: detailed enough to match, smooth enough to survive scaling."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 10):
        for x in range(0, w, 10):
            draw.rectangle(
                (x, y, x + 9, y + 9),
                fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)),
            )
    return img


def photo(seed: int) -> Image.Image:
    img = pattern(160, 120, 100 + seed).resize((320, 240), Image.NEAREST)
    ImageDraw.Draw(img).ellipse((60, 40, 200, 200), fill=(seed * 40 % 256, 200, 90))
    return img


def render(
    scene: str,
    thumb: Image.Image | None,
    k: float = 1.0,
    tile: Image.Image | None = None,
    popup: bool = False,
) -> Image.Image:
    """A scene at calibration size, scaled by k (pixel ratio times window growth); the
    form's tile shows the chosen photo, the popup lies over everything."""
    img = Image.new("RGB", CAL, (250, 250, 250))
    shown = {"thumb": thumb, "tile": tile}
    for name, (x, y, w, h, seed) in SCENES[scene].items():
        photo = shown.get(name)
        part = ImageOps.fit(photo, (w, h)) if photo else pattern(w, h, seed)
        img.paste(part, (x, y))
    if popup:
        for x, y, w, h, seed in POPUP.values():
            img.paste(pattern(w, h, seed), (x, y))
    if k != 1.0:
        img = img.resize((round(CAL[0] * k), round(CAL[1] * k)), Image.LANCZOS)
    return img


def write_flow(folder: Path, non_ascii: str = "paste") -> Path:
    """The fake app's flow file and its reference images, captured at calibration size."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flow.toml"
    path.write_text(FLOW.format(non_ascii=non_ascii), encoding="utf-8")
    for file, scene, element in (
        ("form.png", "form", "header"),
        ("create.png", "form", "create"),
        ("picker.png", "picker", "header"),
        ("success.png", "success", "header"),
        ("copy.png", "success", "copy"),
        ("done.png", "success", "done"),
        ("error.png", "error", "header"),
    ):
        x, y, w, h, _ = SCENES[scene][element]
        render(scene, None).crop((x, y, x + w, y + h)).save(folder / file)
    for file, element in (("popup.png", "card"), ("popup-close.png", "close")):
        x, y, w, h, _ = POPUP[element]
        pattern(w, h, POPUP[element][4]).crop((0, 0, w, 40 if element == "card" else h)).save(
            folder / file
        )
    return path


@dataclass
class FakeScreen:
    screen: tuple[int, int] = (1000, 700)  # points
    ratio: float = 1.0
    win: Rect = field(default_factory=lambda: Rect(100, 50, 300, 400))
    scene: str = "form"
    newest_photo: Image.Image | None = None
    outcome: str = "success"  # success | error | none
    copy_works: bool = True
    clipboard: str = ""
    clicks: list[tuple[float, float]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=lambda: {"name": "", "ticker": ""})
    focus: str | None = None
    chosen: Image.Image | None = None
    creates: list[dict] = field(default_factory=list)
    pasted: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    pointer: tuple[float, float] = (0.0, 0.0)
    positions: list[tuple] = field(default_factory=list)  # what the user points at
    # Hazards: a clear that deletes nothing (Tk's Ctrl+A), a field that cannot be copied,
    # a form that shows other text than it holds, a tap that picks another photo, a popup.
    clear_works: bool = True
    field_copy_works: bool = True
    shows: dict[str, str] = field(default_factory=dict)
    picks: Image.Image | None = None
    popup: bool = False
    popup_on: str | None = None  # the popup opens when this scene shows next
    selected: bool = False
    tile_spends: bool = False  # an app that stopped asking: choosing the photo creates
    hover_look: bool = False  # the element under the pointer is drawn inverted

    def screen_size(self) -> tuple[int, int]:
        return self.screen

    def screenshot(self) -> Image.Image:
        r = self.ratio
        shot = Image.new(
            "RGB", (round(self.screen[0] * r), round(self.screen[1] * r)), (20, 20, 20)
        )
        k = r * self.win.w / CAL[0]
        tile = self.chosen if self.scene == "form" else None
        shot.paste(
            render(self.scene, self.newest_photo, k, tile, self.popup),
            (round(self.win.x * r), round(self.win.y * r)),
        )
        hit = self._hit(*self.pointer) if self.hover_look and not self.popup else None
        if hit is not None:
            ex, ey, w, h, _ = SCENES[self.scene][hit]
            x0, y0 = self.win.x + ex * self.win.w / CAL[0], self.win.y + ey * self.win.h / CAL[1]
            box = tuple(
                round(v * r)
                for v in (x0, y0, x0 + w * self.win.w / CAL[0], y0 + h * self.win.h / CAL[1])
            )
            shot.paste(ImageOps.invert(shot.crop(box)), box[:2])
        return shot

    def _cal(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.win.x) * CAL[0] / self.win.w, (y - self.win.y) * CAL[1] / self.win.h)

    def window(self, app: str) -> Rect | None:
        return self.win if app == "Fake" else None

    def activate(self, app: str) -> None:
        pass

    def _hit(self, x: float, y: float) -> str | None:
        cx, cy = self._cal(x, y)
        for name, (ex, ey, w, h, _) in SCENES.get(self.scene, {}).items():
            if ex <= cx < ex + w and ey <= cy < ey + h:
                return name
        return None

    def position(self) -> tuple[float, float]:
        """The next place the user points at; a third item first shows that screen (the
        user opened it by hand)."""
        if not self.positions:
            return self.pointer
        x, y, *scene = self.positions.pop(0)
        if scene:
            self.scene = scene[0]
        return (x, y)

    def move(self, x: float, y: float) -> None:
        self.pointer = (x, y)

    def _show(self, scene: str) -> None:
        self.scene = scene
        if self.popup_on == scene:
            self.popup, self.popup_on = True, None

    def click(self, x: float, y: float) -> None:
        self.clicks.append((x, y))
        self.pointer = (x, y)  # a click moves the pointer there (pyautogui's does)
        self.selected = False
        if self.popup:  # the card takes the click; only its button closes it
            cx, cy = self._cal(x, y)
            bx, by, bw, bh, _ = POPUP["close"]
            if bx <= cx < bx + bw and by <= cy < by + bh:
                self.popup = False
            return
        hit = self._hit(x, y)
        if self.scene == "form" and hit in ("name", "ticker"):
            self.focus = hit
        elif self.scene == "form" and hit == "tile" and self.tile_spends:
            self.creates.append({**self.fields, "photo": self.chosen})
            self._show("success")
        elif self.scene == "form" and hit == "tile":
            self._show("picker")
        elif self.scene == "picker" and hit == "header":
            self._show("form")  # the picker's title bar doubles as its Cancel
        elif self.scene == "picker" and hit == "thumb":
            self.chosen = self.picks or self.newest_photo
            self._show("form")
        elif self.scene == "form" and hit == "create":
            self.creates.append({**self.fields, "photo": self.chosen})
            # "none": something the flow has never seen as an outcome
            self._show({"success": "success", "error": "error", "none": "picker"}[self.outcome])
        elif self.scene == "success" and hit == "copy" and self.copy_works:
            self.clipboard = ADDRESS
        elif self.scene == "success" and hit == "done":
            self.fields = {"name": "", "ticker": ""}
            self._show("form")

    def type_keys(self, text: str, interval: float) -> None:
        assert all(" " <= c <= "~" for c in text)
        self.typed.append(text)
        if self.focus:
            self.fields[self.focus] += text

    def paste(self, text: str) -> None:
        self.pasted.append(text)
        if self.focus:
            self.fields[self.focus] += text

    def select_all(self) -> None:
        self.selected = self.focus is not None

    def copy(self) -> None:
        if self.selected and self.field_copy_works:
            self.clipboard = self.fields[self.focus]

    def clear_field(self) -> None:
        if self.focus and self.clear_works:
            self.fields[self.focus] = ""

    def clipboard_get(self) -> str:
        return self.clipboard

    def clipboard_set(self, text: str) -> None:
        self.clipboard = text


class FakeReader:
    """A TextReader double for the fake screen: it tells the name box from the ticker box
    by their drawn pattern and reads what that field holds (or what `shows` says the app
    displays instead), with `confidence`."""

    def __init__(self, fake: FakeScreen, confidence: float = 0.97):
        self.fake, self.confidence, self.reads = fake, confidence, 0

    def _field(self, image: Image.Image) -> str:
        def distance(name: str) -> float:
            x, y, w, h, seed = SCENES["form"][name]
            ref = pattern(w, h, seed).resize(image.size)
            return sum(ImageStat.Stat(ImageChops.difference(ref, image.convert("RGB"))).mean)

        return min(("name", "ticker"), key=distance)

    def read_line(self, image: Image.Image) -> Reading:
        self.reads += 1
        name = self._field(image)
        return Reading(self.fake.shows.get(name, self.fake.fields[name]), self.confidence)

    def read_block(self, image: Image.Image) -> list[Reading]:
        return [self.read_line(image)]
