"""A stand-in for the Moonshot app's create-token form (Tk), for the gui tests: name and
ticker fields, an image picker (with a Cancel) whose first thumbnail is the newest photo
of a folder library, a create button, a success screen with an address and a copy button. Every
create is appended (fsynced) to a JSON-lines record before the success screen shows.

    python tests/app/standin_app.py --library DIR --record FILE [--screen form|picker|success]
                                [--outcome success|error|none]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import time
import tkinter as tk
from pathlib import Path

from PIL import Image, ImageOps, ImageTk

TITLE = "Moonshot"
SIZE = (420, 600)
THUMB = 96
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def append_record(record: Path, event: dict) -> None:
    """One event, stamped and fsynced, on the JSON-lines record the tests read."""
    event["at"] = time.time()
    with open(record, "a", encoding="utf-8") as f:
        f.write(json.dumps(event, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def newest_assets(library: Path, n: int) -> list[tuple[str, str, str]]:
    """The folder library's newest assets (id, original file name, path), read-only."""
    db = sqlite3.connect(f"file:{library / 'library.db'}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT id, original_filename, path FROM assets"
            " ORDER BY date_added DESC, seq DESC LIMIT ?",
            (n,),
        ).fetchall()
    finally:
        db.close()


class App:
    def __init__(self, root: tk.Tk, library: Path, record: Path, outcome: str):
        self.root, self.library, self.record, self.outcome = root, library, record, outcome
        self.chosen: dict | None = None
        self.creates = 0
        self._photos: list = []  # keep Tk images alive
        root.title(TITLE)
        root.geometry(f"{SIZE[0]}x{SIZE[1]}+40+30")
        root.resizable(False, False)
        self.frames = {
            n: tk.Frame(root, width=SIZE[0], height=SIZE[1], bg="white")
            for n in ("form", "picker", "success", "error")
        }
        self._form()
        self._success()
        self._error()
        tk.Label(
            self.frames["picker"], text="Recents", font=("Helvetica", 18, "bold"), bg="white"
        ).place(x=20, y=16)
        tk.Button(
            self.frames["picker"],
            text="Cancel",
            font=("Helvetica", 13),
            command=lambda: self.show("form"),
        ).place(x=300, y=16, width=100, height=36)
        self.grid = tk.Frame(self.frames["picker"], bg="white")
        self.grid.place(x=20, y=70)

    def log(self, event: dict) -> None:
        append_record(self.record, event)

    def show(self, name: str) -> None:
        for frame in self.frames.values():
            frame.place_forget()
        if name == "picker":
            self._fill_picker()
        self.frames[name].place(x=0, y=0)
        self.root.update_idletasks()
        self.log({"event": "screen", "screen": name})

    # -- screens ----------------------------------------------------------------------
    def _form(self) -> None:
        f = self.frames["form"]
        tk.Label(
            f, text="Create a coin", font=("Helvetica", 20, "bold"), fg="#5b2bd6", bg="white"
        ).place(x=20, y=16)
        tk.Label(f, text="Name", bg="white").place(x=20, y=80)
        self.name = tk.Entry(f, width=32, font=("Helvetica", 13))
        self.name.place(x=20, y=102, width=380, height=32)
        tk.Label(f, text="Ticker", bg="white").place(x=20, y=150)
        self.ticker = tk.Entry(f, width=12, font=("Helvetica", 13))
        self.ticker.place(x=20, y=172, width=380, height=32)
        for entry in (self.name, self.ticker):
            # Like iOS: select-all, so a retried flow can clear what a failed one typed.
            entry.bind(
                "<Control-a>",
                lambda e: (e.widget.select_range(0, "end"), e.widget.icursor("end"), "break")[-1],
            )
        self.preview = tk.Label(f, text="Add image", bg="#eeeeee", width=12, height=6)
        self.preview.place(x=20, y=230, width=120, height=120)
        self.preview.bind("<Button-1>", lambda e: self.show("picker"))
        tk.Button(
            f,
            text="Create coin",
            font=("Helvetica", 16, "bold"),
            bg="#5b2bd6",
            fg="white",
            activebackground="#5b2bd6",
            command=self.create,
        ).place(x=20, y=500, width=380, height=50)

    def _success(self) -> None:
        f = self.frames["success"]
        tk.Label(
            f, text="Coin created!", font=("Helvetica", 20, "bold"), fg="#1a8f3a", bg="white"
        ).place(x=20, y=16)
        self.address = tk.Label(f, text="", bg="white", font=("Courier", 9))
        self.address.place(x=20, y=80)
        tk.Button(f, text="Copy address", font=("Helvetica", 13), command=self.copy).place(
            x=20, y=120, width=180, height=40
        )
        tk.Button(f, text="Done", font=("Helvetica", 13), command=self.reset).place(
            x=220, y=120, width=180, height=40
        )

    def _error(self) -> None:
        f = self.frames["error"]
        tk.Label(
            f, text="Something went wrong", font=("Helvetica", 18, "bold"), fg="#c0392b", bg="white"
        ).place(x=20, y=16)

    def _fill_picker(self) -> None:
        for child in self.grid.winfo_children():
            child.destroy()
        self._photos.clear()
        for i, (asset_id, filename, rel) in enumerate(newest_assets(self.library, 6)):
            with Image.open(self.library / rel) as img:
                thumb = ImageOps.fit(img.convert("RGB"), (THUMB, THUMB))
            photo = ImageTk.PhotoImage(thumb)
            self._photos.append(photo)
            label = tk.Label(self.grid, image=photo, bd=0, highlightthickness=0)
            label.grid(row=i // 3, column=i % 3, padx=(0, 8), pady=(0, 8))
            label.bind(
                "<Button-1>", lambda e, a=asset_id, f=filename, p=photo: self.choose(a, f, p)
            )

    # -- actions ------------------------------------------------------------------------
    def choose(self, asset_id: str, filename: str, photo) -> None:
        self.chosen = {"asset_id": asset_id, "filename": filename}
        self.preview.configure(image=photo, text="")
        self.preview.image = photo
        self.show("form")

    def create(self) -> None:
        self.creates += 1
        event = {
            "event": "create",
            "name": self.name.get(),
            "ticker": self.ticker.get(),
            "photo": self.chosen,
            "n": self.creates,
        }
        self.log(event)
        if self.outcome == "none":
            return  # the app hangs: no outcome screen
        if self.outcome == "error":
            self.show("error")
            return
        digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).digest()
        self.current = base58(digest)
        self.address.configure(text=self.current)
        self.show("success")

    def copy(self) -> None:
        self.root.clipboard_clear()
        self.root.clipboard_append(self.current)
        self.log({"event": "copy", "address": self.current})

    def reset(self) -> None:
        self.name.delete(0, "end")
        self.ticker.delete(0, "end")
        self.chosen = None
        self.preview.configure(image="", text="Add image")
        self.show("form")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True, type=Path)
    ap.add_argument("--record", required=True, type=Path)
    ap.add_argument("--screen", default="form", choices=("form", "picker", "success", "error"))
    ap.add_argument("--outcome", default="success", choices=("success", "error", "none"))
    args = ap.parse_args()
    root = tk.Tk()
    app = App(root, args.library, args.record, args.outcome)
    if args.screen == "success":
        app.current = base58(hashlib.sha256(b"calibration").digest())
        app.address.configure(text=app.current)

    serve(root, app, args.screen, lambda: app.show(args.screen))


def serve(root: tk.Tk, app, screen: str, show_first) -> None:
    """Run a stand-in: Tk's swallowed callback errors and a "ready" event go to its
    record (what the tests wait for), after `show_first()` put up the first screen."""

    def report(exc, value, tb):  # Tk swallows callback errors: record them for the test
        app.log({"event": "error", "error": f"{exc.__name__}: {value}"})

    root.report_callback_exception = report
    show_first()
    # "ready" only once the window is mapped and drawn: a test looking earlier sees a
    # half-painted form.
    root.wait_visibility()
    root.update()
    root.after(100, lambda: app.log({"event": "ready", "screen": screen}))
    root.mainloop()


if __name__ == "__main__":
    main()
