"""Finding the coin's photo on the frames of a recording (moonshot.app.propose.PhotoSearch),
side by side with the search as it was before (the baseline: colours compared in the coarse
pass, the photo resized again for every frame). Frames are 560x620 windows like an app's:
a background, lines of text, another picture (a decoy), and the coin's photo drawn as a
picker or a preview draws it (tests/app/pictures.as_drawn, 48-200 px) on most of them.
Prints, for both, the time per frame and what was found: the photo where it was drawn (a
box inside the drawn one, 3 px aside, covering 70% of it), missed, or found elsewhere.

    python -m bench.photo_search [--frames 24]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw  # noqa: E402

from moonshot.app.propose import PhotoSearch  # noqa: E402
from tests.app import pictures  # noqa: E402 - needs the repository on the path

SIZE = (560, 620)
THRESHOLD = 0.8


def frame(photo: Image.Image, rnd: random.Random, with_photo: bool):
    bg = rnd.choice(((255, 255, 255), (24, 24, 28), (242, 242, 247)))
    img = Image.new("RGB", SIZE, bg)
    draw = ImageDraw.Draw(img)
    ink = (20, 20, 20) if sum(bg) > 300 else (235, 235, 235)
    for i in range(rnd.randint(3, 7)):
        draw.text((24, 20 + 70 * i), f"Line {i} of the form", fill=ink, font=pictures.font())
    decoy = pictures.picture(rnd.choice(pictures.KINDS), rnd.randint(100, 999), (120, 120))
    img.paste(decoy, (rnd.randint(300, 420), rnd.randint(380, 480)))
    if not with_photo:
        return img, None
    drawn = pictures.as_drawn(photo, rnd, side=rnd.randint(48, 200))
    x, y = rnd.randint(10, 260), rnd.randint(10, 400)
    img.paste(drawn, (x, y))
    return img, (x, y, x + drawn.width, y + drawn.height)


def verdict(found, where) -> str:
    if found is None:
        return "missed" if where else "none"
    if where is None:
        return "false"
    (x0, y0, x1, y1), (a0, b0, a1, b1) = found[0], where
    inside = x0 >= a0 - 3 and y0 >= b0 - 3 and x1 <= a1 + 3 and y1 <= b1 + 3
    covers = (x1 - x0) * (y1 - y0) >= 0.7 * (a1 - a0) * (b1 - b0)
    return "found" if inside and covers else "elsewhere"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    kinds = [k for k in pictures.KINDS if k != "flat"]  # a flat photo has no place to find
    frames = []
    for i in range(args.frames):
        photo = pictures.picture(kinds[i % len(kinds)], i, (320, 240))
        frames.append((photo, *frame(photo, rnd, with_photo=i % 6 != 5)))
    shared: dict[int, PhotoSearch] = {}
    searches = (
        ("baseline", lambda p: PhotoSearch(p, THRESHOLD, gray=False, keep=False)),
        ("new", lambda p: shared.setdefault(id(p), PhotoSearch(p, THRESHOLD))),
    )
    times: dict[str, list[float]] = {label: [] for label, _ in searches}
    tallies: dict[str, dict[str, int]] = {label: {} for label, _ in searches}
    for photo, img, where in frames:
        for label, make in searches:  # side by side, frame by frame: the same load
            search = make(photo)
            t = time.perf_counter()
            for _ in range(2):  # a recording searches each photo on many frames
                found = search(img)
            times[label].append((time.perf_counter() - t) / 2)
            v = verdict(found, where)
            tallies[label][v] = tallies[label].get(v, 0) + 1
    rows = {label: (statistics.mean(times[label]), tallies[label]) for label, _ in searches}
    print(f"{args.frames} frames of {SIZE[0]}x{SIZE[1]}, photo threshold {THRESHOLD}")
    for label, (mean, tally) in rows.items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
        print(f"{label:>9}: {1000 * mean:7.1f} ms per frame; {counts}")


if __name__ == "__main__":
    main()
