"""Synthetic coin photos and what a picker does to them, for the photo comparison's
tests and bench/photo.py: flat colours, gradients, smooth noise textures, shapes and three
real-looking scenes (Pillow only), and the picker's drawing (scale, centre crop, JPEG at
low quality, blur, rounded corners or a round mask, a selection border, a region a few
pixels off); and the look-alikes it must refuse (another flat colour, a tint, the mirror,
another texture)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter, ImageOps

KINDS = ("flat", "gradient", "texture", "shapes", "landscape", "portrait", "logo")


def _rgb(rnd: random.Random) -> tuple[int, int, int]:
    return (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))


def texture(rnd: random.Random, size: tuple[int, int], cells: int) -> Image.Image:
    """Smooth colour noise: a cells x cells grid of random colours, scaled up smoothly."""
    small = Image.new("RGB", (cells, cells))
    small.putdata([_rgb(rnd) for _ in range(cells * cells)])
    return small.resize(size, Image.BICUBIC)


def gradient(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    a, b = _rgb(rnd), _rgb(rnd)
    w, h = size
    strip = Image.new("RGB", (256, 1))
    strip.putdata([tuple(a[c] + (b[c] - a[c]) * i // 255 for c in range(3)) for i in range(256)])
    img = strip.resize((w, h), Image.BILINEAR)
    return img.rotate(rnd.choice((0, 45, 90, 135)), expand=False, fillcolor=a)


def shapes(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _rgb(rnd))
    draw = ImageDraw.Draw(img)
    for _ in range(rnd.randint(3, 8)):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randint(w // 8, w // 2), y0 + rnd.randint(h // 8, h // 2)
        shape = rnd.choice((draw.rectangle, draw.ellipse))
        shape((x0, y0, x1, y1), fill=_rgb(rnd))
    return img


def landscape(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    """Sky, sun, hills, a house off centre."""
    w, h = size
    sky = (rnd.randint(60, 140), rnd.randint(120, 200), rnd.randint(200, 255))
    img = gradient(random.Random(rnd.random()), size)
    img.paste(sky, (0, 0, w, h // 2))
    draw = ImageDraw.Draw(img)
    sx = rnd.randint(w // 8, w // 3)
    draw.ellipse((sx, h // 10, sx + w // 6, h // 10 + w // 6), fill=(255, 220, 60))
    green = (rnd.randint(20, 90), rnd.randint(120, 200), rnd.randint(20, 90))
    draw.polygon([(0, h), (0, h * 3 // 5), (w // 3, h // 2), (w, h * 2 // 3), (w, h)], fill=green)
    hx = rnd.randint(w // 2, w * 3 // 4)
    draw.rectangle((hx, h // 2, hx + w // 6, h * 3 // 4), fill=(150, 60, 40))
    draw.polygon(
        [(hx - 8, h // 2), (hx + w // 12, h * 2 // 5), (hx + w // 6 + 8, h // 2)], fill=(90, 30, 20)
    )
    return img.filter(ImageFilter.GaussianBlur(1))


def portrait(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    """A face turned to one side, on a textured background."""
    w, h = size
    img = texture(rnd, size, 5)
    draw = ImageDraw.Draw(img)
    skin = (rnd.randint(150, 240), rnd.randint(110, 190), rnd.randint(80, 150))
    cx = w // 2 + rnd.choice((-1, 1)) * w // 8
    draw.ellipse((cx - w // 4, h // 5, cx + w // 4, h * 4 // 5), fill=skin)
    eye = cx + w // 10
    draw.ellipse((eye - 8, h * 2 // 5, eye + 8, h * 2 // 5 + 12), fill=(30, 30, 30))
    draw.ellipse((eye - w // 5, h * 2 // 5, eye - w // 5 + 16, h * 2 // 5 + 12), fill=(30, 30, 30))
    draw.arc((cx - w // 8, h // 2, cx + w // 6, h * 2 // 3), 10, 150, fill=(120, 30, 30), width=4)
    return img.filter(ImageFilter.GaussianBlur(0.8))


def logo(rnd: random.Random, size: tuple[int, int]) -> Image.Image:
    """A coin logo: a disc, a letter-like bar and a stripe, off centre."""
    w, h = size
    img = Image.new("RGB", size, _rgb(rnd))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w // 6, h // 6, w * 5 // 6, h * 5 // 6), fill=_rgb(rnd))
    draw.rectangle((w * 2 // 5, h // 4, w * 3 // 5, h * 3 // 4), fill=_rgb(rnd))
    draw.rectangle((w * 2 // 5, h // 4, w * 3 // 4, h // 3), fill=_rgb(rnd))
    return img


def picture(kind: str, seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rnd = random.Random(f"{kind}-{seed}")
    if kind == "flat":
        return Image.new("RGB", size, _rgb(rnd))
    if kind == "gradient":
        return gradient(rnd, size)
    if kind == "texture":
        return texture(rnd, size, rnd.randint(3, 12))
    return {"shapes": shapes, "landscape": landscape, "portrait": portrait, "logo": logo}[kind](
        rnd, size
    )


# -- what a picker does to the coin's own photo -------------------------------------------
def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def as_drawn(
    photo: Image.Image,
    rnd: random.Random,
    *,
    side: int | None = None,
    quality: int | None = None,
    blur: float | None = None,
    radius: float | None = None,
    border: int | None = None,
    offset: int | None = None,
) -> Image.Image:
    """The photo as a picker draws its thumbnail, cut from a screenshot: each parameter
    drawn at random unless given (radius as a fraction of the side, 0.5 = a round mask)."""
    # Every draw is made, given or not, so fixing one parameter changes no other.
    drawn = (
        rnd.randint(56, 240),
        rnd.randint(15, 90),
        rnd.uniform(0.0, 1.2),
        rnd.choice((0.0, 0.08, 0.2, 0.5)),
        rnd.choice((0, 0, 1, 3)),
        rnd.random(),
        rnd.choice(((255, 255, 255), (30, 30, 30), (242, 242, 247), (128, 128, 128))),
        rnd.choice((-1, 1)),
        rnd.choice((-1, 1)),
    )
    side = side if side is not None else drawn[0]
    quality = quality if quality is not None else drawn[1]
    blur = blur if blur is not None else drawn[2]
    radius = radius if radius is not None else drawn[3]
    border = border if border is not None else drawn[4]
    offset = offset if offset is not None else round(drawn[5] * side / 30)
    bg, sx, sy = drawn[6], drawn[7], drawn[8]
    thumb = jpeg(ImageOps.fit(photo.convert("RGB"), (side, side), Image.LANCZOS), quality)
    if blur:
        thumb = thumb.filter(ImageFilter.GaussianBlur(blur))
    # The screen around the thumbnail; the region is cut `offset` px off in x and y.
    pad = max(offset, 1) + 2
    screen = Image.new("RGB", (side + 2 * pad, side + 2 * pad), bg)
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, side - 1, side - 1), radius * side, fill=255)
    screen.paste(thumb, (pad, pad), mask)
    if border:
        ImageDraw.Draw(screen).rounded_rectangle(
            (pad, pad, pad + side - 1, pad + side - 1),
            radius * side,
            outline=(10, 132, 255),
            width=border,
        )
    dx, dy = sx * offset, sy * offset
    return screen.crop((pad + dx, pad + dy, pad + dx + side, pad + dy + side))


# -- look-alikes that are another photo --------------------------------------------------
def shifted_flat(photo: Image.Image, rnd: random.Random, levels: int = 30) -> Image.Image:
    """The same flat colour with one channel `levels` away (two greens 30 apart)."""
    c = list(photo.getpixel((0, 0)))
    ch = rnd.randrange(3)
    c[ch] = c[ch] + levels if c[ch] + levels <= 255 else c[ch] - levels
    return Image.new("RGB", photo.size, tuple(c))


def tinted(photo: Image.Image, rnd: random.Random, strength: float = 0.3) -> Image.Image:
    """The same picture under another colour: blended `strength` with a saturated tint."""
    tint = rnd.choice(
        ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255))
    )
    return Image.blend(photo.convert("RGB"), Image.new("RGB", photo.size, tint), strength)


def mirrored(photo: Image.Image) -> Image.Image:
    return ImageOps.mirror(photo.convert("RGB"))


def visibly_different(a: Image.Image, b: Image.Image, levels: float = 20.0) -> bool:
    """Judged on the pixels, independently of the matcher: over the middle of the two
    thumbnails (the part a picker never covers), the mean colour differs by `levels`
    in a channel, or a pixel differs on average by `levels` in its worst channel."""
    import numpy as np

    def middle(img: Image.Image):
        arr = np.asarray(ImageOps.fit(img.convert("RGB"), (64, 64), Image.LANCZOS), dtype=float)
        return arr[13:51, 13:51]

    x, y = middle(a), middle(b)
    mean_shift = np.abs(x.mean(axis=(0, 1)) - y.mean(axis=(0, 1))).max()
    return bool(mean_shift >= 30 or np.abs(x - y).max(axis=2).mean() >= levels)


def lookalikes(photo: Image.Image, kind: str, seed: int, rnd: random.Random):
    """(what, picture) pairs that are another photo than `photo` and visibly so."""
    candidates = [("other", picture(kind, seed + 1000)), ("mirror", mirrored(photo))]
    for _ in range(6):  # a tint the colour is already close to changes little
        tint = tinted(photo, rnd)
        if visibly_different(photo, tint):
            candidates.append(("tint", tint))
            break
    if kind == "flat":
        candidates.append(("flat30", shifted_flat(photo, rnd, 30)))
    for what, decoy in candidates:
        if what == "flat30" or visibly_different(photo, decoy):
            yield what, decoy


# -- text as an app draws it --------------------------------------------------------------
FONTS = "/usr/share/fonts/truetype/dejavu/"  # fonts-dejavu-core (.ci/run installs it)


def font(name: str = "DejaVuSans-Bold.ttf", size: int = 16):
    from PIL import ImageFont

    return ImageFont.truetype(FONTS + name, size)


def text_box(
    text: str,
    *,
    face: str = "DejaVuSans-Bold.ttf",
    size: int = 16,
    fg: tuple[int, int, int] = (20, 20, 20),
    bg: tuple[int, int, int] = (255, 255, 255),
    width: int | None = None,
    scale: int = 1,
) -> Image.Image:
    """One line of text in a box (`width` wide, text at the left, as a label in an app;
    default: the text's width plus a margin); `scale` 2 draws it as on a Retina screen."""
    f = font(face, size * scale)
    right = int(f.getlength(text)) if text else 0
    w = (width or right // scale + 16) * scale
    h = round(size * 1.6) * scale
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((8 * scale, h // 2), text, font=f, fill=fg, anchor="lm")
    return img


def text_block(
    lines: list[str],
    *,
    face: str = "DejaVuSans-Bold.ttf",
    size: int = 16,
    fg: tuple[int, int, int] = (20, 20, 20),
    bg: tuple[int, int, int] = (255, 255, 255),
    width: int = 260,
    scale: int = 1,
) -> Image.Image:
    """Lines of text as an app wraps a long name, line height 1.35."""
    f = font(face, size * scale)
    step = round(size * 1.35) * scale
    img = Image.new("RGB", (width * scale, step * len(lines) + 12 * scale), bg)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((8 * scale, 6 * scale + i * step), line, font=f, fill=fg)
    return img


def review_screen(
    ticker: str = "MOON",
    name: str = "Prefilled Coin of the Moon",
    photo: Image.Image | None = None,
    *,
    scale: int = 1,
) -> tuple[Image.Image, dict[str, tuple[int, int, int, int]]]:
    """A 430x900 review screen like the Moonshot app's (photo, `$TICKER`, the name wrapped
    over two lines, cost rows, the Create button), and the boxes a flow reads, in pixels."""
    w, h = 430 * scale, 900 * scale
    img = Image.new("RGB", (w, h), (250, 250, 252))
    draw = ImageDraw.Draw(img)
    s = scale

    def text(xy, value, size, fill=(20, 20, 20), face="DejaVuSans-Bold.ttf"):
        draw.text((xy[0] * s, xy[1] * s), value, font=font(face, size * s), fill=fill)

    text((24, 40), "Review your coin", 22)
    photo = photo or picture("logo", 1)
    img.paste(ImageOps.fit(photo.convert("RGB"), (120 * s, 120 * s)), (155 * s, 100 * s))
    text((24, 250), "Ticker", 13, (120, 120, 128), "DejaVuSans.ttf")
    text((24, 272), "$" + ticker, 18)
    text((24, 320), "Name", 13, (120, 120, 128), "DejaVuSans.ttf")
    words, lines, line = name.split(), [], ""
    for word in words:  # wrap at 24 characters, as a 380 px label would
        if line and len(line) + 1 + len(word) > 24:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for i, part in enumerate(lines[:2]):
        text((24, 342 + 26 * i), part, 18)
    for i, (label, value) in enumerate(
        [("Network", "Solana"), ("Cost:", "0.02 SOL"), ("Supply", "1,000,000,000")]
    ):
        text((24, 440 + 34 * i), label, 15, (90, 90, 98), "DejaVuSans.ttf")
        text((250, 440 + 34 * i), value, 15)
    draw.rounded_rectangle((24 * s, 800 * s, 406 * s, 852 * s), 14 * s, fill=(124, 58, 237))
    text((150, 814), "Create coin", 18, (255, 255, 255))
    boxes = {
        "photo": (155, 100, 275, 220),
        "ticker": (20, 266, 410, 300),
        "name": (20, 336, 410, 396),
    }
    return img, {k: tuple(v * s for v in b) for k, b in boxes.items()}
