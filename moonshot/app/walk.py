"""`moonshot flow check --walk`: the flow walked on the real app with a test coin, up to
and never including the irreversible step, every reference image looked for on its own
screen (so a multi-screen flow is checked whole, not only its first screen), then the
`[[reset]]` sequence. The irreversible step is looked at, never clicked; the steps after
it are not walked (their screens exist only after a launch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from moonshot.app.flow import OPTIONAL_WAIT, Step
from moonshot.app.launcher_gui import GuiLauncher
from moonshot.app.runner import CheckLine, Runner, StepFailed
from moonshot.ports import Coin


def _look(runner: Runner, step: Step, image: Path, timeout: float) -> float:
    """The best score of the image on screen within `timeout` (it may still be drawing)."""
    deadline = runner.clock() + timeout
    best = 0.0
    runner.pose(step)
    while True:
        m = runner.find(step, image, runner.driver.screenshot())
        best = max(best, m.score if m else 0.0)
        if best >= (step.confidence or runner.flow.confidence) or runner.clock() >= deadline:
            return best
        runner.sleep(0.1)


def _done(step: Step, score: float | None, results: dict[str, str]) -> str:
    found = f"{step.image.name} found (match {score:.2f})" if score is not None else ""
    extra = "; ".join(
        f"similarity {v}" if k.endswith(".score") else v
        for k, v in results.items()
        if k == step.name or k == f"{step.name}.score"
    )
    said = {
        "activate": "the window is there",
        "click": f"{found}, clicked" if found else f"clicked at {step.at}",
        "type": f"typed the {step.field}",
        "wait": found,
        "verify": found,
        "check_photo": "the picker's first photo is the coin's",
        "read_text": f"the app shows the coin's {step.field}",
        "read_photo": "the app shows the coin's picture",
    }.get(step.action, "done")
    if step.clear and step.action == "click":
        said += ", field emptied"
    return f"{said} ({extra})" if extra else said


def walk(
    launcher: GuiLauncher, coin: Coin, image: Path, say: Callable[[CheckLine], None]
) -> list[CheckLine]:
    """Walk the flow for this coin; every line is also given to `say` as it happens."""
    fl = launcher.flow
    lines: list[CheckLine] = []

    def line(step: Step, level: str, message: str) -> None:
        lines.append(CheckLine(step, level, message))
        say(lines[-1])

    runner = launcher.runner()
    for ln in runner.check(grace=0.0, look=False):  # the files: missing, flat
        if ln.level != "ok":
            line(ln.step, ln.level, ln.message)
    if any(not ln.ok for ln in lines):
        return lines
    newest = launcher.library.newest() if launcher.library is not None else None
    if launcher.library is not None and (newest is None or newest.id != coin.photos_asset_id):
        line(
            fl.steps[0],
            "fail",
            f"the newest photo in the library is {newest.id if newest else 'none'}, not test"
            f" coin {coin.id}'s; walk with the newest coin (`moonshot status`) or add a new one",
        )
        return lines
    ctx = launcher.context(coin, image)
    failed = False
    for step in fl.before:
        score = None
        if step.image is not None and step.action in ("click", "wait", "verify"):
            timeout = step.timeout
            if timeout is None:
                timeout = OPTIONAL_WAIT if step.optional else fl.timeout
                timeout = min(timeout, 2.0) if step.action == "verify" else timeout
            score = _look(runner, step, step.image, timeout) if runner.window else None
        try:
            runner.run((step,), ctx)
        except StepFailed as exc:
            line(step, "fail", exc.reason)
            failed = True
            break
        conf = step.confidence or fl.confidence
        if step.optional and (score or 0) < conf:
            line(step, "ok", f"{step.image.name} not showing: skipped (optional)")
        else:
            line(step, "ok", _done(step, score, ctx.results))
    if not failed:
        spend = fl.steps[fl.irreversible_index]
        if spend.image is not None:
            score = _look(runner, spend, spend.image, spend.timeout or fl.timeout)
            conf = spend.confidence or fl.confidence
            level = "ok" if score >= conf else "fail"
            line(
                spend,
                level,
                f"{spend.image.name} {'found' if level == 'ok' else 'NOT found'} (match"
                f" {score:.2f}); NOT clicked: it is the irreversible step",
            )
            failed = level == "fail"
        else:
            line(spend, "ok", f"clicks at {spend.at}; NOT clicked: it is the irreversible step")
        for step in fl.steps[fl.irreversible_index + 1 :]:
            line(step, "ok", "after the spend: not walked (its screen shows after a launch)")
    back = launcher.reset(coin.id, runner)
    first = fl.reset[0] if fl.reset else fl.steps[0]
    if back:
        line(first, "fail", back)
    elif fl.reset:
        line(first, "ok", f"reset: {len(fl.reset)} steps, back on the start screen")
    else:
        line(first, "warn", "no [[reset]]: bring the app back to its start screen by hand")
    return lines
