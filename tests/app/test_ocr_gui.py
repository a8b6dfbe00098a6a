"""The reader on a real X screen: Tk widgets drawn by the X server (Xvfb), screenshot
through Pillow as the driver takes it, boxes cut from the widgets' places; the
read-back rules applied to what it reads. Catches what rendered-in-Pillow text cannot:
the fonts, hinting and widget frames of a real toolkit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import ImageGrab

from moonshot.app import ocr, readback
from tests.app import gui_support

xserver = gui_support.xserver
pytestmark = pytest.mark.gui

SCREEN = r"""
import json, sys, tkinter as tk
root = tk.Tk()
root.title("ocr-screen")
root.geometry("430x420+40+40")
root.configure(bg="white")
ticker = tk.Label(root, text="$MOON", font=("Helvetica", 16, "bold"), bg="white")
ticker.place(x=20, y=20)
name = tk.Label(root, text="Prefilled Coin of the Moon", font=("Helvetica", 16, "bold"),
                bg="white", wraplength=200, justify="left")
name.place(x=20, y=70)
field = tk.Entry(root, width=24, font=("Helvetica", 13))
field.insert(0, "Prefilled CoinOld")
field.place(x=20, y=170)
dark = tk.Label(root, text="Moon Coin", font=("Helvetica", 13), bg="#1c1c1e", fg="#f2f2f2")
dark.place(x=20, y=230)
root.update()
def box(w):
    return [w.winfo_rootx() - 4, w.winfo_rooty() - 2,
            w.winfo_rootx() + w.winfo_width() + 4, w.winfo_rooty() + w.winfo_height() + 2]
print(json.dumps({k: box(w) for k, w in
      {"ticker": ticker, "name": name, "field": field, "dark": dark}.items()}), flush=True)
root.mainloop()
"""


@pytest.fixture
def screen(xserver):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCREEN], stdout=subprocess.PIPE, text=True, env=gui_support.env()
    )
    try:
        boxes = json.loads(proc.stdout.readline())
        yield boxes
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tk_widgets_read_back_on_xvfb(screen, xserver):
    reader = ocr.default_reader()
    shot = None
    for _ in range(50):  # the window maps a moment after Tk reports its geometry
        shot = ImageGrab.grab(xdisplay=xserver).convert("RGB")
        if reader.read_line(shot.crop(screen["ticker"])).text:
            break
    ticker = reader.read_line(shot.crop(screen["ticker"]))
    assert readback.compare_ticker("MOON", ticker, min_confidence=0.8, dollar=True).ok, ticker
    name = reader.read_block(shot.crop(screen["name"]))
    assert len(name) == 2  # Tk wrapped it
    verdict = readback.compare_name("Prefilled Coin of the Moon", name, min_confidence=0.8)
    assert verdict.ok, (name, verdict.reason)
    field = reader.read_line(shot.crop(screen["field"]))  # an Entry with its sunken frame
    verdict = readback.compare_name("Prefilled Coin", [field], min_confidence=0.8)
    assert not verdict.ok and "3 characters too many" in verdict.reason, field
    dark = reader.read_line(shot.crop(screen["dark"]))
    assert dark.text == "Moon Coin", dark
