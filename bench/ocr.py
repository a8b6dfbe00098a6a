"""What reading the screen back costs, on one core (onnxruntime with one thread): the
boxes of a 430x900 review screen (ticker: read_line; name: read_line, and read_block for a
name wrapped over two lines) next to the baseline, RapidOCR's full pipeline (detection,
angle classifier, recognition) over the whole window. Warm figures over --runs reads;
first-call figures (model load + first read) in fresh processes. Then the confusable table:
tickers drawn in two fonts and what the engine reads. `--confusion N` also counts which
characters it read as which over N random tickers and names (readback.CONFUSABLE)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import env, pct  # noqa: E402
from moonshot.app import ocr, readback  # noqa: E402
from tests.app import pictures  # noqa: E402 - needs the repository on the path

CONFUSABLE_TICKERS = ("$M00N", "$I1L1", "$O0O0", "$B8S5", "$SOL10", "$5OS")
FONTS = (("DejaVu Sans Bold", "DejaVuSans-Bold.ttf"), ("DejaVu Sans Mono", "DejaVuSansMono.ttf"))


def boxes():
    """The review screen's boxes: (label, image, how to read it)."""
    screen, b = pictures.review_screen("MOON", "Prefilled Coin of the Moon")
    one_line, b1 = pictures.review_screen("MOON", "Moon Coin")
    return screen, [
        ("ticker box, read_line", screen.crop(b["ticker"]), "line"),
        ("name box (1 line), read_line", one_line.crop(b1["name"]), "line"),
        ("name box (2 lines), read_block", screen.crop(b["name"]), "block"),
    ]


def baseline_engine():
    """RapidOCR as it comes (its config.yaml), on one thread: what reading the whole
    window would cost."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


FIRST_CALL = """
import sys, time
sys.path.insert(0, {root!r})
from bench.ocr import boxes, baseline_engine
from moonshot.app import ocr
screen, items = boxes()
which = {which!r}
t = time.perf_counter()
if which == "window":
    import numpy
    engine = baseline_engine()
    engine(numpy.ascontiguousarray(numpy.asarray(screen)[:, :, ::-1]))
else:
    label, img, how = items[int(which)]
    r = ocr.default_reader()
    r.read_line(img) if how == "line" else r.read_block(img)
print(time.perf_counter() - t)
"""


def first_call(which: str, runs: int) -> list[float]:
    root = str(Path(__file__).resolve().parent.parent)
    code = FIRST_CALL.format(root=root, which=which)
    out = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=True
        )
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def confusable_table(reader) -> list[dict]:
    rows = []
    for font_name, face in FONTS:
        for ticker in CONFUSABLE_TICKERS:
            got = reader.read_line(pictures.text_box(ticker, face=face, size=16))
            verdict = readback.compare_ticker(ticker[1:], got, min_confidence=0.8, dollar=True)
            rows.append(
                {
                    "font": f"{font_name} 16 px",
                    "drawn": ticker,
                    "read": got.text,
                    "confidence": round(got.confidence, 3),
                    "accepted": verdict.ok,
                }
            )
    return rows


def confusion(reader, n: int, seed: int = 3) -> dict:
    """Which characters the engine read as which, over n random tickers and n names."""
    rnd = random.Random(seed)
    faces = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
    themes = (((20, 20, 20), (255, 255, 255)), ((240, 240, 240), (26, 26, 30)))
    subs: collections.Counter = collections.Counter()
    lengths = 0
    for alphabet in (  # tickers, names
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    ):
        for _ in range(n):
            text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(3, 10)))
            fg, bg = rnd.choice(themes)
            img = pictures.text_box(
                text,
                face=rnd.choice(faces),
                size=rnd.choice((11, 12, 13, 14, 16, 18, 20)),
                fg=fg,
                bg=bg,
                scale=rnd.choice((1, 1, 2)),
            )
            got = reader.read_line(img).text.replace(" ", "")
            if len(got) != len(text):
                lengths += 1
                continue
            subs.update(f"{a}->{b}" for a, b in zip(text, got, strict=True) if a != b)
    return {"reads": 2 * n, "length_changed": lengths, "substitutions": dict(subs.most_common())}


def summary(values: list[float]) -> dict:
    return {"median_ms": statistics.median(values) * 1e3, "p95_ms": pct(values, 95) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=30, help="warm reads per box")
    ap.add_argument("--first", type=int, default=3, help="fresh processes per first call")
    ap.add_argument("--confusion", type=int, default=0, metavar="N")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    screen, items = boxes()
    reader = ocr.default_reader()
    out: dict = {"cpu_count": os.cpu_count(), "threads": 1, "boxes": {}}
    screen_warm = [0.0] * args.runs
    for i, (label, img, how) in enumerate(items):
        read = (
            (lambda im=img: reader.read_line(im))
            if how == "line"
            else (lambda im=img: reader.read_block(im))
        )
        result = read()
        warm = timed(read, args.runs)
        if label.startswith(("ticker", "name box (2")):  # the boxes of one review screen
            screen_warm = [a + b for a, b in zip(screen_warm, warm, strict=True)]
        out["boxes"][label] = {
            "read": [r.text for r in result] if isinstance(result, list) else result.text,
            "warm": summary(warm),
            "first_call": summary(first_call(str(i), args.first)),
        }
    out["review_screen_warm"] = summary(screen_warm)

    engine = baseline_engine()
    import numpy

    bgr = numpy.ascontiguousarray(numpy.asarray(screen)[:, :, ::-1])
    result, _ = engine(bgr)
    out["baseline_full_window"] = {
        "read": [line[1] for line in result or []][:6],
        "warm": summary(timed(lambda: engine(bgr), max(3, args.runs // 5))),
        "first_call": summary(first_call("window", args.first)),
    }
    out["confusables"] = confusable_table(reader)
    if args.confusion:
        out["confusion"] = confusion(reader, args.confusion)
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return

    print(f"one onnxruntime thread; {os.cpu_count()} cores on this machine")
    print(f"{'read':34s} {'warm p50':>9s} {'p95':>7s} {'first p50':>10s} {'p95':>7s}  text")
    rows = [*out["boxes"].items(), ("baseline: full window, 430x900", out["baseline_full_window"])]
    for label, m in rows:
        w, f = m["warm"], m["first_call"]
        print(
            f"{label:34s} {w['median_ms']:7.0f}ms {w['p95_ms']:5.0f}ms"
            f" {f['median_ms']:8.0f}ms {f['p95_ms']:5.0f}ms  {m['read']}"
        )
    s = out["review_screen_warm"]
    print(
        f"review screen (ticker + 2-line name), warm: {s['median_ms']:.0f} ms p50,"
        f" {s['p95_ms']:.0f} ms p95 (target < 300 ms)"
    )
    print(f"\n{'font':22s} {'drawn':8s} {'read':8s} {'conf':>5s}  accepted (dollar=True, 0.80)")
    for row in out["confusables"]:
        print(
            f"{row['font']:22s} {row['drawn']:8s} {row['read']:8s} {row['confidence']:5.2f}"
            f"  {row['accepted']}"
        )
    if args.confusion:
        c = out["confusion"]
        print(f"\nconfusion over {c['reads']} reads ({c['length_changed']} changed length):")
        print("  " + ", ".join(f"{k} {v}" for k, v in c["substitutions"].items()))


if __name__ == "__main__":
    main()
