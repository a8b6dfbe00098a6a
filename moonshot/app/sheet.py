"""`moonshot flow show`: the flow as a contact sheet a person can look at. One row per
step (then the reset steps and the interrupts), in order: its name and action, its
reference image at 1:1, the screen it was captured on with the image's box and the click
point drawn, and, when the app is showing, where the image matches on the screen now and
with what score. Written as one PNG and an HTML page with the parts beside it; an
`index.json` says where each reference sits in the PNG. Clicks nothing."""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from moonshot.app import matching as imagematch
from moonshot.app.flow import Flow, Rect, Step

SCREENS = "screens"  # beside the flow file: the window as each step was captured on it
THUMB_H = 220  # pixels: screens are drawn this tall
CROP_MAX = 360  # references wider than this are scaled down on the sheet (not in parts/)
PAD = 10
LABEL_W = 300
RED, BLUE, GREEN = (220, 30, 30), (30, 90, 220), (20, 150, 60)


def screen_path(flow: Flow, step: Step) -> Path:
    return flow.path.parent / SCREENS / f"{step.name}.png"


def save_screen(flow_dir: Path, step_name: str, window_shot: Image.Image) -> Path:
    """Keep the window as a step was captured on it (calibrate and record call this)."""
    folder = flow_dir / SCREENS
    folder.mkdir(exist_ok=True)
    path = folder / f"{step_name}.png"
    window_shot.save(path)
    return path


@dataclass
class Live:
    """The app window on screen now: its pixels, and a finder for a step's image."""

    shot: Image.Image  # the window only, in pixels
    ratio: float  # pixels per point now
    find: Callable[[Step, Path], tuple[Rect, float] | None]  # box in `shot` pixels, score


@dataclass
class Tile:
    step: Step
    label: list[str]
    crop: Image.Image | None
    screen: Image.Image | None
    live: Image.Image | None
    live_note: str


def _open(path: Path | None) -> Image.Image | None:
    if path is None or not path.is_file():
        return None
    with Image.open(path) as img:
        return img.convert("RGB")


def _cross(draw: ImageDraw.ImageDraw, x: float, y: float, colour, size: int = 8) -> None:
    draw.line((x - size, y, x + size, y), fill=colour, width=2)
    draw.line((x, y - size, x, y + size), fill=colour, width=2)


def _points_box(flow: Flow, region, ratio: float) -> tuple[float, float, float, float]:
    x, y, w, h = region
    return (x * ratio, y * ratio, (x + w) * ratio, (y + h) * ratio)


def _tile(flow: Flow, step: Step, live: Live | None) -> Tile:
    ref = _open(step.image)
    screen = _open(screen_path(flow, step))
    label = [f"{step.label}", f"action: {step.action}"]
    if step.irreversible:
        label.append("IRREVERSIBLE: the click that spends")
    if step.optional:
        label.append("optional")
    if step.field:
        label.append(f"field: {step.field}")
    if step.image is not None:
        label.append(f"image: {step.image.name}{'' if ref else ' (MISSING)'}")
    ratio_then = flow.calibration.pixel_ratio
    if screen is not None:
        if ref is None and step.region is not None:  # what the step reads, as captured
            ref = screen.crop(tuple(round(v) for v in _points_box(flow, step.region, ratio_then)))
        screen = screen.copy()
        draw = ImageDraw.Draw(screen)
        if ref is not None:
            m = imagematch.locate(ref, screen)
            if m and m.score > 0.5:
                r = m.rect
                draw.rectangle((r.x, r.y, r.x + r.w - 1, r.y + r.h - 1), outline=RED, width=2)
                if step.action == "click" and step.at is None:
                    _cross(draw, r.x + r.w / 2, r.y + r.h / 2, RED)
        if step.at is not None:
            _cross(draw, step.at[0] * ratio_then, step.at[1] * ratio_then, RED)
        if step.region is not None:
            draw.rectangle(_points_box(flow, step.region, ratio_then), outline=BLUE, width=2)
    if step.at is not None:
        label.append(f"clicks at {step.at[0]:g},{step.at[1]:g}")
    if step.region is not None:
        label.append("region: " + ", ".join(f"{v:g}" for v in step.region))
    shown, note = None, ""
    if live is not None:
        shown = live.shot.copy()
        draw = ImageDraw.Draw(shown)
        if step.image is not None and step.image.is_file():
            hit = live.find(step, step.image)
            if hit is not None:
                box, score = hit
                conf = step.confidence or flow.confidence
                colour = GREEN if score >= conf else RED
                draw.rectangle(
                    (box.x, box.y, box.x + box.w - 1, box.y + box.h - 1), outline=colour, width=3
                )
                note = (
                    f"now: match {score:.2f} at {box.x / live.ratio:.0f},{box.y / live.ratio:.0f}"
                )
                note += "" if score >= conf else f" (< {conf:g}: not this screen)"
            else:
                note = "now: no match"
        elif step.region is not None:
            k = live.ratio
            x, y, w, h = step.region
            draw.rectangle((x * k, y * k, (x + w) * k, (y + h) * k), outline=BLUE, width=3)
            note = "now: the region it reads"
    return Tile(step, label, ref, screen, shown, note)


def _thumb(img: Image.Image) -> Image.Image:
    k = THUMB_H / img.height
    return img.resize((max(1, round(img.width * k)), THUMB_H), Image.LANCZOS)


def render(flow: Flow, out_dir: Path, live: Live | None = None) -> tuple[Path, Path]:
    """Write sheet.png, index.html, index.json and parts/ into `out_dir` (replaced)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    parts = out_dir / "parts"
    parts.mkdir(parents=True)
    tiles = [_tile(flow, s, live) for s in flow.entries]
    font = ImageFont.load_default()
    rows, index = [], []
    for i, t in enumerate(tiles, 1):
        crop = t.crop
        if crop is not None and crop.width > CROP_MAX:
            crop = crop.resize((CROP_MAX, max(1, round(crop.height * CROP_MAX / crop.width))))
        screen = _thumb(t.screen) if t.screen is not None else None
        shown = _thumb(t.live) if t.live is not None else None
        widths = [LABEL_W, (crop.width if crop else 120), (screen.width if screen else 120)]
        widths.append(shown.width if shown else 0)
        height = max(THUMB_H, crop.height if crop else 0, 16 * (len(t.label) + 2)) + 2 * PAD
        row = Image.new("RGB", (sum(widths) + PAD * (len(widths) + 1), height), "white")
        draw = ImageDraw.Draw(row)
        text = [*t.label, t.live_note] if t.live_note else t.label
        for k, line in enumerate(text):
            colour = RED if "IRREVERSIBLE" in line or "MISSING" in line else (0, 0, 0)
            draw.text((PAD, PAD + 16 * k), line, fill=colour, font=font)
        x = PAD + LABEL_W + PAD
        entry = {
            "step": t.step.name,
            "section": t.step.section,
            "label": t.label,
            "live": t.live_note,
        }
        if crop is not None:
            row.paste(crop, (x, PAD))
            entry["crop"] = [x, PAD, crop.width, crop.height]  # row-relative; fixed below
            entry["scaled"] = crop is not t.crop
        x += widths[1] + PAD
        if screen is not None:
            row.paste(screen, (x, PAD))
        x += widths[2] + PAD
        if shown is not None:
            row.paste(shown, (x, PAD))
        stem = f"{i:02d}-{t.step.name}"
        for kind, img in (("crop", t.crop), ("screen", t.screen), ("live", t.live)):
            if img is not None:
                img.save(parts / f"{stem}-{kind}.png")
                entry[f"{kind}_file"] = f"parts/{stem}-{kind}.png"
        rows.append(row)
        index.append(entry)
    width = max((r.width for r in rows), default=400)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + PAD), (235, 235, 235))
    y = 0
    for row, entry in zip(rows, index, strict=True):
        sheet.paste(row, (0, y))
        if "crop" in entry:
            entry["crop"][1] += y
        y += row.height + 1
    png = out_dir / "sheet.png"
    sheet.save(png)
    (out_dir / "index.json").write_text(
        json.dumps({"flow": str(flow.path), "steps": index}, indent=1), encoding="utf-8"
    )
    page = out_dir / "index.html"
    page.write_text(_html(flow, index, live is not None), encoding="utf-8")
    return png, page


def _html(flow: Flow, index: list[dict], live: bool) -> str:
    head = (
        "<!doctype html><meta charset=utf-8><title>moonshot flow</title><style>"
        "body{font:14px sans-serif;margin:16px}td{vertical-align:top;padding:6px;"
        "border-bottom:1px solid #ddd}img.s{height:220px}.irr{color:#c00;font-weight:bold}"
        "</style>"
        f"<h1>{html.escape(flow.path.name)}</h1><p>{html.escape(str(flow.path))}; app"
        f" {html.escape(flow.app)!s}; calibrated on {flow.calibration.window[0]:g}x"
        f"{flow.calibration.window[1]:g} points at pixel ratio {flow.calibration.pixel_ratio:g}."
        f" {'The last column is the screen now.' if live else 'The app was not showing: no live column.'}"
        " Red: the reference's box and the click point where it was captured; blue: a region"
        " the step reads; green: where it matches now.</p><p><a href=sheet.png>sheet.png</a></p>"
        "<table><tr><th>step</th><th>reference</th><th>captured on</th><th>now</th></tr>"
    )
    rows = []
    for e in index:
        label = "<br>".join(
            f"<span class=irr>{html.escape(x)}</span>" if "IRREVERSIBLE" in x else html.escape(x)
            for x in e["label"] + ([e["live"]] if e["live"] else [])
        )
        cells = [f"<td>{label}</td>"]
        for kind, cls in (("crop", ""), ("screen", "s"), ("live", "s")):
            file = e.get(f"{kind}_file")
            cells.append(f"<td><img class='{cls}' src='{file}'></td>" if file else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return head + "\n".join(rows) + "</table>\n"
