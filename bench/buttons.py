"""Finding a button's reference image: the label-aware score (moonshot.app.matching.locate:
the whole image's score and its middle's, the lower of the two) side by side with the
whole image's score alone (the baseline, what locate did before), on buttons drawn like an
app's: the same button (found), and buttons of the same shape and colours with another
label at the same place (must not be found at the 0.9 a click needs), plain and in a hover
look, on a 560x620 window. Prints the lowest score of the same button, the highest of
another label, and the time per search, for both.

    python -m bench.buttons [--labels 40]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from bench.stats import pct  # noqa: E402
from moonshot.app import matching  # noqa: E402

WORDS = [
    "Mint",
    "New",
    "token",
    "Review",
    "Launch",
    "Next",
    "Copy",
    "address",
    "Create",
    "coin",
    "Confirm",
    "Buy",
    "Continue",
    "Done",
    "Close",
    "Cancel",
    "Back",
    "Pick",
    "image",
    "Choose",
    "photo",
    "Submit",
    "Deploy",
    "Go",
    "Start",
    "Save",
    "Send",
    "Open",
]
LOOKS = {"plain": ((255, 90, 30), "white"), "hover": ((16, 22, 40), (250, 200, 90))}


def window(label: str, look: str, at=(330, 540)) -> Image.Image:
    face, ink = LOOKS[look]
    font = ImageFont.truetype("DejaVuSans-Bold.ttf", 18)
    img = Image.new("RGB", (560, 620), (247, 247, 251))
    d = ImageDraw.Draw(img)
    d.text((34, 40), "Rocket Mint", fill=(255, 90, 30), font=font)
    x, y = at
    d.rectangle((x, y, x + 200, y + 52), fill=face)
    w = d.textlength(label, font=font)
    d.text((x + 100 - w / 2, y + 15), label, fill=ink, font=font)
    return img


def whole(needle: Image.Image, hay: Image.Image) -> float:
    """The baseline: TM_CCOEFF_NORMED over the whole image, the best place."""
    import cv2
    import numpy as np

    res = cv2.matchTemplate(np.asarray(hay), np.asarray(needle), cv2.TM_CCOEFF_NORMED)
    return float(np.nan_to_num(res).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=40, help="label pairs per look")
    args = ap.parse_args()
    rnd = random.Random(7)
    rows = {name: {"same": [], "other": [], "ms": []} for name in ("label-aware", "whole")}
    for look in LOOKS:
        for _ in range(args.labels):
            a, b = rnd.sample(WORDS, 2)
            ref = window(a, look).crop((324, 534, 536, 598))
            for hay, kind in ((window(a, look), "same"), (window(b, look), "other")):
                for name, fn in (
                    ("label-aware", lambda n, h: matching.locate(n, h).score),
                    ("whole", whole),
                ):
                    t0 = time.perf_counter()
                    score = fn(ref, hay)
                    rows[name]["ms"].append((time.perf_counter() - t0) * 1000)
                    rows[name][kind].append(score)
    print(
        f"{'score':12} {'same: lowest':>13} {'other: highest':>15} {'other >= 0.9':>13} {'ms p50':>7} {'p95':>6}"
    )
    for name, r in rows.items():
        over = sum(1 for s in r["other"] if s >= 0.9)
        print(
            f"{name:12} {min(r['same']):13.3f} {max(r['other']):15.3f}"
            f" {over:6} of {len(r['other']):<4} {statistics.median(r['ms']):7.1f}"
            f" {pct(r['ms'], 95):6.1f}"
        )


if __name__ == "__main__":
    main()
