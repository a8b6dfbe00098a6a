"""Deterministic test images made with Pillow: typical tweet images (about 1200x1200,
JPEG of 150-300 KB, a fifth PNG) and large phone photos (4000x3000 JPEG, 2-6 MB).
Smooth noise plus a gradient gives realistic sizes; results are cached on disk."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

SETS = ("typical", "large")
POOL = {"typical": 40, "large": 10}  # distinct images; coins cycle through them


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    content_type: str


def _texture(rng: random.Random, w: int, h: int, coarse: int) -> Image.Image:
    cw, ch = max(w // coarse, 2), max(h // coarse, 2)
    noise = Image.frombytes("RGB", (cw, ch), rng.randbytes(cw * ch * 3))
    noise = noise.resize((w, h), Image.Resampling.BICUBIC)
    grad = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    return Image.blend(noise, grad, 0.3)


def make(kind: str, index: int, seed: int = 7) -> Sample:
    """Image `index` of set `kind`; the same (kind, index, seed) gives the same bytes."""
    rng = random.Random(f"{kind}:{index}:{seed}")
    out = io.BytesIO()
    if kind == "typical" and index % 5 == 4:  # a fifth PNG: flatter, like screenshots
        im = ImageOps.posterize(_texture(rng, 1200, 1200, rng.randint(24, 60)), rng.randint(3, 4))
        if index % 10 == 9:
            im.putalpha(Image.linear_gradient("L").resize(im.size))
        im.save(out, "PNG")
        return Sample(f"t{index}.png", out.getvalue(), "image/png")
    if kind == "typical":
        im = _texture(rng, 1200, 1200, rng.randint(9, 18))
        im.save(out, "JPEG", quality=rng.randint(76, 88))
        return Sample(f"t{index}.jpg", out.getvalue(), "image/jpeg")
    if kind == "large":
        im = _texture(rng, 4000, 3000, rng.randint(4, 10))
        im.save(out, "JPEG", quality=rng.randint(85, 94))
        return Sample(f"l{index}.jpg", out.getvalue(), "image/jpeg")
    raise ValueError(f"unknown image set {kind!r}: expected one of {', '.join(SETS)}")


def pool(kind: str, cache: Path, seed: int = 7) -> list[Sample]:
    """The distinct images of a set, generated once and kept under `cache`."""
    folder = cache / f"{kind}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(POOL[kind]):
        hit = sorted(folder.glob(f"*{i}.*"))
        hit = [p for p in hit if p.stem[1:] == str(i)]
        if hit:
            p = hit[0]
            ctype = "image/png" if p.suffix == ".png" else "image/jpeg"
            out.append(Sample(p.name, p.read_bytes(), ctype))
            continue
        s = make(kind, i, seed)
        tmp = folder / (s.name + ".part")
        tmp.write_bytes(s.data)
        tmp.replace(folder / s.name)
        out.append(s)
    return out
