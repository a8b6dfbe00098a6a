"""The app launcher: `prepare` runs the flow up to the irreversible step (a retryable
error on failure; NeedsReview when the app already shows an outcome screen); `launch`
clicks it once and reads the outcome (NeedsReview when unclear).
Refuses to start until `moonshot flow check` passed for this flow on this screen."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moonshot.app import flow as flowmod
from moonshot.app import safetext
from moonshot.app.ocr import TextReader
from moonshot.app.runner import Context, Driver, Runner, StepFailed
from moonshot.config import Config
from moonshot.errors import (
    ConfigError,
    Mismatch,
    NeedsReview,
    PortUnavailable,
    Rejected,
    TransientError,
)
from moonshot.ports import Check, Coin, LaunchResult, PhotosLibrary

CHECK_RECORD = "flow-check.json"  # under logs/: written by `moonshot flow check` on a pass


def check_record_path(cfg: Config) -> Path:
    return cfg.logs_dir / CHECK_RECORD


def read_pass(cfg: Config) -> dict[str, Any] | None:
    try:
        data = json.loads(check_record_path(cfg).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_pass(
    cfg: Config, flow: flowmod.Flow, screen: tuple[int, int], pixel_ratio: float
) -> Path:
    """Written atomically after a passing `flow check`: what app mode insists on."""
    path = check_record_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "flow": str(flow.path),
        "flow_sha256": flow.digest,
        "screen": list(screen),
        "pixel_ratio": round(pixel_ratio, 3),
        "passed_at": time.time(),
    }
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8") as f:
        json.dump(body, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    part.replace(path)
    return path


def pass_problem(
    record: dict[str, Any] | None, flow: flowmod.Flow, screen: tuple[int, int] | None
) -> str | None:
    """Why the recorded pass does not cover this flow on this screen, or None."""
    if record is None:
        return "`moonshot flow check` has not passed on this machine; run it with the app open"
    if record.get("flow_sha256") != flow.digest:
        return f"{flow.path.name} or its images changed since `moonshot flow check` passed; run it again"
    if screen is not None and list(screen) != record.get("screen"):
        seen = "x".join(str(v) for v in record.get("screen") or [])
        return f"the screen is {screen[0]}x{screen[1]}, `moonshot flow check` passed on {seen}; run it again"
    return None


def load_flow(cfg: Config) -> flowmod.Flow:
    flow = flowmod.load(flowmod.flow_path(cfg.home, cfg.launch.flow))
    # Later images (outcome screens) may be missing until the first launch: see Runner.check.
    missing = [(s, p) for s, p in flow.missing_images() if flow.before_spend(s)]
    if missing:
        step, path = missing[0]
        raise ConfigError(
            f"flow {step.label}: reference image {path} is missing; run `moonshot flow calibrate`"
        )
    return flow


def make_driver(flow: flowmod.Flow) -> Driver:
    from moonshot.app.driver import PyAutoGuiDriver  # connects to the display on import

    return PyAutoGuiDriver(pause=flow.pause)


class GuiLauncher:
    kind = "app"

    def __init__(
        self,
        cfg: Config,
        flow: flowmod.Flow,
        driver: Driver,
        library: PhotosLibrary | None,
        on_irreversible: Callable[[], None] | None = None,
        reader: TextReader | None = None,
    ):
        self.cfg, self.flow, self.driver, self.library = cfg, flow, driver, library
        self.on_irreversible = on_irreversible
        self.reader = reader  # None: the OCR engine, loaded at the first read-back
        self._prepared: tuple[int, Context, Runner] | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        library: PhotosLibrary | None,
        on_irreversible: Callable[[], None] | None = None,
    ) -> GuiLauncher:
        flow = load_flow(cfg)
        problem = pass_problem(read_pass(cfg), flow, None)
        if problem:
            raise ConfigError(f"launch.mode = app refused: {problem}")
        driver = make_driver(flow)
        problem = pass_problem(read_pass(cfg), flow, driver.screen_size())
        if problem:
            raise ConfigError(f"launch.mode = app refused: {problem}")
        if on_irreversible is None:
            # The pipeline's crash point, reached right after the irreversible click
            # (design.md, "Proving crash safety"): the token exists, nothing is committed.
            from moonshot import crash

            on_irreversible = lambda: crash.point("after_irreversible")  # noqa: E731
        return cls(cfg, flow, driver, library, on_irreversible)

    def runner(self) -> Runner:
        return Runner(
            self.flow,
            self.driver,
            self.cfg.logs_dir / "screens",
            on_irreversible=self.on_irreversible,
            reader=self.reader,
        )

    def context(self, coin: Coin, image: Path) -> Context:
        """The coin's name and ticker as the app will get them; Rejected if they cannot
        be entered safely: no retry can change the text, so the coin fails at once."""
        try:
            name = safetext.field(coin.name, self.cfg.launch.name_max_bytes, "name")
            ticker = safetext.field(coin.ticker, self.cfg.launch.ticker_max_bytes, "ticker")
            safetext.entry_method(name, self.flow.non_ascii, "name")
            safetext.entry_method(ticker, self.flow.non_ascii, "ticker")
        except safetext.UnsafeText as exc:
            raise Rejected(f"coin {coin.id}: {exc}") from None
        photo = image
        path_of = getattr(self.library, "path_of", None)
        if coin.photos_asset_id and path_of:
            photo = path_of(coin.photos_asset_id) or image
        return Context(coin.id, name, ticker, Path(photo))

    def prepare(self, coin: Coin, image: Path) -> None:
        """Every step before the irreversible one (what they read back: `prepared_results`).
        A failure is a Mismatch (counted toward launch.prepare_attempts) after the reset
        ran: nothing was spent; NeedsReview when an outcome screen shows (see below)."""
        self._prepared = None
        if not Path(image).exists():
            raise TransientError(f"coin {coin.id}: spooled image {Path(image).name} is missing")
        newest = self.library.newest() if self.library is not None else None
        if self.library is not None and (newest is None or newest.id != coin.photos_asset_id):
            raise TransientError(
                f"coin {coin.id}: newest photo is {newest.id if newest else 'none'},"
                f" not the coin's {coin.photos_asset_id}; refusing to fill the form"
            )
        ctx = self.context(coin, image)
        runner = self.runner()
        # An outcome screen already showing is an earlier launch's (a flow that does not
        # close its success screen), not evidence against this coin.
        earlier = self.outcome_showing(runner)
        try:
            runner.run(self.flow.before, ctx)
        except StepFailed as exc:
            # A screen seen only after a launch, showing now and not before this attempt,
            # is proof that a step before the marked one spent (an app that stopped asking
            # for confirmation): never retried, never reset past it; a person decides.
            spent = None if earlier else self.outcome_showing(runner)
            if spent:
                runner.save_screen(self.flow.before[0], coin.id)
                raise NeedsReview(
                    f"coin {coin.id}: {exc}; yet the app shows {spent}, a screen of the"
                    " outcome, before the irreversible step: a step before it may have spent"
                    " (does the app still ask for the confirmation the flow clicks?); not"
                    f" retried: check the app, then `moonshot resolve {coin.id}`"
                ) from None
            # Nothing was spent: back to the start screen for the next attempt. Every
            # refusal counts toward launch.prepare_attempts (the coin holds the gate).
            back = self.reset(coin.id, runner)
            raise Mismatch(f"coin {coin.id}: {exc}{'; ' + back if back else ''}") from None
        self._prepared = (coin.id, ctx, runner)

    def outcome_showing(self, runner: Runner) -> str | None:
        """The image of an outcome screen (success, a captured failure, the address's
        copy button) that shows in the app window now, if one does."""
        kept = runner.window  # the runner finds the window itself at its steps
        try:
            shot = runner.driver.screenshot()
            runner.window = runner.driver.window(self.flow.app)
        except Exception:  # noqa: BLE001 - no screen to look at proves nothing
            runner.window = kept
            return None
        try:
            return self._outcome_in(runner, shot) if runner.window else None
        finally:
            runner.window = kept

    def _outcome_in(self, runner: Runner, shot) -> str | None:
        for step in self.flow.after:
            if step.irreversible:
                continue
            images = [step.image, *step.failure] if step.action == "outcome" else [step.image]
            for image in images:
                if image is None or not image.is_file():
                    continue
                found = runner.find_as_recorded(step, image, shot)
                if found is not None and found.score >= (step.confidence or self.flow.confidence):
                    return f"{image.name} (step {step.name!r}, {found.score:.2f})"
        return None

    @property
    def prepared_results(self) -> dict[str, str]:
        return dict(self._prepared[1].results) if self._prepared else {}

    def reset(self, coin_id: int | None = None, runner: Runner | None = None) -> str | None:
        """Run the flow's [[reset]] (after a failure before the spend, after a dry run):
        None when the app is back on its start screen, else why not, in one line. Never
        after the irreversible click."""
        self._prepared = None  # whatever was filled in is gone now
        if not self.flow.reset:
            return None
        runner = runner or self.runner()
        if runner.irreversible_clicked:
            return "reset not run: the irreversible click was made"
        ctx = Context(coin_id if coin_id is not None else 0, "", "", Path())
        runner.handled.clear()  # the reset answers popups with a budget of its own
        try:
            runner.run(self.flow.reset, ctx)
        except StepFailed as exc:
            return (
                f"reset failed, the app is not back on its start screen (bring it there"
                f" by hand): {exc}"
            )
        return None

    def launch(self, coin: Coin) -> LaunchResult:
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared[0] != coin.id:
            raise NeedsReview(
                f"coin {coin.id}: launch() without a prepared form; nothing was clicked,"
                " resolve with `moonshot resolve ID --not-launched`"
            )
        _, ctx, runner = prepared
        try:
            results = runner.run(self.flow.after, ctx)
        except StepFailed as exc:
            if ctx.results.get("token_address"):
                # The address was read: the launch is known. A later step (e.g. closing
                # the success screen) failing is for the log, not for a review.
                detail = {"flow": self.flow.path.name, "after_address_failed": str(exc)}
                return LaunchResult(token_address=ctx.results["token_address"], detail=detail)
            clicked = (
                "the irreversible click WAS made"
                if exc.irreversible_clicked
                else "nothing irreversible was clicked"
            )
            raise NeedsReview(
                f"coin {coin.id}: {exc}; {clicked}; check the app, then `moonshot resolve`"
            ) from None
        detail = {k: v for k, v in results.items() if k != "token_address"}
        detail["flow"] = self.flow.path.name
        return LaunchResult(token_address=results.get("token_address"), detail=detail)

    # -- doctor and status ----------------------------------------------------------------
    def checks(self) -> list[Check]:
        return gui_checks(self.cfg, self.driver)

    def health(self) -> dict[str, Any]:
        record = read_pass(self.cfg) or {}
        return {"flow": str(self.flow.path), "flow_check_passed_at": record.get("passed_at")}


def gui_checks(cfg: Config, driver: Driver | None = None) -> list[Check]:
    """What `moonshot doctor` shows for app mode; never clicks."""
    out: list[Check] = []
    try:
        flow = load_flow(cfg)
    except ConfigError as exc:
        return [
            Check("flow", "fail", str(exc), "fix the flow file or run `moonshot flow calibrate`")
        ]
    out.append(
        Check(
            "flow",
            "ok",
            f"{flow.path} valid, {len(flow.steps)} steps, irreversible:"
            f" {flow.steps[flow.irreversible_index].name}",
        )
    )
    screen = None
    try:
        driver = driver or make_driver(flow)
        screen = driver.screen_size()
        out.append(Check("display", "ok", f"screen {screen[0]}x{screen[1]} points"))
    except PortUnavailable as exc:
        out.append(Check("display", "fail", str(exc), "run in the logged-in desktop session"))
    problem = pass_problem(read_pass(cfg), flow, screen)
    out.append(
        Check(
            "flow check",
            "fail" if problem else "ok",
            problem or "passed on this screen",
            "moonshot flow check" if problem else "",
        )
    )
    return out
