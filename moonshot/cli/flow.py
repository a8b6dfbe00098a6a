"""`moonshot flow check | calibrate | run ID --dry-run`: thin commands over the flow,
its runner and the app launcher. `check` and `calibrate` click nothing; the dry run
stops before the irreversible step. Nothing here ever makes the irreversible click."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import click
import tomlkit
from PIL import Image

from moonshot import config as config_mod
from moonshot import machine as m
from moonshot.app import flow as flowmod
from moonshot.app import matching as imagematch
from moonshot.app.flowfile import FlowFile
from moonshot.cli.common import COIN_ID
from moonshot.errors import MoonshotError

# Steps whose --box is a region read on the screen (not a reference image to find).
REGION_ACTIONS = ("check_photo", "read_text", "read_photo", "type")


def _cfg(ctx: click.Context) -> config_mod.Config:
    try:
        return config_mod.load(ctx.obj.get("home") if ctx.obj else None)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _flow(cfg: config_mod.Config) -> flowmod.Flow:
    try:
        return flowmod.load(flowmod.flow_path(cfg.home, cfg.launch.flow))
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _driver(fl: flowmod.Flow):
    from moonshot.app.launcher_gui import make_driver

    try:
        return make_driver(fl)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _pair(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n or not all(math.isfinite(v) and v >= 0 for v in values):
        raise click.BadParameter(f"{what} must be {n} non-negative numbers separated by commas")
    if what.startswith("--box") and (values[2] <= 0 or values[3] <= 0):
        raise click.BadParameter(f"{what}: width and height must be more than 0")
    return values


@click.group()
def flow() -> None:
    """Calibrate, check and dry-run the Moonshot app flow (launch.mode = app)."""


@flow.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--walk",
    is_flag=True,
    help="Walk the flow with a test coin up to (never including) the irreversible step,"
    " each image on its own screen, then run [[reset]].",
)
@click.option(
    "--coin",
    "coin_id",
    type=COIN_ID,
    help="With --walk: the test coin (default: the newest confirmed).",
)
@click.pass_context
def check(ctx: click.Context, as_json: bool, walk: bool, coin_id: int | None) -> None:
    """Find every reference image on the current screen; click nothing. A pass is
    recorded (logs/flow-check.json) and is what app mode requires to start. With
    --walk: every step before the irreversible one is done (typing a test coin), each
    image checked on its own screen; the irreversible step is looked at, not clicked."""
    from moonshot.app.launcher_gui import record_pass
    from moonshot.app.runner import Runner

    cfg = _cfg(ctx)
    fl = _flow(cfg)
    driver = _driver(fl)
    runner = Runner(fl, driver, cfg.logs_dir / "screens")
    lines = _walk(cfg, fl, driver, coin_id, as_json) if walk else runner.check()
    failed = [line for line in lines if not line.ok]
    rows = [
        {"step": ln.step.name, "index": ln.step.index, "level": ln.level, "message": ln.message}
        for ln in lines
    ]
    if as_json:
        click.echo(
            json.dumps({"flow": str(fl.path), "passed": not failed, "steps": rows}, indent=2)
        )
    elif not walk:  # the walk printed its lines as it went
        for ln in lines:
            click.echo(f"{ln.level:4}  {ln.step.label}: {ln.message}")
    if failed:
        shot = runner.save_screen(failed[0].step, None)
        where = f" (screen saved to {shot})" if shot else ""
        try:
            sheet = f"; every step and where it matches now: {_show(cfg, fl, driver)}"
        except Exception:  # the sheet is a help; never hide the failure behind its own
            sheet = ""
        raise click.ClickException(
            f"flow check{' --walk' if walk else ''} failed at {failed[0].step.label}:"
            f" {failed[0].message}{where}{sheet}"
        )
    screen = driver.screen_size()
    ratio = driver.screenshot().width / screen[0]
    path = record_pass(cfg, fl, screen, ratio)
    if not as_json:
        click.echo(
            f"flow check passed on {screen[0]}x{screen[1]} (pixel ratio {ratio:g}); recorded in {path}"
        )


def _walk(cfg, fl: flowmod.Flow, driver, coin_id: int | None, as_json: bool):
    from moonshot.adapters import build_library
    from moonshot.app.launcher_gui import GuiLauncher, load_flow
    from moonshot.app.walk import walk
    from moonshot.cli.common import open_store

    if coin_id is None:
        waiting = open_store(cfg).coins_in(("confirmed",), order="id DESC", limit=1)
        if not waiting:
            raise click.ClickException(
                "flow check --walk types a test coin into the app: add one (`moonshot add`,"
                " then `moonshot run --once` with launch.mode = off) or give --coin ID"
            )
        coin_id = waiting[0].id
    coin = _imported_coin(cfg, coin_id, "the walk")
    try:
        launcher = GuiLauncher(cfg, load_flow(cfg), driver, build_library(cfg))
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    if not as_json:
        click.echo(
            f"walking {fl.path.name} with coin {coin.id} ({coin.ticker}); the irreversible"
            " step is never clicked"
        )
    say = (
        (lambda ln: None)
        if as_json
        else (lambda ln: click.echo(f"{ln.level:4}  {ln.step.label}: {ln.message}"))
    )
    return walk(launcher, coin, cfg.spool_dir / coin.image_filename, say)


def _imported_coin(cfg, coin_id: int, what: str):
    """A coin of the state db whose photo is in the library (what a fill-in needs)."""
    from moonshot.cli.common import open_store

    coin = open_store(cfg).get(coin_id)
    if coin is None:
        raise click.ClickException(f"no coin with id {coin_id}")
    if not coin.image_filename or not coin.photos_asset_id:
        raise click.ClickException(
            f"coin {coin_id} is {coin.state} and not in the photo library yet;"
            f" {what} needs an imported coin (`moonshot run --once` with launch.mode = off)"
        )
    return coin


def _show(cfg, fl: flowmod.Flow, driver=None) -> Path:
    """Render the contact sheet into logs/flow-show/; the live column when the app shows."""
    from moonshot.app import sheet
    from moonshot.app.runner import Runner

    live = None
    if driver is not None:
        win = driver.window(fl.app)
        if win is not None:
            full = driver.screenshot()
            r = full.width / driver.screen_size()[0]
            ox, oy = round(win.x * r), round(win.y * r)
            shot = full.crop((ox, oy, ox + round(win.w * r), oy + round(win.h * r)))
            runner = Runner(fl, driver, cfg.logs_dir / "screens")
            runner.window = win

            def find(step, image):
                m = runner.find(step, image, full)
                if m is None:
                    return None
                return flowmod.Rect(m.rect.x - ox, m.rect.y - oy, m.rect.w, m.rect.h), m.score

            live = sheet.Live(shot, r, find)
    _, page = sheet.render(fl, cfg.logs_dir / "flow-show", live)
    return page


@flow.command()
@click.pass_context
def show(ctx: click.Context) -> None:
    """A contact sheet of the flow (logs/flow-show/: sheet.png, index.html): every step
    with its image, where it was captured and, with the app showing, where it matches now."""
    cfg = _cfg(ctx)
    fl = _flow(cfg)
    from moonshot.app import display

    driver = None
    why = display.problem()
    if why is None:
        driver = _driver(fl)
    page = _show(cfg, fl, driver)
    live = (
        ""
        if driver is not None and driver.window(fl.app)
        else (f" (no live column: {why or f'no window {fl.app!r} on screen'})")
    )
    click.echo(f"contact sheet: {page.parent / 'sheet.png'} and {page}{live}")


def _own_flow_file(cfg: config_mod.Config) -> Path:
    """The user's flow file; the packaged template is copied into the home first."""
    path = flowmod.flow_path(cfg.home, cfg.launch.flow)
    if path == flowmod.PACKAGED:
        path = cfg.home / flowmod.HOME_FLOW
        cfg.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flowmod.PACKAGED, path)
        click.echo(f"copied the flow template to {path}")
    return path


def _save(ff: FlowFile, captured: list[Path] = ()) -> flowmod.Flow:
    """Write the user's file (comments and layout kept), say what changed, validate."""
    changes = ff.save()
    for line in changes:
        click.echo(f"  {line}")
    for image in captured:
        with Image.open(image) as img:
            click.echo(f"  captured {image.name} ({img.width}x{img.height} px)")
    if not changes and not captured:
        click.echo(f"  {ff.path.name}: no change")
    try:
        return flowmod.load(ff.path)
    except MoonshotError as exc:
        raise click.ClickException(f"saved, but the flow is not complete yet: {exc}") from None


def _image_key(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _capture(
    driver,
    fl: flowmod.Flow,
    win: flowmod.Rect,
    step: flowmod.Step,
    box: tuple[float, ...],
    target: Path | None = None,
) -> Path:
    shot = driver.screenshot()
    r = shot.width / driver.screen_size()[0]
    x, y, w, h = box
    crop = shot.crop(
        (
            round((win.x + x) * r),
            round((win.y + y) * r),
            round((win.x + x + w) * r),
            round((win.y + y + h) * r),
        )
    )
    if imagematch.detail(crop) < imagematch.MIN_DETAIL:
        raise click.ClickException(
            f"{step.label}: that area is flat (no text or edges); capture a larger one"
        )
    target = target or step.image or fl.path.parent / f"{step.name}.png"
    crop.save(target)
    return target


def _apply(
    driver,
    fl: flowmod.Flow,
    ff: FlowFile,
    win: flowmod.Rect,
    step: flowmod.Step,
    box=None,
    at=None,
    image: str | None = None,
) -> Path | None:
    """Capture one step into the document `ff`; returns the image file written, if any.
    The window as it is now is kept as the screen the step was captured on (flow show)."""
    from moonshot.app import sheet

    table = ff.find(step.name)
    if image is None:
        shot = driver.screenshot()
        r = shot.width / driver.screen_size()[0]
        window = (win.x * r, win.y * r, (win.x + win.w) * r, (win.y + win.h) * r)
        sheet.save_screen(fl.path.parent, step.name, shot.crop(tuple(round(v) for v in window)))
    if image is not None:
        others = [p for p in (step.target, *step.failure) if p is not None]
        target = next((p for p in others if p.name == image), None)
        if target is None or box is None:
            raise click.ClickException(
                f"{step.label}: --image must name one of its other images"
                f" ({', '.join(p.name for p in others) or 'none'}) with --box"
            )
        return _capture(driver, fl, win, step, box, target)
    if box is not None and step.action in REGION_ACTIONS:
        ff.put(table, "region", [round(v, 2) for v in box])
        return None
    if box is not None:
        if step.action in ("activate", "type"):
            raise click.ClickException(
                f"{step.label}: action {step.action} has no image to capture"
            )
        target = _capture(driver, fl, win, step, box)
        ff.swap(table, "at", "image", _image_key(target, fl.path.parent))
        return target
    if step.action not in ("click", "read_address", "interrupt"):
        raise click.ClickException(
            f"{step.label}: only click, read_address and interrupts take a position"
        )
    # An interrupt clicks `target` (an image) or `at` when its own image shows.
    ff.swap(
        table, "target" if step.action == "interrupt" else "image", "at", [round(v, 2) for v in at]
    )
    return None


def _calibration(ff: FlowFile, win: flowmod.Rect, ratio: float) -> None:
    table = ff.table("calibration")
    ff.put(table, "window", [float(win.w), float(win.h)])
    ff.put(table, "pixel_ratio", round(ratio, 3))


@flow.command()
@click.option(
    "--step",
    "step_name",
    default=None,
    help="Capture only this step (non-interactive with --box/--at).",
)
@click.option(
    "--box",
    default=None,
    help="X,Y,W,H points from the window's top-left: the image (or photo region) to capture.",
)
@click.option(
    "--at",
    "at_text",
    default=None,
    help="X,Y points from the window's top-left: where the step clicks.",
)
@click.option(
    "--image",
    default=None,
    help="With --step and --box: capture this other image of the step (an outcome's"
    " failure image, an interrupt's target).",
)
@click.option(
    "--window",
    "set_window",
    is_flag=True,
    help="Record the window's current size and pixel ratio as the calibration.",
)
@click.option(
    "--all",
    "all_steps",
    is_flag=True,
    help="Also the steps after the irreversible one (screens seen after a launch).",
)
@click.pass_context
def calibrate(ctx, step_name, box, at_text, image, set_window, all_steps) -> None:
    """Guided capture of reference images and positions into your flow file. Show each
    screen in the app yourself: calibrate clicks nothing."""
    cfg = _cfg(ctx)
    path = _own_flow_file(cfg)
    try:
        fl = flowmod.load(path)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    driver = _driver(fl)
    win = driver.window(fl.app)
    if win is None:
        raise click.ClickException(
            f"no window {fl.app!r} on screen; open the app (or set flow.app in {path.name})"
        )
    ratio = driver.screenshot().width / driver.screen_size()[0]
    before = fl.calibration
    if (
        step_name is None
        and not set_window
        and (before.window != (win.w, win.h) or abs(ratio - before.pixel_ratio) > 0.01)
    ):
        click.echo(
            f"note: the window is {win.w:g}x{win.h:g} (pixel ratio {ratio:g}), the flow was"
            f" calibrated at {before.window[0]:g}x{before.window[1]:g} ({before.pixel_ratio:g});"
            " recapture every step: a skipped one keeps positions that no longer fit"
        )
    ff = _open_file(path)
    if set_window or step_name is None:
        _calibration(ff, win, ratio)
    elif (
        abs(win.w - fl.calibration.window[0]) > 1
        or abs(win.h - fl.calibration.window[1]) > 1
        or abs(ratio - fl.calibration.pixel_ratio) > 0.01
    ):
        raise click.ClickException(
            f"the window is {win.w:g}x{win.h:g} at pixel ratio {ratio:g}, the flow was calibrated at"
            f" {fl.calibration.window[0]:g}x{fl.calibration.window[1]:g} ({fl.calibration.pixel_ratio:g});"
            " recalibrate every step (`moonshot flow calibrate`) or add --window"
        )
    if set_window and step_name is None:
        click.echo(f"{path}:")
        _save(ff)
        click.echo(f"calibration window {win.w:g}x{win.h:g}, pixel ratio {ratio:g} saved to {path}")
        return
    if step_name is not None:
        step = fl.entry(step_name)
        if step is None:
            raise click.ClickException(
                f"no step {step_name!r} in {path}; steps: {', '.join(s.name for s in fl.entries)}"
            )
        if (box is None) == (at_text is None):
            raise click.ClickException("give exactly one of --box X,Y,W,H or --at X,Y with --step")
        captured = _apply(
            driver,
            fl,
            ff,
            win,
            step,
            _pair(box, 4, "--box") if box else None,
            _pair(at_text, 2, "--at") if at_text else None,
            image,
        )
        click.echo(f"{path}:")
        _save(ff, [captured] if captured else [])
        click.echo(f"{step.label} calibrated in {path}")
        return
    _guided(driver, fl, ff, win, all_steps)


def _open_file(path: Path) -> FlowFile:
    try:
        return FlowFile.open(path)
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _corner(driver, win: flowmod.Rect, prompt: str) -> tuple[float, float] | None:
    answer = click.prompt(f"  {prompt}, then press Enter (s: skip)", default="", show_default=False)
    if answer.strip().lower() == "s":
        return None
    x, y = driver.position()
    return (x - win.x, y - win.y)


def _guided(driver, fl: flowmod.Flow, ff: FlowFile, win: flowmod.Rect, all_steps: bool) -> None:
    cut = fl.steps[fl.irreversible_index].index
    click.echo(
        f"Calibrating {fl.path} on a {win.w:g}x{win.h:g} window. Show each screen in the app"
        " yourself; nothing is clicked. Answer s to keep a step as it is."
    )
    captured: list[Path] = []
    original = ff.original
    for step in fl.steps:
        if step.index > cut and not all_steps:
            click.echo(f"skip {step.label}: shown only after a launch (use --all, or --step later)")
            continue
        region = step.action in REGION_ACTIONS and (
            step.action != "type" or fl.verify_method(step) == "ocr"
        )
        if step.action == "activate" or (step.action == "type" and not region):
            continue
        if step.image is not None and step.image in captured:
            # Two steps may share an image (a wait for a button, then its click): ask once.
            click.echo(f"{step.label}: {step.image.name} captured above")
            continue
        wants_image = (
            region or step.image is not None or step.action in ("wait", "verify", "outcome")
        )
        click.echo(f"{step.label} ({step.action}{', IRREVERSIBLE' if step.irreversible else ''}):")
        if wants_image:
            what = {
                "check_photo": "the first (newest) photo thumbnail",
                "read_text": f"where the app shows the {step.field}",
                "read_photo": "the chosen picture",
                "type": f"the {step.field} field",
            }.get(step.action, "the target")
            a = _corner(driver, win, f"put the mouse on the TOP-LEFT corner of {what}")
            b = _corner(driver, win, "now on its BOTTOM-RIGHT corner") if a else None
            if a and b:
                box = (min(a[0], b[0]), min(a[1], b[1]), abs(b[0] - a[0]), abs(b[1] - a[1]))
                shot = _apply(driver, fl, ff, win, step, box=box)
                captured += [shot] if shot else []
        else:
            p = _corner(driver, win, "put the mouse on the target")
            if p:
                _apply(driver, fl, ff, win, step, at=p)
        ff.save()  # keep progress if interrupted; the summary below covers the whole run
    click.echo(f"{fl.path}:")
    ff.original = original
    _save(ff, captured)
    for s in fl.reset + fl.interrupts:
        click.echo(
            f"{s.label}: capture its image on its own screen with"
            f" `moonshot flow calibrate --step {s.name} --box X,Y,W,H`"
        )
    click.echo("calibrated; check it: `moonshot flow show`, then `moonshot flow check`")


# -- flow record ------------------------------------------------------------------------
def _test_coin(cfg, coin_id, name, ticker, photo) -> tuple[str, str, Path]:
    """The test coin's name, ticker (as the app will get them) and photo."""
    from moonshot.app import safetext

    if coin_id is not None:
        from moonshot.adapters import build_library

        coin = _imported_coin(cfg, coin_id, "recording with it")
        name, ticker = coin.name, coin.ticker
        path_of = getattr(build_library(cfg), "path_of", None)
        asset = path_of(coin.photos_asset_id) if path_of else None
        photo = asset or cfg.spool_dir / coin.image_filename
    if not (name and ticker and photo):
        raise click.ClickException(
            "give the test coin: --coin ID (one in the state db), or --name, --ticker and --photo"
        )
    try:
        name = safetext.field(name, cfg.launch.name_max_bytes, "name")
        ticker = safetext.field(ticker, cfg.launch.ticker_max_bytes, "ticker")
    except safetext.UnsafeText as exc:
        raise click.ClickException(str(exc)) from None
    if not Path(photo).is_file():
        raise click.ClickException(f"the coin's photo {photo} is missing")
    return name, ticker, Path(photo)


def _ask(prompt: str) -> str:
    return click.prompt(prompt, default="", show_default=False, prompt_suffix="\n> ").strip()


def _record_session(cfg, fl_app: str, folder: Path, coin_text: tuple[str, str]) -> Path:
    """Watch the person do one launch; returns the saved session folder."""
    from moonshot.app.recorder import Recorder

    driver = _driver_for(fl_app)
    win = driver.window(fl_app)
    if win is None:
        raise click.ClickException(
            f"no window {fl_app!r} on screen; open the app (or give its window title: --app TITLE)"
        )
    ratio = driver.screenshot().width / driver.screen_size()[0]
    name, ticker = coin_text
    _ask(
        f"Recording the app window {fl_app!r} ({win.w:g}x{win.h:g} at {win.x:g},{win.y:g})."
        " Nothing is clicked or typed for you.\n"
        "1. Show the app's start screen (where every launch begins), then press Enter here."
    )
    rec = Recorder(fl_app, win, ratio, clipboard=getattr(driver, "clipboard_get", None))
    try:
        rec.start()
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _ask(
            f"2. Recording. In the app, do one launch of the test coin by hand: click each"
            f" field and type its name {name!r} and ticker {ticker!r}, pick its photo (the"
            " newest), go on to the screen with the button that spends money.\n"
            "   Stop there WITHOUT clicking it (or click it for a real launch of this coin and"
            " go through the screens after it, copying the address). Then press Enter here."
        )
        rec.phase("launch-end")
        clicks = [e for e in rec.events if e.kind == "click" and e.inside]
        followed = _what_followed(rec.events, clicks)
        click.echo(f"   {len(clicks)} clicks in the app window:")
        for i, e in enumerate(clicks, 1):
            then = f"  then {', '.join(followed[i])}" if i in followed else ""
            click.echo(f"   {i:3}  at {e.x:g},{e.y:g}{then}")
        answer = ""
        while True:
            answer = _ask(
                "3. Which click spends money? Type its number, or p if you stopped before it"
                " (then point at it)."
            ).lower()
            if answer == "p":
                break
            if answer.isdigit() and 1 <= int(answer) <= len(clicks):
                wrong = _not_the_spend(int(answer), followed)
                if wrong is None:
                    break
                click.echo(f"   {wrong}")
        if answer == "p":
            _ask(
                "   Point the mouse at the button that spends money (do NOT click it), then"
                " press Enter here."
            )
            mark = rec.mark()
            click.echo(f"   the button is at {mark.x:g},{mark.y:g} in the window")
        chosen = 0 if answer == "p" else int(answer)
        _ask(
            "4. The way back, for the [[reset]] steps (what moonshot does after a failed"
            " attempt). First take the app forward again to the deepest screen an attempt"
            " could stop on (the one with the spending button, or its dialog), WITHOUT"
            " clicking the spending button. These clicks are not steps. Then press Enter"
            " here (or press Enter now to start the way back from where the app is)."
        )
        rec.phase("deep-end")
        _ask(
            "5. Now bring the app back to its start screen as you would after a failed"
            " attempt: Cancel, Back, Close, and empty the fields (click, select all, delete;"
            " look that each is empty). Every click you make now"
            " is part of the way back. Then press Enter here."
        )
        rec.phase("reset-end")
    except (KeyboardInterrupt, click.Abort):
        rec.stop()
        path = rec.save(folder, {"irreversible": None})
        raise click.ClickException(
            f"recording stopped; what was recorded is in {path.parent}: build the flow with"
            f" `moonshot flow record --session {path.parent} --irreversible-step N`"
        ) from None
    rec.stop()
    click.echo(f"saving the recording ({len(rec.stream.settled)} screens) in {folder}")
    return rec.save(folder, {"irreversible": chosen}).parent


def _what_followed(events, clicks) -> dict[int, list[str]]:
    """For each listed click (1-based), what the person did after it, before the next
    click: the text typed, an address copied. Shown with the list, so that the person
    answers "which click spends?" from what each click did, not from positions alone."""
    number = {id(c): i for i, c in enumerate(clicks, 1)}
    out: dict[int, list[str]] = {}
    current = None
    for e in sorted(events, key=lambda e: e.t):
        if e.kind == "click":
            current = number.get(id(e))
        elif current is not None and e.kind == "type" and e.text:
            out.setdefault(current, []).append(f"typed {e.text!r}")
        elif current is not None and e.kind == "clipboard" and flowmod.valid_address(e.text):
            out.setdefault(current, []).append("an address was copied")
    return out


def _not_the_spend(n: int, followed: dict[int, list[str]]) -> str | None:
    """Why click n cannot be the one that spends money (found from outside: a wrong
    number was taken, and the flow would have spent on that step), or None."""
    typed = [i for i, done in followed.items() if any(d.startswith("typed") for d in done)]
    if n in typed:
        return f"click {n} was followed by typing: it is a field, not the button that spends"
    later = [i for i in typed if i > n]
    if later:
        return (
            f"you still typed after click {later[0]}: the click that spends comes after all"
            " the typing"
        )
    copied = [i for i, done in followed.items() if "an address was copied" in done and i < n]
    if copied:
        return (
            f"an address was copied after click {copied[0]}: the launch had happened by then,"
            f" so the click that spends is click {copied[0]} or one before it"
        )
    return None


def _progress(what: str):
    """A line that counts up while a slow part runs (about a second per screen)."""

    def tell(done: int, total: int) -> None:
        click.echo(f"\r{what}: {done} of {total}", nl=done == total)

    return tell


def _driver_for(app: str):
    from moonshot.app.driver import PyAutoGuiDriver  # connects to the display on import

    try:
        return PyAutoGuiDriver()
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None


def _confirm_spend(proposal, yes: bool) -> None:
    row = next(r for r in proposal.rows if r.keys.get("irreversible"))
    where = row.keys.get("image") or f"at {row.keys['at']}"
    click.echo(f"irreversible: step {row.name!r} ({where}): the ONE click that spends money")
    if yes:
        return
    answer = click.prompt(
        "Type yes if that is the button that spends money", default="", show_default=False
    )
    if answer.strip().lower() != "yes":
        raise click.ClickException(
            "not confirmed; nothing written. Build it again with"
            " `moonshot flow record --session DIR --irreversible-step N`"
        )


@flow.command()
@click.option("--coin", "coin_id", type=COIN_ID, help="The test coin from the state db.")
@click.option("--name", default=None, help="The test coin's name (without --coin).")
@click.option("--ticker", default=None, help="The test coin's ticker (without --coin).")
@click.option("--photo", default=None, help="The test coin's photo file (without --coin).")
@click.option("--app", "app_name", default=None, help="The app's window title or name.")
@click.option(
    "--session",
    "session_dir",
    default=None,
    help="Build the flow from a recording already made (a folder under logs/flow-record/).",
)
@click.option(
    "--irreversible-step",
    "irreversible",
    type=click.IntRange(0, 999),
    default=None,
    help="With --session: the number of the click that spends (0: the button pointed at).",
)
@click.option(
    "--yes", is_flag=True, help="Do not ask again which button spends (you named its number)."
)
@click.pass_context
def record(ctx, coin_id, name, ticker, photo, app_name, session_dir, irreversible, yes) -> None:
    """Record a flow while you do one launch by hand; writes your flow file (kept
    comments, a list of changes). Listens only: never clicks or types."""
    from moonshot.app import propose, sheet
    from moonshot.app.ocr import default_reader

    cfg = _cfg(ctx)
    coin_name, coin_ticker, photo_path = _test_coin(cfg, coin_id, name, ticker, photo)
    path = flowmod.flow_path(cfg.home, cfg.launch.flow)
    if path == flowmod.PACKAGED:
        path = cfg.home / flowmod.HOME_FLOW
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    old = _previous_doc(previous)
    app = app_name or (old.get("flow", {}).get("app") if old is not None else None) or "Moonshot"
    if session_dir is None:
        if irreversible is not None:
            raise click.ClickException(
                "--irreversible-step goes with --session (after you looked at it)"
            )
        stamp = time.strftime("%Y%m%dT%H%M%S")
        folder = _record_session(
            cfg, app, cfg.logs_dir / "flow-record" / stamp, (coin_name, coin_ticker)
        )
    else:
        folder = Path(session_dir)
    try:
        session = propose.Session.load(folder)
    except propose.ProposeError as exc:
        raise click.ClickException(str(exc)) from None
    chosen = irreversible if irreversible is not None else session.meta.get("irreversible")
    if chosen is None:
        try:
            clicks = session.clicks()[0]
        except propose.ProposeError as exc:
            raise click.ClickException(str(exc)) from None
        for c in clicks:
            click.echo(f"  {c.n:3}  at {c.at[0]:g},{c.at[1]:g}")
        raise click.ClickException(
            "which click spends money? add --irreversible-step N, N from the list above"
            " (0: the button you pointed at)"
        )
    with Image.open(photo_path) as img:
        coin = propose.Coin(coin_name, coin_ticker, img.convert("RGB"))
    head = old.get("flow", {}) if old is not None else {}
    reader = default_reader()
    proposer = propose.Proposer(
        session,
        coin,
        reader,
        reader,
        min_confidence=float(head.get("min_confidence", 0.8)),
        photo_confidence=float(head.get("photo_confidence", 0.8)),
        timeout=float(head.get("timeout", 10.0)),
        progress=_progress("building the flow: reading the recorded screens"),
    )
    try:
        proposal = proposer.propose(int(chosen))
    except propose.ProposeError as exc:
        raise click.ClickException(f"{exc} (recording kept in {folder})") from None
    doc = propose.document(proposal, session.app, old)
    try:
        flowmod.parse(tomlkit.parse(tomlkit.dumps(doc)).unwrap(), path)
    except flowmod.FlowError as exc:
        raise click.ClickException(
            f"the recorded flow is not valid: {exc} (recording kept in {folder})"
        ) from None
    _confirm_spend(proposal, yes)
    path.parent.mkdir(parents=True, exist_ok=True)
    for file, img in proposal.images().items():
        img.save(path.parent / file)
    for step_name, img in proposal.screens().items():
        sheet.save_screen(path.parent, step_name, img)
    if previous:
        backup = path.with_name(path.name + ".before-record")
        backup.write_text(previous, encoding="utf-8")
        click.echo(f"your previous flow file is kept as {backup}")
    click.echo(f"{path}:")
    _save(FlowFile.new(path, doc, previous))
    for note in proposal.notes:
        click.echo(f"note: {note}")
    if coin_id is not None and int(chosen) != 0:
        _spent_by_hand(cfg, coin_id, session)
    click.echo(
        "next: look at it with `moonshot flow show`, then `moonshot flow check --walk`"
        " and `moonshot flow run ID --dry-run` with a confirmed test coin"
    )


def _spent_by_hand(cfg, coin_id: int, session) -> None:
    """The person clicked the spending button while recording: the test coin was
    launched by hand, so the service must never launch it again (found from outside: it
    stayed `confirmed` and was launched a second time at the first start). It goes to
    `launching`, then `needs_review` with the address copied, for a person to settle."""
    from moonshot.cli.common import open_store

    store = open_store(cfg)
    coin = store.get(coin_id)
    if coin is None or coin.state != m.CONFIRMED:
        state = coin.state if coin else "gone"
        click.echo(f"the test coin {coin_id} is {state}: its state is left as it is")
        return
    copied = [c.copied for c in session.clicks()[0] if c.copied]
    address = copied[-1] if copied else None
    settle = f"`moonshot resolve {coin_id} --launched" + (
        f" --token-address {address}`" if address else " --token-address ...`"
    )
    reason = (
        f"launched by hand while recording the flow (flow record); check the app, then {settle}"
    )
    coin = store.get(coin_id)
    store.fire(coin, "start_launch", detail={"launcher": "flow record", "by_hand": True})
    store.fire(store.get(coin_id), "review", detail={"reason": reason}, last_error=reason)
    click.echo(
        f"the test coin {coin_id} was launched by your click: it is needs_review now, so the"
        f" service never launches it again; settle it with {settle}"
    )


def _previous_doc(text: str):
    if not text:
        return None
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError:
        return None


@flow.command("run")
@click.argument("coin_id", type=COIN_ID)
@click.option(
    "--dry-run", is_flag=True, help="Run every step before the irreversible one (required)."
)
@click.pass_context
def run_flow(ctx: click.Context, coin_id: int, dry_run: bool) -> None:
    """Fill the form for a coin in the state db without launching: every step up to the
    irreversible one. Launches happen only in `moonshot run`, with every guard."""
    if not dry_run:
        raise click.ClickException(
            "only --dry-run is supported here; real launches happen in `moonshot run`"
        )
    from moonshot.adapters import build_library
    from moonshot.app.launcher_gui import GuiLauncher, load_flow

    cfg = _cfg(ctx)
    try:
        fl = load_flow(cfg)  # a flow that is refused is refused first
    except MoonshotError as exc:
        raise click.ClickException(str(exc)) from None
    coin = _imported_coin(cfg, coin_id, "a dry run")
    try:
        launcher = GuiLauncher(cfg, fl, _driver(fl), build_library(cfg))
        launcher.prepare(coin, cfg.spool_dir / coin.image_filename)
    except MoonshotError as exc:
        raise click.ClickException(f"dry run stopped: {exc}") from None
    stop = fl.steps[fl.irreversible_index]
    for key, value in launcher.prepared_results.items():
        click.echo(f"  {key}: {value}")
    click.echo(
        f"dry run passed for coin {coin_id}: {len(fl.before)} steps done, the app showed"
        f" the coin's ticker, name and picture, stopped before {stop.label}; nothing"
        " irreversible was clicked"
    )
    problem = launcher.reset(coin_id)
    if problem:
        raise click.ClickException(problem)
    if fl.reset:
        click.echo(f"reset: {len(fl.reset)} steps, the app is back on its start screen")
    else:
        click.echo("no [[reset]] in the flow: clear the form in the app by hand")


commands = [flow]
