"""A second stand-in for the Moonshot app (Tk, dark, another layout than standin_app.py),
for the verified-launch gui tests: home, coin details, a photo picker, a review screen, a
confirmation dialog, success and error screens. Its two input boxes look alike, keep
Tk's own Entry bindings (Ctrl+A moves to the start of the line, it does not select all)
and keep their text after "Back". The review shows `$TICKER`, the name cut with an
ellipsis and the chosen picture with rounded corners.

Hazards, switched on per run and drawn from a seeded random generator:
  prefill        the details form opens with text left in it
  decoy-colour   the picker's newest photo is the library's newest shifted 30 levels
  decoy-tint     ... the same texture with another tint (hue turned)
  popup          a "What's new" card shows on home or details (when arriving there from
                 elsewhere, not back from the picker or the review) after a random delay
                 (--popup-delay fixes it); it takes the keyboard focus and every click
                 until "Got it": typed keys and clicks that land meanwhile are lost
  stuck          Back and Cancel do nothing (the app cannot be brought home)
A decoy is a picture that is NOT in the library: the pipeline's newest-asset check
passes, only reading the screen back can catch it. `--cursed RATE` makes the decoy
permanent for that share of the library's assets (a hazard no retry can clear).

Every Confirm is appended (fsynced) to the JSON-lines record with the name, ticker and
picture it would create, before the success screen shows; so is every hazard.

    python tests/app/standin_multi.py --library DIR --record FILE [--screen NAME]
        [--outcome success|error|none] [--hazards prefill,popup,...] [--rate 0.3]
        [--seed N] [--cursed 0.0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tkinter as tk
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps, ImageTk

# Run as a script with the checkout on PYTHONPATH (tests/app/gui_support.py's env()).
from tests.app.standin_app import append_record, base58, newest_assets, serve

TITLE = "Moonshot Multi"
SIZE = (440, 780)
POSITION = (600, 10)
THUMB = 96
PICTURE = 160
NAME_SHOWN = 20  # characters of the name the review shows before the ellipsis
BG, CARD, FG, ACCENT, MUTED = "#15151f", "#2a2a40", "#f2f2f7", "#7c5cff", "#9a9ab0"
HAZARDS = ("prefill", "decoy-colour", "decoy-tint", "popup", "stuck")
SCREENS = ("home", "details", "picker", "review", "dialog", "success", "error", "whats-new")
# Boxes (x, y, w, h) in window points: what the tests calibrate the flow with.
BOX = {
    "home": (24, 16, 200, 44),
    "new-coin": (24, 680, 392, 56),
    "back": (16, 16, 90, 36),
    "details": (130, 18, 180, 32),
    "name-field": (24, 114, 392, 40),
    "symbol-field": (24, 198, 392, 40),
    "choose-photo": (110, 294, 200, 40),
    "next": (24, 680, 392, 56),
    "picker": (150, 18, 160, 32),
    "picker-cancel": (330, 16, 90, 36),
    "newest": (20, 80, THUMB, THUMB),
    "review": (150, 18, 140, 32),
    "picture": (140, 80, PICTURE, PICTURE),
    "ticker": (24, 262, 392, 40),
    "name": (24, 308, 392, 34),
    "launch": (24, 680, 392, 56),
    "dialog": (60, 316, 320, 36),
    "dialog-cancel": (60, 430, 140, 44),
    "confirm": (240, 430, 140, 44),
    "live": (24, 16, 260, 40),
    "copy": (24, 130, 190, 44),
    "done": (226, 130, 190, 44),
    "failed": (24, 16, 260, 40),
    "whats-new": (50, 214, 200, 36),
    "got-it": (50, 390, 340, 48),
}


def decoy(img: Image.Image, kind: str) -> Image.Image:
    """A look-alike of the photo: 30 levels of green more (or less), or the same texture
    with its hue turned by a sixth of the circle."""
    img = img.convert("RGB")
    if kind == "decoy-colour":
        r, g, b = img.split()
        return Image.merge("RGB", (r, g.point(lambda v: v + 30 if v <= 225 else v - 30), b))
    h, s, v = img.convert("HSV").split()
    return Image.merge("HSV", (h.point(lambda x: (x + 43) % 256), s, v)).convert("RGB")


def rounded(img: Image.Image, size: int, radius: int = 24) -> Image.Image:
    pic = ImageOps.fit(img.convert("RGB"), (size, size), Image.LANCZOS)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, size - 1, size - 1), radius, fill=255)
    out = Image.new("RGB", (size, size), BG)
    out.paste(pic, (0, 0), mask)
    return out


class App:
    def __init__(self, root: tk.Tk, args: argparse.Namespace):
        self.root, self.library, self.record = root, args.library, args.record
        self.outcome, self.rate, self.cursed = args.outcome, args.rate, args.cursed
        self.popup_delay = args.popup_delay
        self.hazards = {h for h in args.hazards.split(",") if h}
        self.rng = random.Random(args.seed)
        self.seed = args.seed
        self.chosen: dict | None = None
        self.chosen_image: Image.Image | None = None
        self.creates = 0
        self.current = ""
        self._keep: list = []  # Tk images alive
        root.title(TITLE)
        root.geometry(f"{SIZE[0]}x{SIZE[1]}+{POSITION[0]}+{POSITION[1]}")
        root.resizable(False, False)
        root.configure(bg=BG)
        self.frames = {
            n: tk.Frame(root, width=SIZE[0], height=SIZE[1], bg=BG)
            for n in ("home", "details", "picker", "review", "success", "error")
        }
        self.screen = ""
        self._home()
        self._details()
        self._picker()
        self._review()
        self._dialog()
        self._outcomes()
        self._card()

    # -- record ------------------------------------------------------------------------
    def log(self, event: dict) -> None:
        append_record(self.record, event)

    def roll(self, hazard: str) -> bool:
        return hazard in self.hazards and self.rng.random() < self.rate

    # -- widgets -----------------------------------------------------------------------
    def place(self, widget: tk.Widget, box: str) -> tk.Widget:
        x, y, w, h = BOX[box]
        widget.place(x=x, y=y, width=w, height=h)
        return widget

    def label(self, parent, text, box=None, size=13, bold=False, fg=FG, bg=BG, **kw):
        font = ("Helvetica", size, "bold" if bold else "normal")
        lab = tk.Label(parent, text=text, font=font, fg=fg, bg=bg, anchor="w", **kw)
        if box:
            self.place(lab, box)
        return lab

    def button(self, parent, text, box, command, primary=False, size=14, origin=(0, 0)):
        """A flat button at BOX[box] in window points (`origin`: where its parent is)."""
        b = tk.Button(
            parent,
            text=text,
            font=("Helvetica", size, "bold" if primary else "normal"),
            fg=FG,
            bg=ACCENT if primary else CARD,
            activebackground=ACCENT if primary else CARD,
            activeforeground=FG,
            relief="flat",
            highlightthickness=0,
            bd=0,
            command=command,
        )
        x, y, w, h = BOX[box]
        b.place(x=x - origin[0], y=y - origin[1], width=w, height=h)
        return b

    def show(self, name: str, fresh: bool = True) -> None:
        """`fresh`: the user arrives at this screen (from home, or back home), not back
        from a screen it opened; only then may the What's-new card show."""
        for frame in self.frames.values():
            frame.place_forget()
        self.dialog.place_forget()
        self.card.place_forget()
        self.screen = name
        if name == "picker":
            self._fill_picker()
        self.frames[name].place(x=0, y=0)
        self.root.update_idletasks()
        self.log({"event": "screen", "screen": name})
        if fresh and name in ("home", "details") and self.roll("popup"):
            delay = self.popup_delay if self.popup_delay >= 0 else self.rng.randrange(0, 700)
            self.log({"event": "hazard", "kind": "popup", "screen": name, "delay_ms": delay})
            self.root.after(delay, lambda: self.open_card(name))

    # -- screens -------------------------------------------------------------------------
    def _home(self) -> None:
        f = self.frames["home"]
        self.label(f, "Moonshot", "home", size=24, bold=True, fg=ACCENT)
        self.label(f, "Trending", size=12, fg=MUTED).place(x=24, y=84)
        for i, row in enumerate(
            ("$DOGE   Dogecoin   +4%", "$PEPE   Pepe   -2%", "$MOON   Moon   +9%")
        ):
            self.label(f, row, size=13).place(x=24, y=116 + i * 34)
        self.button(f, "+  New coin", "new-coin", self.new_coin, primary=True, size=16)

    def _details(self) -> None:
        f = self.frames["details"]
        self.button(f, "‹ Back", "back", self.back_home)
        self.label(f, "Coin details", "details", size=16, bold=True)
        self.label(f, "Name", size=12, fg=MUTED).place(x=24, y=90)
        self.label(f, "Symbol", size=12, fg=MUTED).place(x=24, y=174)
        self.entries = {}
        for key, box in (("name", "name-field"), ("ticker", "symbol-field")):
            # Tk's own Entry: Ctrl+A is "start of line" here, as in any Tk app on X11.
            e = tk.Entry(
                f,
                font=("Helvetica", 14),
                bg=CARD,
                fg=FG,
                insertbackground=FG,
                relief="flat",
                highlightthickness=1,
                highlightcolor=ACCENT,
                highlightbackground=CARD,
            )
            self.entries[key] = self.place(e, box)
        self.label(f, "Photo", size=12, fg=MUTED).place(x=24, y=258)
        self.preview = tk.Label(f, bg=CARD, bd=0)
        self.preview.place(x=24, y=282, width=64, height=64)
        self.button(f, "Choose photo", "choose-photo", lambda: self.show("picker"))
        self.button(f, "Next", "next", lambda: self.to_review(), primary=True, size=16)

    def _picker(self) -> None:
        f = self.frames["picker"]
        self.label(f, "All Photos", "picker", size=16, bold=True)
        self.button(f, "Cancel", "picker-cancel", self.cancel_picker)
        self.grid = tk.Frame(f, bg=BG)
        self.grid.place(x=BOX["newest"][0], y=BOX["newest"][1])

    def _review(self) -> None:
        f = self.frames["review"]
        self.button(f, "‹ Back", "back", self.back_details)
        self.label(f, "Review", "review", size=16, bold=True)
        self.picture = tk.Label(f, bg=BG, bd=0)
        self.place(self.picture, "picture")
        self.shown_ticker = self.label(f, "", "ticker", size=22, bold=True)
        self.shown_name = self.label(f, "", "name", size=16)
        self.label(f, "Cost: 0.02 SOL", size=12, fg=MUTED).place(x=24, y=356)
        self.button(f, "Launch coin", "launch", self.ask, primary=True, size=16)

    def _dialog(self) -> None:
        self.dialog_at = (40, 296, 360, 200)
        origin = self.dialog_at[:2]
        d = self.dialog = tk.Frame(
            self.root, bg=CARD, highlightthickness=1, highlightbackground=MUTED
        )
        self.label(d, "Launch this coin?", None, size=17, bold=True, bg=CARD).place(x=20, y=20)
        self.label(d, "This spends 0.02 SOL.", None, size=12, fg=MUTED, bg=CARD).place(x=20, y=64)
        self.button(d, "Cancel", "dialog-cancel", self.cancel_dialog, origin=origin)
        self.button(d, "Confirm", "confirm", self.confirm, primary=True, origin=origin)

    def _outcomes(self) -> None:
        f = self.frames["success"]
        self.label(f, "Your coin is live", "live", size=20, bold=True, fg="#3ddc84")
        self.address = self.label(f, "", None, size=9)
        self.address.configure(font=("Courier", 9))
        self.address.place(x=24, y=90)
        self.button(f, "Copy address", "copy", self.copy)
        self.button(f, "Done", "done", self.done)
        f = self.frames["error"]
        self.label(f, "Launch failed", "failed", size=20, bold=True, fg="#ff5c5c")
        self.button(f, "OK", "copy", self.done)

    def _card(self) -> None:
        self.card_at = (30, 200, 380, 260)
        tint = "#2d2d50"
        c = self.card = tk.Frame(
            self.root, bg=tint, highlightthickness=1, highlightbackground=ACCENT
        )
        self.label(c, "What's new", None, size=18, bold=True, bg=tint).place(x=20, y=14)
        for i, line in enumerate(
            ("Launch in two taps.", "Dark mode everywhere.", "Faster charts.")
        ):
            self.label(c, "•  " + line, None, size=13, bg=tint).place(x=20, y=70 + i * 30)
        self.button(c, "Got it", "got-it", self.close_card, primary=True, origin=self.card_at[:2])

    def open_card(self, screen: str) -> None:
        if self.screen != screen:
            return
        x, y, w, h = self.card_at
        self.card.place(x=x, y=y, width=w, height=h)
        self.card.lift()
        self.card.focus_set()  # typed keys go to the card, not to the field behind it
        self.card.grab_set()  # and so does every click
        self.log({"event": "popup", "screen": screen})

    def close_card(self) -> None:
        self.card.grab_release()
        self.card.place_forget()
        self.log({"event": "popup-closed"})

    # -- the picker ----------------------------------------------------------------------
    def _cursed(self, asset_id: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{asset_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.cursed

    def _fill_picker(self) -> None:
        for child in self.grid.winfo_children():
            child.destroy()
        self._keep.clear()
        items: list[tuple[dict, Image.Image]] = []
        for asset_id, filename, rel in newest_assets(self.library, 8):
            with Image.open(self.library / rel) as img:
                items.append(({"asset_id": asset_id, "filename": filename}, img.convert("RGB")))
        kinds = [k for k in ("decoy-colour", "decoy-tint") if k in self.hazards]
        if items and kinds:
            newest = items[0][0]["asset_id"]
            cursed = self._cursed(newest)
            if cursed or self.rng.random() < self.rate:
                kind = self.rng.choice(kinds)
                look = decoy(items[0][1], kind)
                items.insert(0, ({"decoy": kind, "of": newest}, look))
                self.log({"event": "hazard", "kind": kind, "of": newest, "cursed": cursed})
        for i, (what, img) in enumerate(items[:8]):
            thumb = ImageTk.PhotoImage(ImageOps.fit(img, (THUMB, THUMB), Image.LANCZOS))
            self._keep.append(thumb)
            cell = tk.Label(self.grid, image=thumb, bd=0, highlightthickness=0, bg=BG)
            cell.grid(row=i // 4, column=i % 4, padx=(0, 4), pady=(0, 4))
            cell.bind("<Button-1>", lambda e, w=what, im=img: self.choose(w, im))

    def choose(self, what: dict, img: Image.Image) -> None:
        self.chosen, self.chosen_image = what, img
        small = ImageTk.PhotoImage(ImageOps.fit(img, (64, 64), Image.LANCZOS))
        self.preview.configure(image=small)
        self.preview.image = small
        self.show("details", fresh=False)

    # -- actions -------------------------------------------------------------------------
    def new_coin(self) -> None:
        if self.roll("prefill"):
            junk = {"name": self.rng.choice(("Old", "Draft coin", "x")), "ticker": "XX"}
            for key, text in junk.items():
                self.entries[key].insert("end", text)  # added to whatever is left there
            self.log({"event": "hazard", "kind": "prefill", "text": junk})
        self.show("details")

    def back_home(self) -> None:
        if "stuck" not in self.hazards:
            self.show("home")  # the form keeps its text, as a draft

    def back_details(self) -> None:
        if "stuck" not in self.hazards:
            self.show("details", fresh=False)

    def cancel_picker(self) -> None:
        if "stuck" not in self.hazards:
            self.show("details", fresh=False)

    def cancel_dialog(self) -> None:
        if "stuck" not in self.hazards:
            self.dialog.place_forget()

    def to_review(self) -> None:
        ticker = self.entries["ticker"].get()
        name = self.entries["name"].get()
        self.shown_ticker.configure(text=f"${ticker}")
        cut = name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1].rstrip() + "…"
        self.shown_name.configure(text=cut)
        if self.chosen_image is not None:
            pic = ImageTk.PhotoImage(rounded(self.chosen_image, PICTURE))
            self.picture.configure(image=pic)
            self.picture.image = pic
        else:
            self.picture.configure(image="")
        self.show("review")

    def ask(self) -> None:
        x, y, w, h = self.dialog_at
        self.dialog.place(x=x, y=y, width=w, height=h)
        self.dialog.lift()
        self.log({"event": "screen", "screen": "dialog"})

    def confirm(self) -> None:
        self.creates += 1
        event = {
            "event": "create",
            "name": self.entries["name"].get(),
            "ticker": self.entries["ticker"].get(),
            "photo": self.chosen,
            "n": self.creates,
        }
        self.log(event)
        self.dialog.place_forget()
        if self.outcome == "none":
            return  # the app hangs on the review screen
        if self.outcome == "error":
            self.show("error")
            return
        self.current = base58(hashlib.sha256(json.dumps(event, sort_keys=True).encode()).digest())
        self.address.configure(text=self.current)
        self.show("success")

    def copy(self) -> None:
        self.root.clipboard_clear()
        self.root.clipboard_append(self.current)
        self.log({"event": "copy", "address": self.current})

    def done(self) -> None:
        for e in self.entries.values():
            e.delete(0, "end")
        self.chosen = self.chosen_image = None
        self.preview.configure(image="")
        self.show("home")


def calibration_screen(app: App, screen: str) -> None:
    """Show a screen for calibration, with sample content where it needs some."""
    sample = Image.new("RGB", (300, 300), (40, 160, 90))
    ImageDraw.Draw(sample).ellipse((60, 60, 240, 240), fill=(240, 200, 40))
    if screen in ("review", "dialog"):
        app.entries["name"].insert(0, "Calibration coin")
        app.entries["ticker"].insert(0, "CALIB")
        app.chosen, app.chosen_image = {"sample": True}, sample
        app.to_review()
        if screen == "dialog":
            app.ask()
        return
    if screen == "success":
        app.current = base58(hashlib.sha256(b"calibration").digest())
        app.address.configure(text=app.current)
    if screen == "whats-new":
        app.show("home")
        app.open_card("home")
        return
    app.show(screen)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--record", required=True, type=Path)
    ap.add_argument("--screen", default="home", choices=SCREENS)
    ap.add_argument("--outcome", default="success", choices=("success", "error", "none"))
    ap.add_argument("--hazards", default="", help=f"comma-separated: {', '.join(HAZARDS)}")
    ap.add_argument("--rate", type=float, default=0.3, help="chance of each random hazard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cursed", type=float, default=0.0, help="share of assets always decoyed")
    ap.add_argument(
        "--popup-delay", type=int, default=-1, help="ms before the card shows (-1: 0-700 at random)"
    )
    args = ap.parse_args()
    unknown = {h for h in args.hazards.split(",") if h} - set(HAZARDS)
    if unknown:
        ap.error(f"unknown hazard {sorted(unknown)[0]}; known: {', '.join(HAZARDS)}")
    root = tk.Tk()
    app = App(root, args)

    def first() -> None:
        if args.screen == "home":
            app.show("home")
        else:
            calibration_screen(app, args.screen)

    serve(root, app, args.screen, first)


if __name__ == "__main__":
    main()
