"""The baseline: only the work no spooler can avoid, for the same images: download,
decode (JPEG draft mode when a max side is set, as the service), re-encode and write
durably (fsync, rename). No state machine, no database, no library."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import requests
from PIL import Image


def process(session: requests.Session, url: str, out: Path, max_side: int, quality: int) -> int:
    data = session.get(url, timeout=30).content
    im = Image.open(io.BytesIO(data))
    if max_side and im.format == "JPEG" and max(im.size) > max_side:
        im.draft("RGB", (max_side, max_side))
    im = im.convert("RGB")
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    part = out.with_name(out.name + ".part")
    with open(part, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, out)
    return len(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--urls", type=Path, required=True, help="file with one URL per line")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-side", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    session = requests.Session()
    urls = a.urls.read_text().split()
    for i, url in enumerate(urls):
        process(session, url, a.out / f"{i}.jpg", a.max_side, a.quality)
    fd = os.open(a.out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


if __name__ == "__main__":
    main()
