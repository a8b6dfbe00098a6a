"""Finding a reference image in a screenshot, and comparing the picker's thumbnail
with the coin's photo: normalized cross-correlation (OpenCV's TM_CCOEFF_NORMED, the
measure behind pyscreeze's `confidence`) on Pillow images. No screen access here."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageOps

from moonshot.app.flow import Rect

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

        raise PortUnavailable(
            "image matching needs OpenCV: pip install opencv-python-headless"
        ) from None
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
    result = cv2.matchTemplate(_array(haystack), _array(needle), cv2.TM_CCOEFF_NORMED)
    result = np.nan_to_num(result, nan=0.0, posinf=0.0, neginf=0.0)
    _, best, _, (x, y) = cv2.minMaxLoc(result)
    return Match(Rect(ox + x, oy + y, needle.width, needle.height), float(best))


def fill(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo scaled and centre-cropped to fill `size`, as pickers draw thumbnails."""
    return ImageOps.fit(photo.convert("RGB"), size, Image.LANCZOS)


# compare_photo: both images are brought to SIDE x SIDE (the photo centre-cropped first,
# as the picker draws it); only the central INNER fraction is compared, so rounded corners,
# a round mask and a selection border stay out; the shown one may sit SHIFT px off.
SIDE = 64
INNER = 0.6
SHIFT = 4
GRID = 4  # cells per side of the inner square, for the local measures
BLUR = 1.5  # both blurred alike (sigma, px at SIDE): the picker's scaling blurs
FLAT = 4.0  # grey std (levels) below which a picture has no structure to compare
# Thresholds (measured margins in the module docstring and README, bench/photo.py).
MAX_COLOUR = 15.0  # largest per-channel difference of the mean colours, sRGB levels
MAX_CELL_COLOUR = 32.0  # the same, in the worst cell
MIN_STRUCTURE = 0.85  # grey normalized correlation at the best shift
MIN_CELL_STRUCTURE = 0.75  # SSIM's structure term, in the worst cell
_C2 = (0.03 * 255) ** 2  # SSIM's constant: near-flat cells count as alike


@dataclass(frozen=True)
class Measures:
    colour: float  # levels
    cell_colour: float  # levels
    structure: float  # -1..1
    cell_structure: float  # 0..1
    mirrored: float  # structure against the shown picture mirrored
    flat: tuple[bool, bool]  # (photo, shown) have no structure


@dataclass(frozen=True)
class PhotoVerdict:
    ok: bool
    score: float  # 1.0 = identical; ok exactly when score >= PHOTO_OK
    reason: str  # one line: which measure refused, by how much


PHOTO_OK = 0.8  # the score at the thresholds


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


def _cs(a, b) -> float:
    """SSIM's contrast-structure term (Wang et al. 2004) of two pixel lists (n, 3),
    summed over the channels: 1 only for the same structure at the same contrast; its
    constant makes two near-flat pictures count as alike (their colour then decides)."""
    da, db = a - a.mean(axis=0), b - b.mean(axis=0)
    cov = float((da * db).mean(axis=0).sum())
    var = float((da * da).mean(axis=0).sum() + (db * db).mean(axis=0).sum())
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
    structure = _cs(pa.reshape(-1, 3), pb.reshape(-1, 3))
    flipped = np.ascontiguousarray(window[:, ::-1])
    _, _, (mx, my), _ = cv2.minMaxLoc(cv2.matchTemplate(flipped, template, cv2.TM_SQDIFF))
    mirrored = _cs(pa.reshape(-1, 3), flipped[my : my + hi - lo, mx : mx + hi - lo].reshape(-1, 3))
    mean_diff = np.abs(pa.mean(axis=(0, 1)) - pb.mean(axis=(0, 1))).max()
    ca, cb = _cells(pa), _cells(pb)
    ma, mb = ca.mean(axis=2), cb.mean(axis=2)
    cell_diff = np.abs(ma - mb).max(axis=2).max()
    # SSIM's structure term per cell (Wang et al. 2004), summed over the channels:
    # covariance over the variances; its constant makes near-flat cells count as alike.
    da, db = ca - ma[:, :, None], cb - mb[:, :, None]
    cov = (da * db).mean(axis=2).sum(axis=2)
    var = (da * da).mean(axis=2).sum(axis=2) + (db * db).mean(axis=2).sum(axis=2)
    cells = (2 * cov + 3 * _C2) / (var + 3 * _C2)
    cell_structure = float(cells.mean())
    import numpy

    global LAST
    LAST = dict(
        cmin=float(cells.min()), c2=float(numpy.sort(cells.ravel())[1]), cmean=float(cells.mean())
    )
    return Measures(float(mean_diff), float(cell_diff), structure, cell_structure, mirrored, flat)


def _sub(value: float, threshold: float, best: float) -> float:
    """A measure mapped to a score: `best` -> 1.0, `threshold` -> PHOTO_OK, linear."""
    return 1.0 - (1.0 - PHOTO_OK) * (value - best) / (threshold - best)


def compare_photo(photo: Image.Image, shown: Image.Image) -> PhotoVerdict:
    """Is `shown` (the picker's thumbnail, cut from a screenshot) the coin's `photo`
    as a picker draws it: scaled, centre-cropped, recompressed, blurred, with rounded
    corners or a selection border? The mean colour, the colour of every region and the
    grey structure, overall and in every region, must all agree."""
    if shown.width < 8 or shown.height < 8:
        return PhotoVerdict(False, 0.0, f"the photo region is {shown.width}x{shown.height} px")
    m = measure(photo, shown)
    structure_why = (
        "one picture is flat and the other is not"
        if m.flat[0] != m.flat[1]
        else "the pictures differ in structure"
    )
    if m.mirrored >= MIN_STRUCTURE and m.structure < MIN_STRUCTURE:
        structure_why += f", yet match mirrored ({m.mirrored:.2f})"
    checks = [
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
