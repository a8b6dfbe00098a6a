"""Finding a reference image in a screenshot (normalized cross-correlation, OpenCV's
TM_CCOEFF_NORMED, the measure behind pyscreeze's `confidence`), and telling whether the
picker's thumbnail is the coin's photo (`compare_photo`). No screen access here.

compare_photo brings the photo (centre-cropped to the thumbnail's shape, as a picker draws
it) and the thumbnail to 64x64, blurs both alike, aligns them within 4 px by the least
squared difference and compares the middle 60% (rounded corners, a round mask and a
selection border stay outside) by five measures, each with its threshold:

| measure | refuses | threshold | worst accepted | closest refused by it alone |
|---|---|---|---|---|
| structure: SSIM's contrast-structure term over R, G, B | another picture, the mirror | >= 0.85 | 0.913 | 0.222 |
| the same, mean over 4x4 regions | a mirror alike overall | >= 0.75 | 0.821 | 0.692 |
| mean colour: largest per-channel difference, sRGB levels | another flat colour, a tint | <= 15 | 8.0 | 19.0 |
| the same, in the worst region | a picture alike but for one region | <= 32 | 23.7 | 36.6 |
| mirror gap: structure against the shown picture mirrored, less structure | the mirror, even alike overall | <= 0.04 | 0.000 | 0.097 (smallest of the mirrors) |

Measured by `python -m bench.photo --pictures 120 --draws 4` over 5,673 pairs of the
synthetic photos in tests/app/pictures.py (flat colours, gradients, textures, shapes, a
landscape, a portrait, a logo): the coin's photo drawn by a random picker (56-240 px,
JPEG quality 15-90, blur up to 1.2 px, corners rounded up to a round mask, a 1-3 px
selection ring, the region up to 8 px off) 3,360 times, all accepted (score >= 0.852);
2,313 look-alikes drawn the same way (another picture of its kind, a tint that moves a
channel by 30 levels or more, the mirror, a flat colour 30 levels away in one channel),
all refused (score <= 0.772). The mirror gap was added when the property test found a
texture whose mirror passes the other four (texture 706: structure 0.91, accepted at
0.815); it matches the photo mirrored at 0.998, and the photo itself never matches its
mirror better than itself (a symmetric photo: gap 0, accepted, as it should be). Colour is compared in sRGB levels, not Lab: a 30-level step
of one channel is as little as 0.9 dE in Lab (red on cyan). Pictures that differ by less
than the thresholds in the thumbnail's middle (two flat colours 10 levels apart) are the
same picture to this comparison."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageOps

from moonshot.app.flow import PHOTO_OK, Rect

MIN_DETAIL = 4.0  # std-dev of grey levels below which a reference cannot be told apart


@dataclass(frozen=True)
class Match:
    rect: Rect  # in screenshot pixels
    score: float  # 1.0 = identical


def _cv():
    try:
        import cv2
        import numpy
    except ImportError:  # pragma: no cover - a dependency of moonshot
        from moonshot.errors import PortUnavailable

        raise PortUnavailable("image matching needs OpenCV: pip install opencv-python") from None
    return cv2, numpy


def _array(img: Image.Image):
    _, np = _cv()
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def detail(img: Image.Image) -> float:
    """Grey-level spread: a flat patch matches anywhere, so it is refused as a reference."""
    _, np = _cv()
    return float(np.asarray(img.convert("L"), dtype=np.float32).std())


def locate(
    needle: Image.Image, haystack: Image.Image, scale: float = 1.0, region: Rect | None = None
) -> Match | None:
    """The best place for `needle` (resized by `scale`) in `haystack`, or None when it
    does not fit; callers compare `score` with their confidence."""
    cv2, np = _cv()
    if abs(scale - 1.0) > 0.01:
        w, h = max(1, round(needle.width * scale)), max(1, round(needle.height * scale))
        needle = needle.resize((w, h), Image.LANCZOS)
    ox = oy = 0
    if region is not None:
        ox, oy = max(0, int(region.x)), max(0, int(region.y))
        haystack = haystack.crop((ox, oy, int(region.x + region.w), int(region.y + region.h)))
    if needle.width > haystack.width or needle.height > haystack.height:
        return None
    hay, ndl = _array(haystack), _array(needle)
    result = cv2.matchTemplate(hay, ndl, cv2.TM_CCOEFF_NORMED)
    result = np.nan_to_num(result, nan=0.0, posinf=0.0, neginf=0.0)
    inner = _inner_box(needle)
    if inner is None:
        _, best, _, (x, y) = cv2.minMaxLoc(result)
        return Match(Rect(ox + x, oy + y, needle.width, needle.height), float(best))
    # A button's outline and face weigh more than its label: another label on a button
    # of the same shape scores 0.94 ("Mint" found on "New token"). The middle of the
    # image (the label) must match too, at the same place: the score is the lower of
    # the two, over the best few places of the whole.
    ix0, iy0, ix1, iy1 = inner
    core = ndl[iy0:iy1, ix0:ix1]
    best, at = -1.0, (0, 0)
    work = result.copy()
    for _ in range(PEAKS):
        _, whole, _, (x, y) = cv2.minMaxLoc(work)
        if whole <= best:
            break
        patch = hay[y + iy0 : y + iy1, x + ix0 : x + ix1]
        mid = cv2.matchTemplate(patch, core, cv2.TM_CCOEFF_NORMED)
        score = min(whole, float(np.nan_to_num(mid, nan=0.0).max()))
        if score > best:
            best, at = score, (x, y)
        hw, hh = max(1, needle.width // 4), max(1, needle.height // 4)
        work[max(0, y - hh) : y + hh + 1, max(0, x - hw) : x + hw + 1] = -1.0
    x, y = at
    return Match(Rect(ox + x, oy + y, needle.width, needle.height), float(best))


PEAKS = 5  # places of the whole image's best scores whose middle is compared
LABEL_INSET = 0.2  # the share of each side left out of a reference image's middle


def _inner_box(needle: Image.Image) -> tuple[int, int, int, int] | None:
    """The middle of a reference image, when it has detail of its own (a label); None for
    a small image or a plain middle (then the whole image's score stands alone)."""
    w, h = needle.size
    x0, y0 = round(w * LABEL_INSET), round(h * LABEL_INSET)
    x1, y1 = w - x0, h - y0
    if x1 - x0 < 8 or y1 - y0 < 6:
        return None
    if detail(needle.crop((x0, y0, x1, y1))) < MIN_DETAIL:
        return None
    return (x0, y0, x1, y1)


def fill(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo scaled and centre-cropped to fill `size`, as pickers draw thumbnails."""
    return ImageOps.fit(photo.convert("RGB"), size, Image.LANCZOS)


# compare_photo (the module docstring has the measured margins; bench/photo.py):
SIDE = 64  # both pictures are compared at SIDE x SIDE
INNER = 0.6  # the middle fraction compared
SHIFT = 4  # px at SIDE the thumbnail may sit off the region
GRID = 4  # regions per side of the middle, for the local measures
BLUR = 1.5  # both blurred alike (sigma, px at SIDE): the picker's scaling blurs
FLAT = 4.0  # a channel's std (levels) below which a picture is flat (for the reason)
MIN_STRUCTURE = 0.85  # SSIM's contrast-structure term over the middle
MIN_CELL_STRUCTURE = 0.75  # the same, mean over the regions
MAX_COLOUR = 15.0  # largest per-channel difference of the mean colours, sRGB levels
MAX_CELL_COLOUR = 32.0  # the same, in the worst region
MAX_MIRROR_GAP = 0.04  # how much better the shown picture may match the photo's mirror
_C2 = (0.03 * 255) ** 2  # SSIM's constant: near-flat pictures count as alike


@dataclass(frozen=True)
class Measures:
    colour: float  # levels
    cell_colour: float  # levels
    structure: float  # -1..1
    cell_structure: float  # -1..1
    mirrored: float  # structure against the shown picture mirrored
    flat: tuple[bool, bool]  # (photo, shown) have no structure

    @property
    def mirror_gap(self) -> float:
        """How much better the shown picture matches the photo mirrored than as it is:
        about 0 for the photo itself (exactly 0 for a symmetric one), clearly above 0
        for its mirror even where the mirror is alike overall (a texture)."""
        return self.mirrored - self.structure


@dataclass(frozen=True)
class PhotoVerdict:
    ok: bool
    score: float  # 1.0 = identical; ok exactly when score >= PHOTO_OK
    reason: str  # one line: which measure refused, by how much


def to_srgb(img: Image.Image) -> Image.Image:
    """RGB in sRGB: a screenshot that carries the display's colour profile (macOS
    screencapture embeds it) is converted with littleCMS; anything else is taken as sRGB."""
    icc = img.info.get("icc_profile")
    img = img.convert("RGB")
    if not icc:
        return img
    import io

    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img


def _prepare(img: Image.Image):
    cv2, np = _cv()
    a = np.asarray(img.resize((SIDE, SIDE), Image.BOX), dtype=np.float32)
    return cv2.GaussianBlur(a, (0, 0), BLUR)


def _inner() -> tuple[int, int]:
    lo = round(SIDE * (1 - INNER) / 2)
    return lo, SIDE - lo


def _cs(a, b):
    """SSIM's contrast-structure term (Wang et al. 2004) of pixel lists (..., n, 3),
    summed over the channels: 1 only for the same structure at the same contrast; its
    constant makes two near-flat pictures count as alike (their colour then decides)."""
    da, db = a - a.mean(axis=-2, keepdims=True), b - b.mean(axis=-2, keepdims=True)
    cov = (da * db).mean(axis=-2).sum(axis=-1)
    var = (da * da).mean(axis=-2).sum(axis=-1) + (db * db).mean(axis=-2).sum(axis=-1)
    return (2 * cov + 3 * _C2) / (var + 3 * _C2)


def _cells(a):
    """GRID x GRID cells: shape (GRID, GRID, k*k, channels)."""
    n = a.shape[0] // GRID * GRID
    k = n // GRID
    return (
        a[:n, :n]
        .reshape(GRID, k, GRID, k, -1)
        .transpose(0, 2, 1, 3, 4)
        .reshape(GRID, GRID, k * k, -1)
    )


def measure(photo: Image.Image, shown: Image.Image) -> Measures:
    """The measures compare_photo decides on (bench/photo.py prints their margins)."""
    cv2, np = _cv()
    shown = to_srgb(shown)
    a = _prepare(fill(photo, shown.size))
    b = _prepare(shown)
    lo, hi = _inner()
    template = a[lo:hi, lo:hi]
    window = b[lo - SHIFT : hi + SHIFT, lo - SHIFT : hi + SHIFT]
    # Aligned by the least squared difference, not by correlation: a smooth gradient
    # correlates equally at every shift, but its colours tell where it sits.
    _, _, (dx, dy), _ = cv2.minMaxLoc(cv2.matchTemplate(window, template, cv2.TM_SQDIFF))
    pa, pb = template, window[dy : dy + hi - lo, dx : dx + hi - lo]
    flat = (
        float(pa.reshape(-1, 3).std(axis=0).max()) < FLAT,
        float(pb.reshape(-1, 3).std(axis=0).max()) < FLAT,
    )
    structure = float(_cs(pa.reshape(-1, 3), pb.reshape(-1, 3)))
    flipped = np.ascontiguousarray(window[:, ::-1])
    _, _, (mx, my), _ = cv2.minMaxLoc(cv2.matchTemplate(flipped, template, cv2.TM_SQDIFF))
    pm = flipped[my : my + hi - lo, mx : mx + hi - lo]
    mirrored = float(_cs(pa.reshape(-1, 3), pm.reshape(-1, 3)))
    colour = np.abs(pa.mean(axis=(0, 1)) - pb.mean(axis=(0, 1))).max()
    ca, cb = _cells(pa), _cells(pb)
    cell_colour = np.abs(ca.mean(axis=2) - cb.mean(axis=2)).max()
    cell_structure = float(_cs(ca, cb).mean())
    return Measures(float(colour), float(cell_colour), structure, cell_structure, mirrored, flat)


def _sub(value: float, threshold: float, best: float) -> float:
    """A measure mapped to a score: `best` -> 1.0, `threshold` -> PHOTO_OK, linear."""
    return 1.0 - (1.0 - PHOTO_OK) * (value - best) / (threshold - best)


def compare_photo(photo: Image.Image, shown: Image.Image) -> PhotoVerdict:
    """Is `shown` (the picker's thumbnail, cut from a screenshot) the coin's `photo`
    as a picker draws it: scaled, centre-cropped, recompressed, blurred, with rounded
    corners or a selection border? The structure, overall and by region, the mean colour
    and the colour of every region must all agree (the module docstring's table)."""
    if shown.width < 8 or shown.height < 8:
        return PhotoVerdict(False, 0.0, f"the photo region is {shown.width}x{shown.height} px")
    m = measure(photo, shown)
    structure_why = (
        "one picture is flat and the other is not"
        if m.flat[0] != m.flat[1]
        else "the pictures differ in structure"
    )
    checks = [
        (
            _sub(m.mirror_gap, MAX_MIRROR_GAP, 0.0),
            f"the picture is the photo's mirror (structure {m.structure:.2f},"
            f" mirrored {m.mirrored:.2f})",
        ),
        (
            _sub(m.structure, MIN_STRUCTURE, 1.0),
            f"{structure_why} (structure {m.structure:.2f} < {MIN_STRUCTURE})",
        ),
        (
            _sub(m.cell_structure, MIN_CELL_STRUCTURE, 1.0),
            f"the regions differ in structure ({m.cell_structure:.2f} < {MIN_CELL_STRUCTURE})",
        ),
        (
            _sub(m.colour, MAX_COLOUR, 0.0),
            f"the colours differ by {m.colour:.0f} levels (at most {MAX_COLOUR:g})",
        ),
        (
            _sub(m.cell_colour, MAX_CELL_COLOUR, 0.0),
            f"a region's colour differs by {m.cell_colour:.0f} levels"
            f" (at most {MAX_CELL_COLOUR:g})",
        ),
    ]
    score, why = min(checks, key=lambda c: c[0])
    score = max(0.0, score)
    if score < PHOTO_OK:
        return PhotoVerdict(False, score, why)
    return PhotoVerdict(
        True,
        score,
        f"same picture (structure {m.structure:.2f}, regions {m.cell_structure:.2f},"
        f" colour {m.colour:.0f}, regions {m.cell_colour:.0f} levels)",
    )


def photo_score(photo: Image.Image, shown: Image.Image) -> float:
    """How well the thumbnail on screen matches the coin's photo: 1.0 = identical, at
    least PHOTO_OK for the same picture as a picker draws it (compare_photo)."""
    return compare_photo(photo, shown).score
