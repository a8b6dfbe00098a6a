"""Runs flow steps on a screen `Driver` (pyautogui, or a drawn fake in unit tests) and
saves a screenshot for every failed step. Never clicks the irreversible step twice in a
run, never retries it, never types text that safetext did not clear; reads back what
the app shows before the spend and answers interrupts only before it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from PIL import Image

from moonshot.app import matching as imagematch
from moonshot.app import readback, safetext
from moonshot.app.flow import (
    OPTIONAL_WAIT,
    Flow,
    Rect,
    Step,
    image_scale,
    region_on_screen,
    to_screen,
    valid_address,
)
from moonshot.app.ocr import TextReader
from moonshot.errors import MoonshotError

READ_WAIT = 2.0  # seconds a read-back looks again before it fails (a screen still drawing)
COPY_WAIT = 1.5  # seconds select all + copy may take to reach the clipboard
HOVER_SETTLE = 0.12  # seconds an app takes to draw a hover look (or take it away)


class Driver(Protocol):
    """The screen, mouse, keyboard and clipboard; coordinates in points."""

    def screen_size(self) -> tuple[int, int]: ...
    def screenshot(self) -> Image.Image: ...  # the whole screen, in pixels
    def window(self, app: str) -> Rect | None: ...
    def activate(self, app: str) -> None: ...
    def click(self, x: float, y: float) -> None: ...
    def move(self, x: float, y: float) -> None: ...
    def type_keys(self, text: str, interval: float) -> None: ...
    def paste(self, text: str) -> None: ...
    def clear_field(self) -> None: ...  # empty the focused field (select all, delete)
    def select_all(self) -> None: ...  # select all the text of the focused field
    def copy(self) -> None: ...  # copy the selection to the clipboard
    def clipboard_get(self) -> str: ...
    def clipboard_set(self, text: str) -> None: ...


class StepFailed(MoonshotError):
    """A step did not do what it should. `mismatch`: a read-back did not confirm the coin
    (the app showed other text or another picture, or a field could not be read back), as
    opposed to a screen that did not come or a window that is missing."""

    def __init__(
        self,
        step: Step,
        reason: str,
        screenshot: Path | None,
        clicked: bool,
        mismatch: bool = False,
    ):
        shot = f"; screenshot {screenshot}" if screenshot else ""
        super().__init__(f"flow {step.label} ({step.action}) failed: {reason}{shot}")
        self.step, self.reason, self.screenshot, self.irreversible_clicked = (
            step,
            reason,
            screenshot,
            clicked,
        )
        self.mismatch = mismatch


@dataclass
class Context:
    """One coin's values for the flow: already trimmed to the app's limits."""

    coin_id: int
    name: str
    ticker: str
    photo: Path
    results: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckLine:
    step: Step
    level: str  # ok | warn | fail
    message: str

    @property
    def ok(self) -> bool:
        return self.level != "fail"


class Runner:
    def __init__(
        self,
        flow: Flow,
        driver: Driver,
        screens_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_irreversible: Callable[[], None] | None = None,
        reader: TextReader | None = None,
    ):
        self.flow, self.driver, self.screens_dir = flow, driver, Path(screens_dir)
        self.clock, self.sleep = clock, sleep
        self.on_irreversible = on_irreversible
        self._reader = reader
        self.window: Rect | None = None
        self.irreversible_clicked = False
        self.handled: dict[str, int] = {}  # interrupt name -> times answered in this run
        self._refs: dict[Path, Image.Image] = {}
        self._ctx: Context | None = None  # the coin of the run going on (for screenshots)

    @property
    def reader(self) -> TextReader:
        """The OCR engine, loaded at the first read (RapidOCR, models inside the wheel)."""
        if self._reader is None:
            from moonshot.app.ocr import default_reader

            self._reader = default_reader()
        return self._reader

    # -- running -------------------------------------------------------------------------
    def run(self, steps: tuple[Step, ...], ctx: Context) -> dict[str, str]:
        self._ctx = ctx
        for step in steps:
            try:
                if step.action != "activate" and self._interruptible(step):
                    self._answer_interrupts(step, self.driver.screenshot())
                self._do(step, ctx)
            except StepFailed:
                raise
            except Exception as exc:  # a driver or OS error: still a failed step, with a screenshot
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                raise StepFailed(
                    step, reason, self.save_screen(step, ctx.coin_id), self.irreversible_clicked
                ) from exc
        if self.handled:
            ctx.results["interrupts"] = ", ".join(f"{k} x{v}" for k, v in self.handled.items())
        return ctx.results

    def _fail(self, step: Step, ctx: Context, reason: str, mismatch: bool = False) -> StepFailed:
        return StepFailed(
            step, reason, self.save_screen(step, ctx.coin_id), self.irreversible_clicked, mismatch
        )

    def save_screen(self, step: Step, coin_id: int | None) -> Path | None:
        """Save what the screen shows now into logs/screens/; None if even that fails."""
        try:
            self.screens_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            path = (
                self.screens_dir
                / f"{stamp}-coin{coin_id if coin_id is not None else 'none'}-{step.name}.png"
            )
            self.driver.screenshot().save(path)
            return path
        except Exception:
            return None

    def _win(self, step: Step, ctx: Context) -> Rect:
        if self.window is None:
            self.window = self.driver.window(self.flow.app)
            if self.window is None:
                raise self._fail(step, ctx, f"no window {self.flow.app!r} on screen; open the app")
        return self.window

    def _ratio(self, shot: Image.Image) -> float:
        return shot.width / self.driver.screen_size()[0]

    def _ref(self, path: Path, step: Step | None = None) -> Image.Image:
        if not path.is_file():
            raise FileNotFoundError(
                f"reference image {path.name} is missing; capture it with `moonshot flow"
                f" calibrate --step {step.name if step else 'NAME'}` while that screen shows"
            )
        if path not in self._refs:
            with Image.open(path) as img:
                self._refs[path] = img.convert("RGB")
        return self._refs[path]

    def find(self, step: Step, image: Path, shot: Image.Image) -> imagematch.Match | None:
        """Where the reference image is in this screenshot (pixels), searched inside the window."""
        ratio = self._ratio(shot)
        win = self.window
        region = Rect(win.x * ratio, win.y * ratio, win.w * ratio, win.h * ratio) if win else None
        scale = image_scale(self.flow.calibration, win, ratio) if win else 1.0
        return imagematch.locate(self._ref(image, step), shot, scale, region)

    def find_as_recorded(
        self, step: Step, image: Path, shot: Image.Image
    ) -> imagematch.Match | None:
        """`find`, with the pointer where the step's own image was recorded: an image in
        its hover look (`hover`) is looked for in a new screenshot with the pointer on it
        (then parked again); any other image in `shot`, taken parked."""
        if step.hover is None or image != step.image:
            return self.find(step, image, shot)
        self.pose(step)
        found = self.find(step, image, self.driver.screenshot())
        self.park()
        return found

    def _crop(self, shot: Image.Image, region: tuple[float, float, float, float]) -> Image.Image:
        """A region stored in calibration points, cut out of this screenshot."""
        assert self.window is not None
        area = region_on_screen(region, self.flow.calibration, self.window)
        r = self._ratio(shot)
        return shot.crop(
            (
                round(area.x * r),
                round(area.y * r),
                round((area.x + area.w) * r),
                round((area.y + area.h) * r),
            )
        )

    def park(self) -> None:
        """Move the pointer just outside the app window (never to a screen corner: that is
        pyautogui's fail-safe): a hover highlight must not change what the images show."""
        win = self.window
        if win is None:
            return
        width, height = self.driver.screen_size()
        x = win.x + win.w + 8 if win.x + win.w + 8 < width - 2 else max(2, win.x - 8)
        y = min(max(2, win.y + win.h / 2), height - 3)
        self.driver.move(x, y)

    def pose(self, step: Step, settle: bool = True) -> None:
        """The pointer where a step's image was captured: on the element for an image
        recorded in its hover look (`hover`), else parked outside the window."""
        if step.hover is None or self.window is None:
            self.park()
            return
        self.driver.move(*to_screen(step.hover, self.flow.calibration, self.window))
        if settle:
            self.sleep(HOVER_SETTLE)  # the app draws its hover look

    # -- interrupts: popups answered before the irreversible click, never after --------
    def _interruptible(self, step: Step) -> bool:
        if self.irreversible_clicked or not self.flow.interrupts:
            return False
        cut = self.flow.steps[self.flow.irreversible_index].index
        return step.section == "reset" or (step.section == "step" and step.index < cut)

    def _answer_interrupts(self, step: Step, shot: Image.Image) -> bool:
        """Click away every interrupt showing in this screenshot (each at most its `times`
        in this run); True if one was answered (the screen changed: look again)."""
        if self.window is None or not self._interruptible(step):
            return False
        answered = False
        for _ in range(len(self.flow.interrupts)):
            hit = None
            for popup in self.flow.interrupts:
                if self.handled.get(popup.name, 0) >= popup.times:
                    continue
                m = self.find(popup, popup.image, shot)
                if m and m.score >= (popup.confidence or self.flow.confidence):
                    hit = (popup, m)
                    break
            if hit is None:
                return answered
            popup, m = hit
            ratio = self._ratio(shot)
            if popup.at is not None:
                x, y = to_screen(popup.at, self.flow.calibration, self.window)
            else:
                target = self.find(popup, popup.target, shot) if popup.target else m
                if target is None or target.score < (popup.confidence or self.flow.confidence):
                    return answered  # the popup's button is not there (yet): look again later
                x, y = target.rect.center[0] / ratio, target.rect.center[1] / ratio
            self._not_on_spend(popup, self._ctx or Context(0, "", "", Path()), (x, y))
            self.driver.click(x, y)
            self.handled[popup.name] = self.handled.get(popup.name, 0) + 1
            answered = True
            self.sleep(self.flow.settle)
            self.park()
            shot = self.driver.screenshot()
        return answered

    def _wait_for(
        self, step: Step, image: Path, timeout: float
    ) -> tuple[imagematch.Match | None, float, float]:
        """Poll until the image shows: (match or None, best score, screenshot pixel ratio).
        Interrupts showing meanwhile are answered (before the irreversible step)."""
        self.pose(step)
        conf = step.confidence or self.flow.confidence
        deadline = self.clock() + timeout
        while True:
            shot = self.driver.screenshot()
            m = self.find(step, image, shot)
            best = m.score if m else 0.0
            if m and best >= conf:
                return m, best, self._ratio(shot)
            started = self.clock()
            if self._answer_interrupts(step, shot):
                deadline += self.clock() - started  # the popup's time is not the step's
                continue
            if self.clock() >= deadline:
                return None, best, self._ratio(shot)
            if step.hover is not None:  # an interrupt's answer parked the pointer
                self.pose(step, settle=False)
            self.sleep(0.1)

    def _timeout(self, step: Step, default: float | None = None) -> float:
        if step.timeout is not None:
            return step.timeout
        if step.optional:
            return OPTIONAL_WAIT
        return self.flow.timeout if default is None else default

    def _locate_point(
        self, step: Step, ctx: Context, image: Path | None, at: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        """Where to click, in points; None for an optional step whose image is not there."""
        win = self._win(step, ctx)
        if at is not None:
            return to_screen(at, self.flow.calibration, win)
        m, best, ratio = self._wait_for(step, image, self._timeout(step))
        if m is None:
            if step.optional:
                return None
            raise self._fail(
                step,
                ctx,
                f"{image.name} not found within {self._timeout(step):g}s"
                f" (best match {best:.2f} < {step.confidence or self.flow.confidence:.2f})",
            )
        cx, cy = m.rect.center  # screenshot pixels -> points for the mouse
        return (cx / ratio, cy / ratio)

    def _not_on_spend(self, step: Step, ctx: Context, point: tuple[float, float]) -> None:
        """Refuse a click that would land on the button that spends money: only the
        irreversible step clicks it. A reset click by position on a screen the app was
        not expected to show, a Back button where the next screen puts its spend button,
        a popup that moved things: the spending image under the point stops the click.
        Looked for with the pointer parked and with it on the point (the spend image may
        have been recorded in either look); the pointer stays on the point."""
        spend = self.flow.steps[self.flow.irreversible_index]
        if spend.image is None or not spend.image.is_file():
            return
        conf = spend.confidence or self.flow.confidence
        for pointed in (False, True):
            if pointed:
                self.driver.move(*point)
                self.sleep(HOVER_SETTLE)
            else:
                self.park()
            shot = self.driver.screenshot()
            m = self.find(spend, spend.image, shot)
            if m is None or m.score < conf:
                continue
            r = self._ratio(shot)
            px, py = point[0] * r, point[1] * r
            if m.rect.x <= px < m.rect.x + m.rect.w and m.rect.y <= py < m.rect.y + m.rect.h:
                raise self._fail(
                    step,
                    ctx,
                    f"not clicked: {step.label} would land on {spend.image.name}, the"
                    f" irreversible step's button (match {m.score:.2f}); only {spend.label}"
                    " clicks it",
                )

    def _do(self, step: Step, ctx: Context) -> None:
        d = self.driver
        if step.action == "activate":
            d.activate(self.flow.app)
            deadline = self.clock() + self._timeout(step)
            while (win := d.window(self.flow.app)) is None:
                if self.clock() >= deadline:
                    raise self._fail(
                        step, ctx, f"no window {self.flow.app!r} on screen; open the app"
                    )
                self.sleep(0.1)
            self.window = win
            self.sleep(self.flow.settle)
        elif step.action == "click":
            point = self._locate_point(step, ctx, step.image, step.at)
            if point is None:  # optional, not showing: skipped
                return
            if step.irreversible:
                if self.irreversible_clicked:  # defensive: a flow runs its irreversible step once
                    raise self._fail(step, ctx, "irreversible step already clicked in this run")
                self.irreversible_clicked = True
                d.click(*point)
                if self.on_irreversible:
                    self.on_irreversible()
            else:
                self._not_on_spend(step, ctx, point)
                d.click(*point)
                if step.clear:
                    d.clear_field()
            self.sleep(self.flow.settle)
        elif step.action == "type":
            self._type(step, ctx)
        elif step.action in ("wait", "verify"):
            timeout = self._timeout(step, None if step.action == "wait" else 0.0)
            self._win(step, ctx)
            m, best, _ = self._wait_for(step, step.image, timeout)
            if m is None and not step.optional:
                raise self._fail(
                    step,
                    ctx,
                    f"{step.image.name} not on screen after {timeout:g}s (best match {best:.2f})",
                )
        elif step.action in ("check_photo", "read_photo"):
            self._compare_photo(step, ctx)
        elif step.action == "read_text":
            self._read_text(step, ctx)
        elif step.action == "outcome":
            self._outcome(step, ctx)
        elif step.action == "read_address":
            self._read_address(step, ctx)
        else:  # parse() allows only the actions above
            raise self._fail(step, ctx, f"unknown action {step.action!r}")

    # -- typing, and reading the field back ------------------------------------------------
    def _type(self, step: Step, ctx: Context) -> None:
        d = self.driver
        text = ctx.name if step.field == "name" else ctx.ticker
        try:
            method = safetext.entry_method(text, self.flow.non_ascii, step.field)
        except safetext.UnsafeText as exc:
            raise self._fail(step, ctx, str(exc)) from None
        if step.clear:
            d.clear_field()
        if method == "keys":
            d.type_keys(text, self.flow.type_interval)
        else:
            d.paste(text)
        self.sleep(self.flow.settle)
        if self.flow.verify_method(step) == "clipboard":
            verdict = readback.compare_field(text, self._copy_field(step, ctx))
        else:
            verdict = self._ocr_verdict(step, text, self.driver.screenshot())
        if not verdict.ok:
            raise self._fail(
                step,
                ctx,
                f"the {step.field} field does not hold the coin's text: {verdict.reason}",
                mismatch=True,
            )
        ctx.results[step.name] = verdict.reason

    def _copy_field(self, step: Step, ctx: Context) -> str:
        """The focused field's text through the clipboard (select all + copy), the
        clipboard put back as it was."""
        d = self.driver
        saved = d.clipboard_get()
        marker = f"moonshot-read-back-{secrets.token_hex(8)}"
        d.clipboard_set(marker)
        try:
            d.select_all()
            d.copy()
            deadline = self.clock() + COPY_WAIT
            while (got := d.clipboard_get()) == marker:
                if self.clock() >= deadline:
                    raise self._fail(
                        step,
                        ctx,
                        f"the {step.field} field could not be copied back (select all + copy"
                        ' left the clipboard unchanged); use verify = "ocr" with its region',
                        mismatch=True,
                    )
                self.sleep(0.05)
            return got
        finally:
            d.clipboard_set(saved)

    def _ocr_verdict(self, step: Step, expected: str, shot: Image.Image) -> readback.Verdict:
        crop = self._crop(shot, step.region)
        min_confidence = step.min_confidence or self.flow.min_confidence
        if step.field == "ticker":
            return readback.compare_ticker(
                expected,
                self.reader.read_line(crop),
                min_confidence=min_confidence,
                dollar=step.dollar,
            )
        readings = (
            [self.reader.read_line(crop)] if step.lines == 1 else self.reader.read_block(crop)
        )
        return readback.compare_name(expected, readings, min_confidence=min_confidence)

    # -- read-back before the spend (invariant 6) -------------------------------------------
    def _read_text(self, step: Step, ctx: Context) -> None:
        """The app must show the coin's ticker or name in the region: read by OCR and
        compared (readback), looked at again until the step's timeout (a screen still
        drawing), then a failure before the spend."""
        self._win(step, ctx)
        self.park()
        expected = ctx.name if step.field == "name" else ctx.ticker
        deadline = self.clock() + self._timeout(step, READ_WAIT)
        while True:
            verdict = self._ocr_verdict(step, expected, self.driver.screenshot())
            if verdict.ok:
                ctx.results[step.name] = verdict.reason  # what the app showed, for the audit
                return
            if self.clock() >= deadline:
                raise self._fail(
                    step,
                    ctx,
                    f"the app does not show the coin's {step.field}: {verdict.reason}",
                    mismatch=True,
                )
            self.sleep(0.1)

    def _compare_photo(self, step: Step, ctx: Context) -> None:
        """check_photo (the picker's first thumbnail) and read_photo (the picture the app
        will use) both compare a region with the coin's photo."""
        self._win(step, ctx)
        self.park()
        conf = step.confidence or self.flow.photo_confidence
        with Image.open(ctx.photo) as img:
            photo = img.convert("RGB")
        deadline = self.clock() + self._timeout(step, READ_WAIT)
        while True:
            shown = self._crop(self.driver.screenshot(), step.region)
            verdict = imagematch.compare_photo(photo, shown)
            # compare_photo decides; a step's confidence can only be stricter (flow.py
            # refuses one below PHOTO_OK).
            if verdict.ok and verdict.score >= conf:
                ctx.results[f"{step.name}.score"] = f"{verdict.score:.3f}"
                return
            if self.clock() >= deadline:
                what = (
                    "the picker's first photo is not"
                    if step.action == "check_photo"
                    else "the picture the app shows is not"
                )
                raise self._fail(
                    step,
                    ctx,
                    f"{what} {ctx.photo.name} (similarity {verdict.score:.2f}, needs"
                    f" {conf:.2f}: {verdict.reason}); another photo is newest or was chosen",
                    mismatch=True,
                )
            self.sleep(0.1)

    # -- after the irreversible click ------------------------------------------------------
    def _outcome(self, step: Step, ctx: Context) -> None:
        """Success by the success image; a failure image that is not captured yet is not
        looked for (design.md: outcome screens exist only after a launch), so any screen
        but success is unknown after the timeout, which is a review, never a guess."""
        self._win(step, ctx)
        self.park()
        conf = step.confidence or self.flow.confidence
        timeout = self._timeout(step, 30.0)
        known = [p for p in step.failure if p.is_file()]
        deadline = self.clock() + timeout
        while True:
            shot = self.driver.screenshot()
            for bad in known:
                m = self.find(step, bad, shot)
                if m and m.score >= conf:
                    raise self._fail(step, ctx, f"the app shows the failure screen {bad.name}")
            m = self.find_as_recorded(step, step.image, shot)
            if m and m.score >= conf:
                return
            if self.clock() >= deadline:
                raise self._fail(
                    step,
                    ctx,
                    f"outcome unknown: neither {step.image.name} nor a known failure"
                    f" screen within {timeout:g}s",
                )
            self.sleep(0.1)

    def _read_address(self, step: Step, ctx: Context) -> None:
        # Clear first: a stale clipboard (the last coin's address, a pasted name) must
        # never be taken for this coin's address.
        self.driver.clipboard_set("")
        x, y = self._locate_point(step, ctx, step.image, step.at)
        self.driver.click(x, y)
        timeout = self._timeout(step, 5.0)
        deadline = self.clock() + timeout
        text = ""
        while True:
            text = self.driver.clipboard_get() or ""
            address = valid_address(text)
            if address:
                ctx.results["token_address"] = address
                return
            if self.clock() >= deadline:
                shown = repr(text[:60]) if text else "nothing"
                raise self._fail(
                    step,
                    ctx,
                    f"clipboard holds {shown}, not a Solana address (base58, 32-44 chars)",
                )
            self.sleep(0.1)

    # -- flow check: look, click nothing ------------------------------------------------------
    def check(self, grace: float = 1.5, look: bool = True) -> list[CheckLine]:
        """Every reference image on disk and detailed enough; every checked step's image on
        the current screen inside the app window, looked for again for `grace` seconds
        (an app still drawing). Clicks nothing, types nothing. look=False: the files only
        (`flow check --walk` looks for each image on its own screen)."""
        deadline = self.clock() + grace
        while True:
            lines = self._check_once(look)
            if all(line.ok for line in lines) or self.clock() >= deadline:
                return lines
            self.sleep(0.2)

    def _check_once(self, look: bool = True) -> list[CheckLine]:
        lines: list[CheckLine] = []
        self.window = self.driver.window(self.flow.app)
        self.park()
        shot = self.driver.screenshot() if self.window and look else None
        if self.window is None:
            lines.append(
                CheckLine(
                    self.flow.steps[0],
                    "fail",
                    f"no window {self.flow.app!r} on screen; open the app",
                )
            )
        if not self.flow.reset:
            lines.append(
                CheckLine(
                    self.flow.steps[0],
                    "warn",
                    "no [[reset]]: after a failed attempt the app stays where it stopped,"
                    " and the next attempt starts there",
                )
            )
        for step in self.flow.entries:
            if step.action == "outcome" and not step.failure:
                lines.append(
                    CheckLine(
                        step,
                        "warn",
                        "no failure image: any screen but the success one is needs_review"
                        " (capture the error screen when it first shows)",
                    )
                )
            for path in step.images():
                if not path.is_file():
                    # Outcome screens exist only after a real launch (design.md): a missing
                    # success image makes every launch needs_review, a missing failure
                    # image makes only the failures reviews; both safe, so they only warn.
                    level = "fail" if self.flow.before_spend(step) else "warn"
                    lines.append(
                        CheckLine(
                            step,
                            level,
                            f"reference image {path.name} is missing; capture it"
                            f" with `moonshot flow calibrate --step {step.name}`",
                        )
                    )
                    continue
                if imagematch.detail(self._ref(path)) < imagematch.MIN_DETAIL:
                    lines.append(
                        CheckLine(
                            step,
                            "fail",
                            f"{path.name} is a flat patch; capture an area with text or edges",
                        )
                    )
                    continue
                if path != step.image or not self.flow.checked(step) or not look:
                    when = "shows at random" if step.section == "interrupt" else "shown later"
                    lines.append(
                        CheckLine(step, "ok", f"{path.name} present ({when}; not looked for now)")
                    )
                    continue
                if shot is None:
                    continue
                m = self.find_as_recorded(step, path, shot)
                conf = step.confidence or self.flow.confidence
                if m and m.score >= conf:
                    lines.append(CheckLine(step, "ok", f"{path.name} found (match {m.score:.2f})"))
                else:
                    lines.append(
                        CheckLine(
                            step,
                            "fail",
                            f"{path.name} not found on screen (best match"
                            f" {m.score if m else 0:.2f} < {conf:.2f}); show that screen or"
                            f" recapture with `moonshot flow calibrate --step {step.name}`",
                        )
                    )
        return lines
