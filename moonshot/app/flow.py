"""The app flow as data: parse and validate the flow TOML (one-line errors naming the
step), where the flow file lives, the scaling math from calibration to this screen,
and the Solana address check. No GUI, no I/O besides reading the flow file."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moonshot.app.safetext import NON_ASCII_METHODS
from moonshot.errors import ConfigError

PACKAGED = Path(__file__).parent / "flows" / "default.toml"
HOME_FLOW = "flow.toml"
# compare_photo's score at its thresholds (matching.py): a photo step accepting less lets
# look-alikes through, so photo_confidence and a photo step's confidence are at least this.
PHOTO_OK = 0.8

ACTIONS = (
    "activate",
    "click",
    "type",
    "wait",
    "verify",
    "check_photo",
    "read_text",
    "read_photo",
    "read_address",
    "outcome",
)
RESET_ACTIONS = ("activate", "click", "wait", "verify")  # a [[reset]] only moves around
OPTIONAL_ACTIONS = ("click", "wait", "verify")  # run if their image shows, else skipped
FIELDS = ("name", "ticker")
VERIFY_METHODS = ("clipboard", "ocr")  # how a type step reads its field back
TABLES = ("flow", "calibration", "step", "interrupt", "reset")
STEP_KEYS = {
    "name",
    "action",
    "image",
    "at",
    "hover",
    "region",
    "field",
    "timeout",
    "confidence",
    "irreversible",
    "check",
    "failure",
    "clear",
    "optional",
    "verify",
    "lines",
    "dollar",
    "min_confidence",
    "note",
}
INTERRUPT_KEYS = {"name", "image", "at", "target", "times", "confidence", "note"}
FLOW_KEYS = {
    "app",
    "non_ascii",
    "confidence",
    "timeout",
    "pause",
    "type_interval",
    "settle",
    "photo_confidence",
    "min_confidence",
    "verify",
}
CAL_KEYS = {"window", "pixel_ratio"}
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
OPTIONAL_WAIT = 1.0  # seconds an optional step waits for its image before it is skipped
MAX_LINES = 4  # read_text: the most lines a wrapped name may take
MAX_TIMES = 20  # an interrupt is handled at most this many times in one run
# Solana addresses are 32-byte public keys in base58 (no 0, O, I, l): 32-44 characters.
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ADDRESS_RE = re.compile(f"[{BASE58}]{{32,44}}")


class FlowError(ConfigError):
    """The flow file is invalid; the message names the file, the step and the fix."""


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)


@dataclass(frozen=True)
class Calibration:
    window: tuple[float, float]  # window size in points when the flow was calibrated
    pixel_ratio: float = 1.0  # screenshot pixels per point then (2.0 on Retina)


@dataclass(frozen=True)
class Step:
    """One [[step]], [[reset]] or [[interrupt]] entry (`section` says which); an
    interrupt's action is "interrupt": when `image` shows, click `target` or `at`."""

    index: int
    name: str
    action: str
    image: Path | None = None
    at: tuple[float, float] | None = None
    region: tuple[float, float, float, float] | None = None
    field: str | None = None
    timeout: float | None = None
    confidence: float | None = None
    irreversible: bool = False
    check: bool | None = None
    failure: tuple[Path, ...] = ()
    clear: bool = False
    section: str = "step"  # step | reset | interrupt
    optional: bool = False
    verify: str | None = None  # type: clipboard | ocr (None: the flow's default)
    lines: int = 1  # read_text: how many lines the text may wrap to
    min_confidence: float | None = None  # read_text, type with verify = "ocr"
    # read_text of the ticker: True, the app always shows "$" before it; False, never;
    # None, either (a "$" read as "$" is dropped).
    dollar: bool | None = None
    # The image shows an element with the pointer over it (its hover look: recorded
    # while the person's pointer rested there): the runner points at this place
    # (window points at calibration) instead of parking the pointer, before it looks.
    hover: tuple[float, float] | None = None
    target: Path | None = None  # interrupt: the image to click (default: its image)
    times: int = 1  # interrupt: at most this many times per run

    @property
    def label(self) -> str:
        return f"{self.section} {self.index} {self.name!r}"

    def images(self) -> list[Path]:
        own = [p for p in (self.image, self.target) if p is not None]
        return own + list(self.failure)


@dataclass(frozen=True)
class Flow:
    path: Path
    app: str
    steps: tuple[Step, ...]
    calibration: Calibration
    non_ascii: str = "paste"
    confidence: float = 0.9
    timeout: float = 10.0
    pause: float = 0.05
    type_interval: float = 0.0
    settle: float = 0.2
    photo_confidence: float = PHOTO_OK
    min_confidence: float = 0.8
    verify: str = "clipboard"
    reset: tuple[Step, ...] = ()
    interrupts: tuple[Step, ...] = ()
    digest: str = field(default="", compare=False)

    @property
    def irreversible_index(self) -> int:
        return next(i for i, s in enumerate(self.steps) if s.irreversible)

    @property
    def before(self) -> tuple[Step, ...]:
        """Everything up to (not including) the irreversible step: `prepare`, dry run."""
        return self.steps[: self.irreversible_index]

    @property
    def after(self) -> tuple[Step, ...]:
        """The irreversible step and the rest: `launch`."""
        return self.steps[self.irreversible_index :]

    @property
    def entries(self) -> tuple[Step, ...]:
        """Every step, reset step and interrupt: what has images and names."""
        return self.steps + self.reset + self.interrupts

    def entry(self, name: str) -> Step | None:
        return next((s for s in self.entries if s.name == name), None)

    def before_spend(self, step: Step) -> bool:
        """Shown before the irreversible click (so its images can be captured without
        spending): steps up to it, the reset sequence and the interrupts."""
        return step.section != "step" or step.index <= self.steps[self.irreversible_index].index

    def checked(self, step: Step) -> bool:
        """`flow check` looks for this step's image on the current screen: by default
        the steps before the irreversible one (later screens exist only after a launch);
        never the reset steps and interrupts (other screens, popups at random)."""
        if step.section != "step":
            return False
        if step.check is not None:
            return step.check
        return step.index <= self.steps[self.irreversible_index].index and step.image is not None

    def missing_images(self) -> list[tuple[Step, Path]]:
        return [(s, p) for s in self.entries for p in s.images() if not p.is_file()]

    def verify_method(self, step: Step) -> str:
        return step.verify or self.verify


def flow_path(home: Path, configured: str = "") -> Path:
    """launch.flow if set (relative to home), else home's flow.toml, else the packaged one."""
    if configured:
        p = Path(configured).expanduser()
        return p if p.is_absolute() else home / p
    own = home / HOME_FLOW
    return own if own.exists() else PACKAGED


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _nums(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(_num(v) for v in value)


def load(path: Path) -> Flow:
    """Parse and validate a flow file; FlowError (one line) naming the step and the fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise FlowError(
            f"flow file {path} not found; run `moonshot flow calibrate` or set launch.flow"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FlowError(f"{path}: not valid TOML ({exc})") from None
    return parse(data, path, raw)


def parse(data: dict[str, Any], path: Path, raw: bytes = b"") -> Flow:
    where = str(path)
    unknown = set(data) - set(TABLES)
    if unknown:
        raise FlowError(
            f"{where}: unknown table [{sorted(unknown)[0]}]; expected [flow], [calibration],"
            " [[step]], [[interrupt]], [[reset]]"
        )
    head = data.get("flow", {})
    cal = data.get("calibration", {})
    for table, keys, allowed in (("flow", head, FLOW_KEYS), ("calibration", cal, CAL_KEYS)):
        if not isinstance(keys, dict):
            raise FlowError(f"{where}: [{table}] must be a table")
        bad = set(keys) - allowed
        if bad:
            raise FlowError(
                f"{where}: unknown key {table}.{sorted(bad)[0]}; known: {', '.join(sorted(allowed))}"
            )
    app = head.get("app")
    if not isinstance(app, str) or not app.strip() or any(ord(c) < 32 for c in app):
        raise FlowError(f'{where}: flow.app must name the app window, e.g. app = "Moonshot"')
    non_ascii = head.get("non_ascii", "paste")
    if non_ascii not in NON_ASCII_METHODS:
        raise FlowError(f"{where}: flow.non_ascii = {non_ascii!r}: expected paste or refuse")
    verify = head.get("verify", "clipboard")
    if verify not in VERIFY_METHODS:
        raise FlowError(
            f"{where}: flow.verify = {verify!r}: expected clipboard (select all + copy) or ocr"
        )
    opts: dict[str, float] = {}
    for key, lo, hi in (
        ("confidence", 0.5, 1.0),
        ("photo_confidence", PHOTO_OK, 1.0),
        ("min_confidence", 0.3, 1.0),
        ("timeout", 0.1, 600),
        ("pause", 0.0, 2.0),
        ("type_interval", 0.0, 1.0),
        ("settle", 0.0, 10.0),
    ):
        if key in head:
            v = head[key]
            if not _num(v) or not lo <= v <= hi:
                raise FlowError(f"{where}: flow.{key} = {v!r}: expected a number from {lo} to {hi}")
            opts[key] = float(v)
    window = cal.get("window")
    if not _nums(window, 2) or min(window) <= 0:
        raise FlowError(
            f"{where}: calibration.window must be [width, height] in points; run `moonshot flow calibrate`"
        )
    ratio = cal.get("pixel_ratio", 1.0)
    if not _num(ratio) or not 0.5 <= ratio <= 4:
        raise FlowError(
            f"{where}: calibration.pixel_ratio = {ratio!r}: expected 1.0, or 2.0 on Retina"
        )
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise FlowError(
            f"{where}: no [[step]]; a flow needs its steps, one marked irreversible = true"
        )
    sections = {}
    for section in ("step", "reset", "interrupt"):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise FlowError(f"{where}: {section} must be written [[{section}]] (a list of tables)")
        parse_one = _interrupt if section == "interrupt" else _step
        sections[section] = tuple(
            parse_one(i, s, path.parent, where, section) for i, s in enumerate(entries, 1)
        )
    steps, reset, interrupts = sections["step"], sections["reset"], sections["interrupt"]
    _check_order(steps, where)
    _check_names(steps + reset + interrupts, where)
    _check_read_back(steps, where)
    for s in steps:
        if s.action == "type" and (s.verify or verify) == "ocr" and s.region is None:
            raise FlowError(
                f'{where}: {s.label}: verify = "ocr" reads the field back from the screen:'
                " it needs region = [x, y, width, height] of the field"
            )
    for s in reset:
        if s.action not in RESET_ACTIONS:
            raise FlowError(
                f"{where}: {s.label}: action {s.action} cannot be in [[reset]]; a reset only"
                f" moves back to the start screen ({', '.join(RESET_ACTIONS)})"
            )
    digest = hashlib.sha256(raw)
    for s in steps + reset + interrupts:
        for p in s.images():
            digest.update(p.name.encode())
            digest.update(p.read_bytes() if p.is_file() else b"<missing>")
    return Flow(
        path,
        app,
        steps,
        Calibration((float(window[0]), float(window[1])), float(ratio)),
        non_ascii,
        verify=verify,
        reset=reset,
        interrupts=interrupts,
        digest=digest.hexdigest(),
        **opts,
    )


def _header(i: int, s: Any, where: str, section: str, allowed: set[str]) -> tuple[str, str]:
    if not isinstance(s, dict):
        raise FlowError(f"{where}: {section} {i} must be a table [[{section}]]")
    name = s.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FlowError(
            f"{where}: {section} {i}: name = {name!r}: expected 1-40 of a-z 0-9 _ -"
            ' (e.g. "tap-create")'
        )
    label = f"{where}: {section} {i} {name!r}"
    bad = set(s) - allowed
    if bad:
        raise FlowError(
            f"{label}: unknown key {sorted(bad)[0]!r}; known: {', '.join(sorted(allowed))}"
        )
    return name, label


def _image(label: str, base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value.endswith(".png") or "\x00" in value:
        raise FlowError(f"{label}: {key} must be a .png file name, relative to the flow file")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _point(label: str, at: Any, key: str = "at") -> tuple[float, float] | None:
    if at is None:
        return None
    if not _nums(at, 2) or min(at) < 0:
        raise FlowError(
            f"{label}: {key} must be [x, y] points from the window's top-left at calibration"
        )
    return (float(at[0]), float(at[1]))


def _ranged(label: str, s: dict, key: str, lo: float, hi: float) -> float | None:
    v = s.get(key)
    if v is not None and (not _num(v) or not lo <= v <= hi):
        raise FlowError(f"{label}: {key} = {v!r}: expected a number from {lo} to {hi}")
    return None if v is None else float(v)


def _step(i: int, s: Any, base: Path, where: str, section: str = "step") -> Step:
    name, label = _header(i, s, where, section, STEP_KEYS)
    action = s.get("action")
    if action not in ACTIONS:
        raise FlowError(f"{label}: action = {action!r}: expected one of {', '.join(ACTIONS)}")
    img = _image(label, base, s["image"], "image") if "image" in s else None
    at = _point(label, s.get("at"))
    hover = _point(label, s.get("hover"), "hover")
    region = s.get("region")
    if region is not None and (not _nums(region, 4) or min(region) < 0 or min(region[2:]) <= 0):
        raise FlowError(
            f"{label}: region must be [x, y, width, height] points relative to the window"
        )
    fld = s.get("field")
    failure = s.get("failure", [])
    if not isinstance(failure, list):
        raise FlowError(f"{label}: failure must be a list of .png file names")
    fails = tuple(_image(label, base, f, "failure") for f in failure)
    timeout = _ranged(label, s, "timeout", 0.0, 600.0)
    # A photo step's score is compare_photo's: below PHOTO_OK it accepts look-alikes.
    photo_step = action in ("check_photo", "read_photo")
    confidence = _ranged(label, s, "confidence", PHOTO_OK if photo_step else 0.5, 1.0)
    min_conf = _ranged(label, s, "min_confidence", 0.3, 1.0)
    for key in ("irreversible", "check", "clear", "optional", "dollar"):
        if key in s and not isinstance(s[key], bool):
            raise FlowError(f"{label}: {key} must be true or false")
    lines = s.get("lines", 1)
    if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= MAX_LINES:
        raise FlowError(
            f"{label}: lines = {lines!r}: expected a whole number from 1 to {MAX_LINES}"
        )
    verify = s.get("verify")
    if verify is not None and verify not in VERIFY_METHODS:
        raise FlowError(
            f"{label}: verify = {verify!r}: expected clipboard (select all + copy) or ocr"
        )

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise FlowError(f"{label}: action {action} {what}")

    if action in ("click", "read_address"):
        need((img is None) != (at is None), 'needs exactly one of image = "x.png" or at = [x, y]')
    if action in ("wait", "verify", "outcome"):
        need(img is not None, 'needs image = "x.png"')
    if action in ("type", "read_text"):
        need(
            fld in FIELDS,
            'needs field = "name" or "ticker" (untrusted text is never written in the flow)',
        )
    if action == "check_photo":
        need(
            region is not None,
            "needs region = [x, y, width, height] of the picker's first thumbnail",
        )
    if action == "read_text":
        need(
            region is not None,
            f"needs region = [x, y, width, height] where the app shows the {fld}",
        )
        need(fld == "name" or lines == 1, "reads a ticker on one line: lines = 1")
    if action == "read_photo":
        need(
            region is not None,
            "needs region = [x, y, width, height] where the app shows the chosen picture",
        )
    if "lines" in s:
        need(action == "read_text", "cannot have lines (only read_text can)")
    if "dollar" in s:
        need(
            action == "read_text" and fld == "ticker",
            "cannot have dollar (only read_text of the ticker can)",
        )
    if min_conf is not None:
        need(
            action in ("read_text", "type"), "cannot have min_confidence (only read_text and type)"
        )
    if verify is not None:
        need(action == "type", "cannot have verify (only type can)")
    if s.get("clear"):
        need(action in ("type", "click"), "cannot clear a field (only type and click can)")
    if failure:
        need(action == "outcome", "cannot have failure images (only outcome can)")
    if hover is not None:
        need(img is not None, 'cannot have hover without image = "x.png" (it says how to look)')
    if s.get("irreversible"):
        need(action == "click", "cannot be irreversible: only a click can be")
        need(section == "step", "cannot be irreversible in [[reset]]")
        need(not s.get("clear"), "cannot clear a field: it is the click that spends")
    if s.get("optional"):
        need(
            action in OPTIONAL_ACTIONS and img is not None and not s.get("irreversible"),
            'cannot be optional: only a click, wait or verify with image = "x.png" can be'
            " (it runs when its image shows)",
        )
    return Step(
        i,
        name,
        action,
        img,
        at,
        tuple(float(v) for v in region) if region else None,
        fld,
        timeout,
        confidence,
        bool(s.get("irreversible", False)),
        s.get("check"),
        fails,
        bool(s.get("clear", False)),
        section=section,
        optional=bool(s.get("optional", False)),
        verify=verify,
        lines=lines,
        min_confidence=min_conf,
        dollar=s.get("dollar"),
        hover=hover,
    )


def _interrupt(i: int, s: Any, base: Path, where: str, section: str = "interrupt") -> Step:
    name, label = _header(i, s, where, section, INTERRUPT_KEYS)
    if "image" not in s:
        raise FlowError(f'{label}: needs image = "x.png", the popup it answers')
    img = _image(label, base, s["image"], "image")
    at = _point(label, s.get("at"))
    target = _image(label, base, s["target"], "target") if "target" in s else None
    if at is not None and target is not None:
        raise FlowError(
            f'{label}: give at most one of target = "x.png" or at = [x, y] (what to click)'
        )
    times = s.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_TIMES:
        raise FlowError(
            f"{label}: times = {times!r}: expected a whole number from 1 to {MAX_TIMES}"
        )
    return Step(
        i,
        name,
        "interrupt",
        img,
        at,
        confidence=_ranged(label, s, "confidence", 0.5, 1.0),
        section=section,
        target=target,
        times=times,
    )


def _check_names(entries: tuple[Step, ...], where: str) -> None:
    seen: dict[str, Step] = {}
    for s in entries:
        if s.name in seen:
            raise FlowError(
                f"{where}: name {s.name!r} is used twice ({seen[s.name].label}, {s.label});"
                " names must be unique across steps, resets and interrupts"
            )
        seen[s.name] = s


def _check_order(steps: tuple[Step, ...], where: str) -> None:
    marked = [s for s in steps if s.irreversible]
    if len(marked) != 1:
        which = ", ".join(repr(s.name) for s in marked) or "none"
        raise FlowError(
            f"{where}: exactly one step must be irreversible = true (the click that spends), found {which}"
        )
    cut = marked[0].index
    before_only = ("type", "check_photo", "read_text", "read_photo")
    for s in steps:
        if s.index < cut and s.action in ("outcome", "read_address"):
            raise FlowError(
                f"{where}: {s.label}: {s.action} must come after the irreversible step {marked[0].name!r}"
            )
        if s.index > cut and s.action in before_only:
            raise FlowError(
                f"{where}: {s.label}: {s.action} must come before the irreversible step {marked[0].name!r}"
            )
        if s.index > cut and s.optional:
            raise FlowError(
                f"{where}: {s.label}: optional steps must come before the irreversible step"
                f" {marked[0].name!r}; after it an unexpected screen is for a person (needs_review)"
            )
    if not any(s.action in ("outcome", "read_address") for s in steps[cut:]):
        raise FlowError(
            f"{where}: no outcome or read_address step after the irreversible step"
            f" {marked[0].name!r}; without one a failed launch would be recorded as launched"
        )


def _check_read_back(steps: tuple[Step, ...], where: str) -> None:
    """Invariant 6: between the last step that changes what the app will use (typing;
    for the picture, also the picker check) and the irreversible click, the flow reads
    back what the app shows."""
    cut = next(s for s in steps if s.irreversible)
    last_type = max((s.index for s in steps if s.action == "type"), default=0)
    last_pick = max((s.index for s in steps if s.action == "check_photo"), default=last_type)
    need = [
        ("read_text", "ticker", last_type, 'read_text step with field = "ticker"', "the ticker"),
        ("read_text", "name", last_type, 'read_text step with field = "name"', "the name"),
        ("read_photo", None, max(last_type, last_pick), "read_photo step", "the chosen picture"),
    ]
    for action, fld, bound, what, shows in need:
        if any(
            s.action == action and s.field == fld and bound < s.index < cut.index for s in steps
        ):
            continue
        span = f"between {steps[bound - 1].label} and" if bound else "before"
        raise FlowError(
            f"{where}: no {what} {span} the irreversible step {cut.name!r}; the flow must"
            f" read back {shows} where the app shows it before the spend"
            ' (invariant 6; README "Read-back steps")'
        )


# -- scaling: calibration -> this screen ------------------------------------------------
def to_screen(at: tuple[float, float], cal: Calibration, window: Rect) -> tuple[float, float]:
    """A point stored relative to the calibrated window, on the window as it is now (points)."""
    return (
        window.x + at[0] * window.w / cal.window[0],
        window.y + at[1] * window.h / cal.window[1],
    )


def region_on_screen(
    region: tuple[float, float, float, float], cal: Calibration, window: Rect
) -> Rect:
    x, y = to_screen((region[0], region[1]), cal, window)
    return Rect(x, y, region[2] * window.w / cal.window[0], region[3] * window.h / cal.window[1])


def image_scale(cal: Calibration, window: Rect, pixel_ratio: float) -> float:
    """How much larger a reference image captured at calibration appears in today's
    screenshot: the change in pixel ratio (Retina or not) times the window's growth."""
    return (pixel_ratio / cal.pixel_ratio) * (window.w / cal.window[0])


def pixels_to_points(rect: Rect, pixel_ratio: float) -> Rect:
    r = pixel_ratio
    return Rect(rect.x / r, rect.y / r, rect.w / r, rect.h / r)


def valid_address(text: str | None) -> str | None:
    """The Solana address in the text (whitespace around it ignored), or None."""
    if not isinstance(text, str):
        return None
    candidate = text.strip()
    if not ADDRESS_RE.fullmatch(candidate):
        return None
    return candidate if _base58_bytes(candidate) == 32 else None


def _base58_bytes(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 58 + BASE58.index(ch)
    pad = len(text) - len(text.lstrip("1"))
    return pad + (n.bit_length() + 7) // 8
