"""Runs flow steps on a screen `Driver` (pyautogui, or a drawn fake in unit tests) and
saves a screenshot for every failed step. Never clicks the irreversible step twice in a
run, never retries it, never types text that safetext did not clear."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from PIL import Image

from moonshot.app import matching as imagematch
from moonshot.app import safetext
from moonshot.app.flow import (
    Flow,
    Rect,
    Step,
    image_scale,
    region_on_screen,
    to_screen,
    valid_address,
)
from moonshot.errors import MoonshotError


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
    def clear_field(self) -> None: ...
    def clipboard_get(self) -> str: ...
    def clipboard_set(self, text: str) -> None: ...


class StepFailed(MoonshotError):
    def __init__(self, step: Step, reason: str, screenshot: Path | None, clicked: bool):
        shot = f"; screenshot {screenshot}" if screenshot else ""
        super().__init__(f"flow {step.label} ({step.action}) failed: {reason}{shot}")
        self.step, self.reason, self.screenshot, self.irreversible_clicked = (
            step,
            reason,
            screenshot,
            clicked,
        )


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
    ):
        self.flow, self.driver, self.screens_dir = flow, driver, Path(screens_dir)
        self.clock, self.sleep = clock, sleep
        self.on_irreversible = on_irreversible
        self.window: Rect | None = None
        self.irreversible_clicked = False
        self._refs: dict[Path, Image.Image] = {}

    # -- running -------------------------------------------------------------------------
    def run(self, steps: tuple[Step, ...], ctx: Context) -> dict[str, str]:
        for step in steps:
            try:
                self._do(step, ctx)
            except StepFailed:
                raise
            except Exception as exc:  # a driver or OS error: still a failed step, with a screenshot
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                raise StepFailed(
                    step, reason, self.save_screen(step, ctx.coin_id), self.irreversible_clicked
                ) from exc
        return ctx.results

    def _fail(self, step: Step, ctx: Context, reason: str) -> StepFailed:
        return StepFailed(
            step, reason, self.save_screen(step, ctx.coin_id), self.irreversible_clicked
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

    def _wait_for(
        self, step: Step, image: Path, timeout: float
    ) -> tuple[imagematch.Match | None, float, float]:
        """Poll until the image shows: (match or None, best score, screenshot pixel ratio)."""
        self.park()
        conf = step.confidence or self.flow.confidence
        deadline = self.clock() + timeout
        while True:
            shot = self.driver.screenshot()
            m = self.find(step, image, shot)
            best = m.score if m else 0.0
            if m and best >= conf:
                return m, best, self._ratio(shot)
            if self.clock() >= deadline:
                return None, best, self._ratio(shot)
            self.sleep(0.1)

    def _timeout(self, step: Step, default: float | None = None) -> float:
        if step.timeout is not None:
            return step.timeout
        return self.flow.timeout if default is None else default

    def _locate_point(
        self, step: Step, ctx: Context, image: Path | None, at: tuple[float, float] | None
    ) -> tuple[float, float]:
        win = self._win(step, ctx)
        if at is not None:
            return to_screen(at, self.flow.calibration, win)
        m, best, ratio = self._wait_for(step, image, self._timeout(step))
        if m is None:
            raise self._fail(
                step,
                ctx,
                f"{image.name} not found within {self._timeout(step):g}s"
                f" (best match {best:.2f} < {step.confidence or self.flow.confidence:.2f})",
            )
        cx, cy = m.rect.center  # screenshot pixels -> points for the mouse
        return (cx / ratio, cy / ratio)

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
            x, y = self._locate_point(step, ctx, step.image, step.at)
            if step.irreversible:
                if self.irreversible_clicked:  # defensive: a flow runs its irreversible step once
                    raise self._fail(step, ctx, "irreversible step already clicked in this run")
                self.irreversible_clicked = True
                d.click(x, y)
                if self.on_irreversible:
                    self.on_irreversible()
            else:
                d.click(x, y)
            self.sleep(self.flow.settle)
        elif step.action == "type":
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
        elif step.action in ("wait", "verify"):
            timeout = self._timeout(step, None if step.action == "wait" else 0.0)
            self._win(step, ctx)
            m, best, _ = self._wait_for(step, step.image, timeout)
            if m is None:
                raise self._fail(
                    step,
                    ctx,
                    f"{step.image.name} not on screen after {timeout:g}s (best match {best:.2f})",
                )
        elif step.action == "check_photo":
            self._check_photo(step, ctx)
        elif step.action == "outcome":
            self._outcome(step, ctx)
        elif step.action == "read_address":
            self._read_address(step, ctx)
        else:  # parse() allows only the actions above
            raise self._fail(step, ctx, f"unknown action {step.action!r}")

    def _check_photo(self, step: Step, ctx: Context) -> None:
        win = self._win(step, ctx)
        self.park()
        area = region_on_screen(step.region, self.flow.calibration, win)
        conf = step.confidence or self.flow.photo_confidence
        with Image.open(ctx.photo) as img:
            photo = img.convert("RGB")
        deadline = self.clock() + self._timeout(step, 2.0)
        while True:
            shot = self.driver.screenshot()
            r = self._ratio(shot)
            crop = shot.crop(
                (
                    round(area.x * r),
                    round(area.y * r),
                    round((area.x + area.w) * r),
                    round((area.y + area.h) * r),
                )
            )
            score = imagematch.photo_score(photo, crop)
            if score >= conf:
                ctx.results[f"{step.name}.score"] = f"{score:.3f}"
                return
            if self.clock() >= deadline:
                raise self._fail(
                    step,
                    ctx,
                    f"the picker's first photo is not {ctx.photo.name}"
                    f" (similarity {score:.2f} < {conf:.2f}); newest photo is another one",
                )
            self.sleep(0.1)

    def _outcome(self, step: Step, ctx: Context) -> None:
        self._win(step, ctx)
        self.park()
        conf = step.confidence or self.flow.confidence
        timeout = self._timeout(step, 30.0)
        deadline = self.clock() + timeout
        while True:
            shot = self.driver.screenshot()
            for bad in step.failure:
                m = self.find(step, bad, shot)
                if m and m.score >= conf:
                    raise self._fail(step, ctx, f"the app shows the failure screen {bad.name}")
            m = self.find(step, step.image, shot)
            if m and m.score >= conf:
                return
            if self.clock() >= deadline:
                raise self._fail(
                    step,
                    ctx,
                    f"outcome unknown: neither {step.image.name} nor a failure"
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
    def check(self, grace: float = 1.5) -> list[CheckLine]:
        """Every reference image on disk and detailed enough; every checked step's image on
        the current screen inside the app window, looked for again for `grace` seconds
        (an app still drawing). Clicks nothing, types nothing."""
        deadline = self.clock() + grace
        while True:
            lines = self._check_once()
            if all(line.ok for line in lines) or self.clock() >= deadline:
                return lines
            self.sleep(0.2)

    def _check_once(self) -> list[CheckLine]:
        lines: list[CheckLine] = []
        cut = self.flow.steps[self.flow.irreversible_index].index
        self.window = self.driver.window(self.flow.app)
        self.park()
        shot = self.driver.screenshot() if self.window else None
        if self.window is None:
            lines.append(
                CheckLine(
                    self.flow.steps[0],
                    "fail",
                    f"no window {self.flow.app!r} on screen; open the app",
                )
            )
        for step in self.flow.steps:
            for path in step.images():
                if not path.is_file():
                    # Outcome screens exist only after a real launch (design.md): a missing
                    # one makes every launch needs_review, which is safe, so it only warns.
                    level = "fail" if step.index <= cut else "warn"
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
                if path != step.image or not self.flow.checked(step):
                    lines.append(
                        CheckLine(
                            step, "ok", f"{path.name} present (shown later; not looked for now)"
                        )
                    )
                    continue
                if shot is None:
                    continue
                m = self.find(step, path, shot)
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
