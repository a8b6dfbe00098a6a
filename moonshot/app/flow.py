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

ACTIONS = ("activate", "click", "type", "wait", "verify", "check_photo", "read_address", "outcome")
FIELDS = ("name", "ticker")
STEP_KEYS = {
    "name",
    "action",
    "image",
    "at",
    "region",
    "field",
    "timeout",
    "confidence",
    "irreversible",
    "check",
    "failure",
    "clear",
    "note",
}
FLOW_KEYS = {
    "app",
    "non_ascii",
    "confidence",
    "timeout",
    "pause",
    "type_interval",
    "settle",
    "photo_confidence",
}
CAL_KEYS = {"window", "pixel_ratio"}
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
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

    @property
    def label(self) -> str:
        return f"step {self.index} {self.name!r}"

    def images(self) -> list[Path]:
        return ([self.image] if self.image else []) + list(self.failure)


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
    photo_confidence: float = 0.8
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

    def checked(self, step: Step) -> bool:
        """`flow check` looks for this step's image on the current screen: by default
        the steps before the irreversible one (later screens exist only after a launch)."""
        if step.check is not None:
            return step.check
        return step.index <= self.steps[self.irreversible_index].index and step.image is not None

    def missing_images(self) -> list[tuple[Step, Path]]:
        return [(s, p) for s in self.steps for p in s.images() if not p.is_file()]


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
    unknown = set(data) - {"flow", "calibration", "step"}
    if unknown:
        raise FlowError(
            f"{where}: unknown table [{sorted(unknown)[0]}]; expected [flow], [calibration], [[step]]"
        )
    head = data.get("flow", {})
    cal = data.get("calibration", {})
    for table, keys, allowed in (("flow", head, FLOW_KEYS), ("calibration", cal, CAL_KEYS)):
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
    opts: dict[str, float] = {}
    for key, lo, hi in (
        ("confidence", 0.5, 1.0),
        ("photo_confidence", 0.3, 1.0),
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
    steps = tuple(_step(i, s, path.parent, where) for i, s in enumerate(raw_steps, 1))
    _check_order(steps, where)
    digest = hashlib.sha256(raw)
    for s in steps:
        for p in s.images():
            digest.update(p.name.encode())
            digest.update(p.read_bytes() if p.is_file() else b"<missing>")
    return Flow(
        path,
        app,
        steps,
        Calibration((float(window[0]), float(window[1])), float(ratio)),
        non_ascii,
        digest=digest.hexdigest(),
        **opts,
    )


def _step(i: int, s: Any, base: Path, where: str) -> Step:
    if not isinstance(s, dict):
        raise FlowError(f"{where}: step {i} must be a table [[step]]")
    name = s.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FlowError(
            f'{where}: step {i}: name = {name!r}: expected 1-40 of a-z 0-9 _ - (e.g. "tap-create")'
        )
    label = f"{where}: step {i} {name!r}"
    bad = set(s) - STEP_KEYS
    if bad:
        raise FlowError(
            f"{label}: unknown key {sorted(bad)[0]!r}; known: {', '.join(sorted(STEP_KEYS))}"
        )
    action = s.get("action")
    if action not in ACTIONS:
        raise FlowError(f"{label}: action = {action!r}: expected one of {', '.join(ACTIONS)}")

    def image(value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value.endswith(".png") or "\x00" in value:
            raise FlowError(f"{label}: {key} must be a .png file name, relative to the flow file")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    img = image(s["image"], "image") if "image" in s else None
    at = s.get("at")
    if at is not None and (not _nums(at, 2) or min(at) < 0):
        raise FlowError(
            f"{label}: at must be [x, y] points from the window's top-left at calibration"
        )
    region = s.get("region")
    if region is not None and (not _nums(region, 4) or min(region) < 0 or min(region[2:]) <= 0):
        raise FlowError(
            f"{label}: region must be [x, y, width, height] points relative to the window"
        )
    fld = s.get("field")
    failure = s.get("failure", [])
    if not isinstance(failure, list):
        raise FlowError(f"{label}: failure must be a list of .png file names")
    fails = tuple(image(f, "failure") for f in failure)
    for key, lo, hi in (("timeout", 0.0, 600.0), ("confidence", 0.5, 1.0)):
        v = s.get(key)
        if v is not None and (not _num(v) or not lo <= v <= hi):
            raise FlowError(f"{label}: {key} = {v!r}: expected a number from {lo} to {hi}")
    for key in ("irreversible", "check", "clear"):
        if key in s and not isinstance(s[key], bool):
            raise FlowError(f"{label}: {key} must be true or false")

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise FlowError(f"{label}: action {action} {what}")

    if action in ("click", "read_address"):
        need((img is None) != (at is None), 'needs exactly one of image = "x.png" or at = [x, y]')
    if action in ("wait", "verify", "outcome"):
        need(img is not None, 'needs image = "x.png"')
    if action == "type":
        need(
            fld in FIELDS,
            'needs field = "name" or "ticker" (untrusted text is never written in the flow)',
        )
    if action == "check_photo":
        need(
            region is not None,
            "needs region = [x, y, width, height] of the picker's first thumbnail",
        )
    if failure:
        need(action == "outcome", "cannot have failure images (only outcome can)")
    if s.get("irreversible"):
        need(action == "click", "cannot be irreversible: only a click can be")
    return Step(
        i,
        name,
        action,
        img,
        tuple(float(v) for v in at) if at else None,
        tuple(float(v) for v in region) if region else None,
        fld,
        float(s["timeout"]) if "timeout" in s else None,
        float(s["confidence"]) if "confidence" in s else None,
        bool(s.get("irreversible", False)),
        s.get("check"),
        fails,
        bool(s.get("clear", False)),
    )


def _check_order(steps: tuple[Step, ...], where: str) -> None:
    names = [s.name for s in steps]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise FlowError(f"{where}: step name {dup!r} is used twice; names must be unique")
    marked = [s for s in steps if s.irreversible]
    if len(marked) != 1:
        which = ", ".join(repr(s.name) for s in marked) or "none"
        raise FlowError(
            f"{where}: exactly one step must be irreversible = true (the click that spends), found {which}"
        )
    cut = marked[0].index
    for s in steps:
        if s.index < cut and s.action in ("outcome", "read_address"):
            raise FlowError(
                f"{where}: {s.label}: {s.action} must come after the irreversible step {marked[0].name!r}"
            )
        if s.index > cut and s.action in ("type", "check_photo"):
            raise FlowError(
                f"{where}: {s.label}: {s.action} must come before the irreversible step {marked[0].name!r}"
            )
    if not any(s.action in ("outcome", "read_address") for s in steps[cut + 1 :]):
        raise FlowError(
            f"{where}: no outcome or read_address step after the irreversible step"
            f" {marked[0].name!r}; without one a failed launch would be recorded as launched"
        )
    if not any(s.action == "check_photo" for s in steps[: cut - 1]):
        raise FlowError(
            f"{where}: no check_photo step before {marked[0].name!r}; the flow must prove the"
            " picker's first thumbnail is the coin's image (invariant 2)"
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


# -- writing (calibrate) ----------------------------------------------------------------
def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(round(float(value), 2)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a flow file")


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def dump(flow: Flow) -> str:
    """The flow as TOML, image paths relative to the flow file (what calibrate writes)."""
    base = flow.path.parent
    out = [
        '# Written by `moonshot flow calibrate`; see the README, "Moonshot app automation".',
        "[flow]",
        f"app = {_toml(flow.app)}",
    ]
    for key in (
        "non_ascii",
        "confidence",
        "photo_confidence",
        "timeout",
        "pause",
        "type_interval",
        "settle",
    ):
        out.append(f"{key} = {_toml(getattr(flow, key))}")
    out += [
        "",
        "[calibration]",
        f"window = {_toml(list(flow.calibration.window))}",
        f"pixel_ratio = {_toml(flow.calibration.pixel_ratio)}",
    ]
    for s in flow.steps:
        out += ["", "[[step]]", f"name = {_toml(s.name)}", f"action = {_toml(s.action)}"]
        if s.image:
            out.append(f"image = {_toml(_rel(s.image, base))}")
        for key in ("at", "region", "field", "timeout", "confidence"):
            if getattr(s, key) is not None:
                out.append(f"{key} = {_toml(getattr(s, key))}")
        if s.failure:
            out.append(f"failure = {_toml([_rel(p, base) for p in s.failure])}")
        if s.check is not None:
            out.append(f"check = {_toml(s.check)}")
        if s.clear:
            out.append("clear = true")
        if s.irreversible:
            out.append("irreversible = true")
    return "\n".join(out) + "\n"
