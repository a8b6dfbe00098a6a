"""A third stand-in for the Moonshot app (Tk, light, yet another layout), made to behave
the way real apps do where that is hard on `moonshot flow record`:

  hover       every button changes its face strongly while the pointer is over it (dark
              face, light text: the inverse of its plain look)
  live form   once both fields hold text, a large preview card (a quarter of the window)
              appears on the form and "Review" turns from grey to orange
  outcomes    the success and the error screen share one "Close" at the same place (top
              right); the success title holds the ticker ("$TICKER is live") and its only
              other things are the token address and "Copy address"
  same spot   "New token" (home), "Review" (form), "Mint" (review) and "Copy address"
              (success) sit at one place: the pointer that clicked one is over the next
              when its screen appears
  drafts      "Back" (review) and "Cancel" (form, picker) go towards home; the form keeps
              its text after them

Screens: home, form (name, symbol, "Pick image", the picked thumbnail), picker (the
library's newest photos), review ($TICKER, the name, the picture, "Mint": it spends, no
dialog), success, error. Every Mint is appended (fsynced) to the JSON-lines record with
the name, ticker and picture it creates, before the outcome screen shows.

    python tests/app/standin_rocket.py --library DIR --record FILE [--screen NAME]
        [--outcome success|error|none]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tkinter as tk
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps, ImageTk

# Run as a script with the checkout on PYTHONPATH (tests/app/gui_support.py's env()).
from tests.app.standin_app import append_record, base58, newest_assets, serve

TITLE = "Rocket Mint"
SIZE = (560, 620)
POSITION = (380, 90)
THUMB = 110
PICTURE = 180
BG, FG, MUTED = "#f7f7fb", "#1f2937", "#6b7280"
ORANGE, GREY, GREY_FG = "#ff5a1f", "#d1d5db", "#6b7280"
SOFT = "#e5e7eb"  # a secondary button's face
DARK, HOVER_FG = "#111827", "#ffd166"  # every button's face and text under the pointer
CARD = "#1e293b"
SCREENS = ("home", "form", "picker", "review", "success", "error")
# Boxes (x, y, w, h) in window points.
SPOT = (330, 540, 200, 52)  # New token, Review, Mint, Copy address: one place
BOX = {
    "title": (32, 28, 300, 40),
    "new-token": SPOT,
    "name-field": (32, 108, 300, 36),
    "symbol-field": (32, 184, 300, 36),
    "thumb": (380, 96, THUMB, THUMB),
    "pick-image": (380, 216, THUMB, 36),
    "card": (32, 296, 496, 200),
    "cancel": (32, 540, 140, 52),
    "review": SPOT,
    "grid": (32, 90, 4 * (THUMB + 8), 2 * (THUMB + 8)),
    "picture": (32, 90, PICTURE, PICTURE),
    "ticker": (236, 100, 300, 40),
    "name": (236, 148, 300, 32),
    "back": (32, 540, 140, 52),
    "mint": SPOT,
    "close": (440, 20, 96, 36),
    "address": (32, 100, 500, 24),
    "copy": SPOT,
}


class HoverButton(tk.Label):
    """A flat button (a Label: the press is the click, as in many toolkits) whose face
    turns dark with light text under the pointer."""

    def __init__(self, parent, text, command, primary=False, size=14):
        super().__init__(
            parent,
            text=text,
            font=("Helvetica", size, "bold" if primary else "normal"),
            bd=0,
            highlightthickness=0,
            cursor="hand2",
        )
        self.command = command
        self.face = (ORANGE, "#ffffff") if primary else (SOFT, FG)
        self.over = False
        self.bind("<Enter>", lambda e: self._hover(True))
        self.bind("<Leave>", lambda e: self._hover(False))
        self.bind("<ButtonRelease-1>", self._release)
        self.paint()

    def set_face(self, bg: str, fg: str) -> None:
        self.face = (bg, fg)
        self.paint()

    def paint(self) -> None:
        bg, fg = (DARK, HOVER_FG) if self.over else self.face
        self.configure(bg=bg, fg=fg)

    def _hover(self, over: bool) -> None:
        self.over = over
        self.paint()

    def _release(self, event) -> None:
        if 0 <= event.x < self.winfo_width() and 0 <= event.y < self.winfo_height():
            self.command()


class App:
    def __init__(self, root: tk.Tk, args: argparse.Namespace):
        self.root, self.library, self.record, self.outcome = (
            root,
            args.library,
            args.record,
            args.outcome,
        )
        self.chosen: dict | None = None
        self.chosen_image: Image.Image | None = None
        self.creates = 0
        self.current = ""
        self._keep: list = []
        self.buttons: list[HoverButton] = []
        root.title(TITLE)
        root.geometry(f"{SIZE[0]}x{SIZE[1]}+{POSITION[0]}+{POSITION[1]}")
        root.resizable(False, False)
        root.configure(bg=BG)
        self.frames = {n: tk.Frame(root, width=SIZE[0], height=SIZE[1], bg=BG) for n in SCREENS}
        self.screen = ""
        self._home()
        self._form()
        self._picker()
        self._review()
        self._outcomes()

    def log(self, event: dict) -> None:
        append_record(self.record, event)

    # -- widgets -----------------------------------------------------------------------
    def place(self, widget: tk.Widget, box: str) -> tk.Widget:
        x, y, w, h = BOX[box]
        widget.place(x=x, y=y, width=w, height=h)
        return widget

    def label(self, parent, text, size=13, bold=False, fg=FG, bg=BG, **kw) -> tk.Label:
        font = ("Helvetica", size, "bold" if bold else "normal")
        return tk.Label(parent, text=text, font=font, fg=fg, bg=bg, anchor="w", **kw)

    def button(self, parent, text, box, command, primary=False, size=14) -> HoverButton:
        b = self.place(HoverButton(parent, text, command, primary, size), box)
        self.buttons.append(b)
        return b

    def show(self, name: str) -> None:
        for frame in self.frames.values():
            frame.place_forget()
        self.screen = name
        for button in self.buttons:  # a hidden screen's button is under no pointer
            button.over = False
            button.paint()
        if name == "picker":
            self._fill_picker()
        if name == "form":
            self._form_look()
        self.frames[name].place(x=0, y=0)
        self.root.update_idletasks()
        self.log({"event": "screen", "screen": name})

    # -- screens -----------------------------------------------------------------------
    def _home(self) -> None:
        f = self.frames["home"]
        self.label(f, "Rocket Mint", size=26, bold=True, fg=ORANGE).place(x=32, y=40)
        self.label(f, "Launch a token in three steps", size=13, fg=MUTED).place(x=32, y=96)
        c = tk.Canvas(f, width=200, height=200, bg=BG, highlightthickness=0)
        c.create_oval(20, 20, 180, 180, fill="#ffe4d6", outline="")
        c.create_polygon(100, 40, 130, 130, 100, 115, 70, 130, fill=ORANGE, outline="")
        c.place(x=180, y=200)
        self.button(f, "New token", "new-token", lambda: self.show("form"), primary=True)

    def _form(self) -> None:
        f = self.frames["form"]
        self.label(f, "New token", size=20, bold=True).place(x=32, y=28)
        self.label(f, "Token name", size=11, fg=MUTED).place(x=32, y=84)
        self.label(f, "Symbol", size=11, fg=MUTED).place(x=32, y=160)
        self.vars = {"name": tk.StringVar(), "ticker": tk.StringVar()}
        self.entries = {}
        for key, box in (("name", "name-field"), ("ticker", "symbol-field")):
            e = tk.Entry(
                f,
                textvariable=self.vars[key],
                font=("Helvetica", 14),
                bg="#ffffff",
                fg=FG,
                relief="flat",
                highlightthickness=1,
                highlightcolor=ORANGE,
                highlightbackground="#c7cad1",
            )
            # Select-all, as on a Mac, so a field can be emptied (and retyped) by keys.
            e.bind(
                "<Control-a>",
                lambda ev: (ev.widget.select_range(0, "end"), ev.widget.icursor("end"), "break")[
                    -1
                ],
            )
            self.entries[key] = self.place(e, box)
            self.vars[key].trace_add("write", lambda *_: self._form_look())
        self.thumb = tk.Label(f, text="No image", bg=SOFT, fg=MUTED, bd=0)
        self.place(self.thumb, "thumb")
        self.button(f, "Pick image", "pick-image", lambda: self.show("picker"), size=12)
        self.card = tk.Canvas(f, bg=CARD, highlightthickness=0)
        self.button(f, "Cancel", "cancel", lambda: self.show("home"))
        self.review_button = self.button(f, "Review", "review", self.to_review, primary=True)

    def _form_look(self) -> None:
        """The live preview and the Review button follow what the fields hold."""
        name, ticker = self.vars["name"].get(), self.vars["ticker"].get()
        ready = bool(name.strip() and ticker.strip())
        self.review_button.set_face(*((ORANGE, "#ffffff") if ready else (GREY, GREY_FG)))
        if not ready:
            self.card.place_forget()
            return
        c = self.card
        c.delete("all")
        x, y, w, h = BOX["card"]
        c.create_text(20, 22, text="PREVIEW", anchor="w", fill="#94a3b8", font=("Helvetica", 10))
        c.create_oval(20, 50, 120, 150, fill="#334155", outline="")
        if self.chosen_image is not None:
            pic = ImageTk.PhotoImage(round_picture(self.chosen_image, 100, CARD))
            self._card_pic = pic
            c.create_image(20, 50, image=pic, anchor="nw")
        c.create_text(
            140, 70, text=f"${ticker}", anchor="w", fill="#ffffff", font=("Helvetica", 20, "bold")
        )
        c.create_text(140, 110, text=name, anchor="w", fill="#cbd5e1", font=("Helvetica", 14))
        c.create_rectangle(140, 150, 300, 160, fill=ORANGE, outline="")
        c.place(x=x, y=y, width=w, height=h)

    def _picker(self) -> None:
        f = self.frames["picker"]
        self.label(f, "Pick an image", size=20, bold=True).place(x=32, y=28)
        self.grid = tk.Frame(f, bg=BG)
        x, y, _, _ = BOX["grid"]
        self.grid.place(x=x, y=y)
        self.button(f, "Cancel", "cancel", lambda: self.show("form"))

    def _review(self) -> None:
        f = self.frames["review"]
        self.label(f, "Review", size=20, bold=True).place(x=32, y=28)
        self.picture = tk.Label(f, bg=SOFT, text="No image", fg=MUTED, bd=0)
        self.place(self.picture, "picture")
        self.shown_ticker = self.place(self.label(f, "", size=24, bold=True), "ticker")
        self.shown_name = self.place(self.label(f, "", size=16), "name")
        self.label(f, "Mint cost: 0.02 SOL", size=12, fg=MUTED).place(x=236, y=200)
        self.button(f, "Back", "back", lambda: self.show("form"))
        self.button(f, "Mint", "mint", self.mint, primary=True, size=16)

    def _outcomes(self) -> None:
        f = self.frames["success"]
        self.button(f, "Close", "close", self.close, size=12)
        self.live = self.label(f, "", size=22, bold=True, fg="#15803d")
        self.live.place(x=32, y=30)
        self.address = self.place(self.label(f, "", size=10, fg=FG), "address")
        self.address.configure(font=("Courier", 10))
        self.button(f, "Copy address", "copy", self.copy, primary=True)
        f = self.frames["error"]
        self.button(f, "Close", "close", self.close, size=12)
        self.label(f, "Mint failed", size=22, bold=True, fg="#b91c1c").place(x=32, y=30)
        self.label(f, "The network did not take the token. Try again later.", fg=MUTED).place(
            x=32, y=100
        )

    # -- the picker --------------------------------------------------------------------
    def _fill_picker(self) -> None:
        for child in self.grid.winfo_children():
            child.destroy()
        self._keep.clear()
        for i, (asset_id, filename, rel) in enumerate(newest_assets(self.library, 8)):
            with Image.open(self.library / rel) as img:
                img = img.convert("RGB")
            thumb = ImageTk.PhotoImage(ImageOps.fit(img, (THUMB, THUMB), Image.LANCZOS))
            self._keep.append(thumb)
            cell = tk.Label(self.grid, image=thumb, bd=0, highlightthickness=0, bg=BG)
            cell.grid(row=i // 4, column=i % 4, padx=(0, 8), pady=(0, 8))
            what = {"asset_id": asset_id, "filename": filename}
            cell.bind("<Button-1>", lambda e, w=what, im=img: self.choose(w, im))

    def choose(self, what: dict, img: Image.Image) -> None:
        self.chosen, self.chosen_image = what, img
        small = ImageTk.PhotoImage(ImageOps.fit(img, (THUMB, THUMB), Image.LANCZOS))
        self.thumb.configure(image=small, text="")
        self.thumb.image = small
        self.show("form")

    # -- actions -----------------------------------------------------------------------
    def to_review(self) -> None:
        name, ticker = self.vars["name"].get(), self.vars["ticker"].get()
        if not (name.strip() and ticker.strip()):
            return  # the grey Review does nothing
        self.shown_ticker.configure(text=f"${ticker}")
        self.shown_name.configure(text=name)
        if self.chosen_image is not None:
            pic = ImageTk.PhotoImage(round_picture(self.chosen_image, PICTURE, BG))
            self.picture.configure(image=pic, text="")
            self.picture.image = pic
        else:
            self.picture.configure(image="", text="No image")
        self.show("review")

    def mint(self) -> None:
        self.creates += 1
        event = {
            "event": "create",
            "name": self.vars["name"].get(),
            "ticker": self.vars["ticker"].get(),
            "photo": self.chosen,
            "n": self.creates,
        }
        self.log(event)
        if self.outcome == "none":
            return
        if self.outcome == "error":
            self.show("error")
            return
        self.current = base58(hashlib.sha256(json.dumps(event, sort_keys=True).encode()).digest())
        self.address.configure(text=self.current)
        self.live.configure(text=f"${event['ticker']} is live")
        self.show("success")

    def copy(self) -> None:
        self.root.clipboard_clear()
        self.root.clipboard_append(self.current)
        self.log({"event": "copy", "address": self.current})

    def close(self) -> None:
        for var in self.vars.values():
            var.set("")
        self.chosen = self.chosen_image = None
        self.thumb.configure(image="", text="No image")
        self.show("home")


def round_picture(img: Image.Image, size: int, bg: str, radius: int = 20) -> Image.Image:
    pic = ImageOps.fit(img.convert("RGB"), (size, size), Image.LANCZOS)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, size - 1, size - 1), radius, fill=255)
    out = Image.new("RGB", (size, size), bg)
    out.paste(pic, (0, 0), mask)
    return out


def calibration_screen(app: App, screen: str) -> None:
    """A screen with sample content where it needs some (for looking at it by hand)."""
    if screen in ("review", "success", "error"):
        app.vars["name"].set("Sample coin")
        app.vars["ticker"].set("SMPL")
        if screen == "review":
            app.to_review()
            return
        app.current = base58(hashlib.sha256(b"calibration").digest())
        app.address.configure(text=app.current)
        app.live.configure(text="$SMPL is live")
    app.show(screen)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--record", required=True, type=Path)
    ap.add_argument("--screen", default="home", choices=SCREENS)
    ap.add_argument("--outcome", default="success", choices=("success", "error", "none"))
    args = ap.parse_args()
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
