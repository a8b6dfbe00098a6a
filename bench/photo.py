"""The photo comparison's margins: synthetic coin photos of every kind (tests/app/pictures.py),
each drawn by a random picker several times (must be accepted), against look-alikes drawn
the same way (another picture of the kind, a tint, the mirror, a flat colour 30 levels
away: must be refused). Prints, per measure, the worst accepted value next to its threshold
and the best refused score per look-alike, and the time per comparison."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import pct  # noqa: E402
from moonshot.app import matching  # noqa: E402
from tests.app import pictures  # noqa: E402 - needs the repository on the path

MEASURES = (  # name, threshold, higher is better
    ("structure", matching.MIN_STRUCTURE, True),
    ("cell_structure", matching.MIN_CELL_STRUCTURE, True),
    ("colour", matching.MAX_COLOUR, False),
    ("cell_colour", matching.MAX_CELL_COLOUR, False),
    ("mirror_gap", matching.MAX_MIRROR_GAP, False),
)


def pairs(n: int, draws: int):
    """(kind, seed, what, photo, shown, same): the same pictures as the property tests."""
    for kind in pictures.KINDS:
        for seed in range(n):
            photo = pictures.picture(kind, seed)
            for r in range(draws):
                shown = pictures.as_drawn(photo, random.Random(f"{kind}-{seed}-{r}"))
                yield kind, seed, "same", photo, shown, True
            rnd = random.Random(f"{kind}-{seed}-decoy")
            for what, decoy in pictures.lookalikes(photo, kind, seed, rnd):
                yield kind, seed, what, photo, pictures.as_drawn(decoy, rnd), False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pictures", type=int, default=40, help="pictures per kind")
    ap.add_argument("--draws", type=int, default=3, help="picker drawings per picture")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rows, times = [], []
    for kind, seed, what, photo, shown, same in pairs(args.pictures, args.draws):
        t = time.perf_counter()
        verdict = matching.compare_photo(photo, shown)
        times.append(time.perf_counter() - t)
        rows.append((kind, seed, what, same, verdict, matching.measure(photo, shown)))

    accepted = [r for r in rows if r[3]]
    refused = [r for r in rows if not r[3]]
    out: dict = {
        "pairs": len(rows),
        "ms_per_compare": {"p50": statistics.median(times) * 1e3, "p95": pct(times, 95) * 1e3},
        "same_refused": [f"{k} {s}: {v.reason}" for k, s, _, _, v, _ in accepted if not v.ok],
        "lookalike_accepted": [f"{k} {s} {w}: {v.reason}" for k, s, w, _, v, _ in refused if v.ok],
        "measures": {},
        "scores": {"same_worst": min(r[4].score for r in accepted)},
    }

    def fails(m, name, threshold, higher):
        v = getattr(m, name)
        return v < threshold if higher else v > threshold

    for name, threshold, higher in MEASURES:
        values = [getattr(r[5], name) for r in accepted]
        worst = min(values) if higher else max(values)
        # The look-alikes only this measure refuses: how close the closest came.
        alone = [
            getattr(r[5], name)
            for r in refused
            if fails(r[5], name, threshold, higher)
            and not any(fails(r[5], *m) for m in MEASURES if m[0] != name)
        ]
        closest = (max(alone) if higher else min(alone)) if alone else None
        out["measures"][name] = {
            "threshold": threshold,
            "same_worst": worst,
            "refused_only_by_it": len(alone),
            "closest_refused": closest,
        }
    mirrors = [r[5].mirror_gap for r in refused if r[2] == "mirror"]
    out["scores"]["mirror_gap_smallest"] = min(mirrors) if mirrors else None
    for what in sorted({r[2] for r in refused}):
        best = max((r for r in refused if r[2] == what), key=lambda r: r[4].score)
        out["scores"][f"{what}_best"] = best[4].score
        out["scores"][f"{what}_best_reason"] = f"{best[0]} {best[1]}: {best[4].reason}"
    if args.json:
        print(json.dumps(out, indent=1))
        return
    n_same, n_look = len(accepted), len(refused)
    print(
        f"{len(rows)} comparisons ({n_same} same picture as drawn, {n_look} look-alikes);"
        f" {out['ms_per_compare']['p50']:.1f} ms each (p95 {out['ms_per_compare']['p95']:.1f})"
    )
    print(
        f"{'measure':16s} {'threshold':>9s} {'worst accepted':>15s}"
        f" {'closest refused by it alone':>28s}"
    )
    for name, m in out["measures"].items():
        closest = "-" if m["closest_refused"] is None else f"{m['closest_refused']:.3f}"
        print(
            f"{name:16s} {m['threshold']:9.2f} {m['same_worst']:15.3f}"
            f" {closest:>20s} ({m['refused_only_by_it']} pairs)"
        )
    print(
        f"score: accepted at >= {matching.PHOTO_OK}; worst same {out['scores']['same_worst']:.3f}"
    )
    for what in sorted({r[2] for r in refused}):
        print(
            f"  best {what:8s} {out['scores'][f'{what}_best']:.3f}"
            f"  ({out['scores'][f'{what}_best_reason']})"
        )
    if mirrors:
        print(
            f"mirror_gap: the photo itself at most {out['measures']['mirror_gap']['same_worst']:.3f},"
            f" its mirrors at least {min(mirrors):.3f} (refused above {matching.MAX_MIRROR_GAP})"
        )
    print(f"same picture refused: {len(out['same_refused'])}/{n_same}")
    for line in out["same_refused"][:10]:
        print("   ", line)
    print(f"look-alike accepted: {len(out['lookalike_accepted'])}/{n_look}")
    for line in out["lookalike_accepted"][:10]:
        print("   ", line)


if __name__ == "__main__":
    main()
