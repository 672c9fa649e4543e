"""Regenerate the demo images and the demo hash list; prints the pHash distance matrix.

    python -m pipeline.demo.make_samples

Every image is drawn here from a fixed seed (no people, nothing explicit, no third-party
content), so the files are licence-clean and can be rebuilt. ``known-bad.jpg`` is a synthetic
stand-in for known-bad content; ``known-bad-copy.jpg`` is it resized to 92% and re-encoded, the
near copy the ``hashlist`` detector must still catch. The script refuses to write a set whose
unrelated images are not more than ``MIN_UNRELATED_DISTANCE`` bits apart.
"""

from __future__ import annotations

import io
import itertools
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.detectors.hashlist import add_entry, hamming_distance, hash_image

DEMO_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = DEMO_DIR / "samples"
HASHLIST_PATH = DEMO_DIR / "known-bad-hashes.json"
SEED = 20240601  #: One seed for every image, so a rebuild gives the same pictures.
SIZE = (640, 480)
JPEG_QUALITY = 85
COPY_SCALE = 0.92  #: known-bad-copy.jpg is known-bad.jpg at 92% size ...
COPY_QUALITY = 65  #: ... re-encoded at a different quality.
MAX_FILE_BYTES = 60 * 1024  #: Keep the repository small.
MIN_UNRELATED_DISTANCE = 21  #: Bits (of 64) that unrelated samples must at least differ by.
MAX_COPY_DISTANCE = 6  #: Bits the copy may differ from the original by.
KNOWN_BAD_LABEL = {"Name": "Known Bad Content (demo)", "ParentName": "Explicit", "TaxonomyLevel": 2}
KNOWN_BAD_NOTE = "Synthetic demo entry: hash of pipeline/demo/samples/known-bad.jpg"

Painter = Callable[[np.random.Generator], Image.Image]


def _vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A SIZE image fading from ``top`` to ``bottom``."""
    ramp = np.linspace(0.0, 1.0, SIZE[1])[:, None, None]
    colours = np.array(top) * (1 - ramp) + np.array(bottom) * ramp
    return Image.fromarray(np.repeat(colours, SIZE[0], axis=1).astype(np.uint8))


def _ridge(rng: np.random.Generator, base: float, amplitude: float) -> list[tuple[float, float]]:
    """A jagged skyline polygon closed along the bottom edge."""
    xs = np.linspace(0, SIZE[0], 17)
    ys = base + rng.uniform(-amplitude, amplitude, xs.size)
    return [(0, SIZE[1]), *zip(xs.tolist(), ys.tolist()), (SIZE[0], SIZE[1])]


def paint_sunset(rng: np.random.Generator) -> Image.Image:
    """Bright sky low on the left, a sun, and dark mountain ridges on the right."""
    image = _vertical_gradient((40, 20, 90), (255, 150, 60))
    draw = ImageDraw.Draw(image)
    draw.ellipse((120, 250, 260, 390), fill=(255, 235, 150))
    draw.polygon(_ridge(rng, 330, 60), fill=(70, 30, 60))
    draw.polygon([(300, 480), (640, 120), (640, 480)], fill=(30, 10, 30))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def paint_tiles(rng: np.random.Generator) -> Image.Image:
    """A grid of flat-coloured squares and triangles (PNG-friendly: few colours)."""
    palette = [(230, 57, 70), (241, 250, 238), (168, 218, 220), (69, 123, 157), (29, 53, 87)]
    image = Image.new("RGB", SIZE, palette[1])
    draw = ImageDraw.Draw(image)
    cell = 80
    for row, col in itertools.product(range(SIZE[1] // cell), range(SIZE[0] // cell)):
        x, y = col * cell, row * cell
        colour = palette[int(rng.integers(len(palette)))]
        if (row + col) % 2:
            draw.rectangle((x, y, x + cell, y + cell), fill=colour)
        else:
            draw.polygon([(x, y + cell), (x + cell, y), (x + cell, y + cell)], fill=colour)
    return image


def paint_waves(rng: np.random.Generator) -> Image.Image:
    """Diagonal blue-green swells: a smooth field of sine waves."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(float)
    phase = rng.uniform(0, 2 * math.pi)
    field = np.sin((xs + 1.6 * ys) / 55 + phase) + 0.5 * np.sin(xs / 140 - ys / 90)
    shade = (field - field.min()) / (field.max() - field.min())
    rgb = np.stack([20 + 40 * shade, 70 + 120 * shade, 120 + 125 * shade], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def paint_meadow(rng: np.random.Generator) -> Image.Image:
    """Rolling green hills under a pale sky, bright on the right, dotted with flowers."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(float)
    horizon = 200 + 60 * np.sin(xs / 110) - 0.15 * xs
    ground = ys > horizon
    rgb = np.where(ground[..., None], [60, 150, 50], [190, 220, 250]).astype(float)
    rgb[ground] *= (0.55 + 0.45 * xs / SIZE[0])[ground][:, None]
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y in zip(rng.uniform(0, SIZE[0], 120), rng.uniform(300, SIZE[1], 120)):
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(250, 230, 80))
    return image.filter(ImageFilter.GaussianBlur(1.0))


def paint_known_bad(rng: np.random.Generator) -> Image.Image:
    """Concentric red and black rings with a warning band: distinctive and obviously synthetic."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(float)
    cx, cy = 460 + rng.uniform(-10, 10), 150 + rng.uniform(-10, 10)
    rings = np.sin(np.hypot(xs - cx, ys - cy) / 18) > 0
    rgb = np.where(rings[..., None], [200, 30, 40], [20, 20, 20]).astype(np.uint8)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 380, SIZE[0], 460), fill=(255, 220, 0))
    draw.text((SIZE[0] // 2, 420), "DEMO KNOWN-BAD", fill=(0, 0, 0), font=_font(44), anchor="mm")
    return image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` (the bitmap fallback if FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


PAINTERS: dict[str, Painter] = {
    "sunset.jpg": paint_sunset,
    "tiles.png": paint_tiles,
    "waves.jpg": paint_waves,
    "meadow.jpg": paint_meadow,
    "known-bad.jpg": paint_known_bad,
}


def encode(image: Image.Image, filename: str, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG or PNG bytes by extension, without metadata; PNGs are palette-quantised to stay small."""
    buffer = io.BytesIO()
    if filename.endswith(".png"):
        image.quantize(colors=32, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def make_copy(original_jpeg: bytes) -> bytes:
    """The near copy: resized to COPY_SCALE and re-encoded at COPY_QUALITY."""
    image = Image.open(io.BytesIO(original_jpeg))
    size = (round(image.width * COPY_SCALE), round(image.height * COPY_SCALE))
    return encode(image.resize(size, Image.Resampling.LANCZOS), "copy.jpg", quality=COPY_QUALITY)


def render_all(seed: int = SEED) -> dict[str, bytes]:
    """Every sample file's name -> bytes, the copy included."""
    files = {name: encode(paint(np.random.default_rng([seed, index])), name)
             for index, (name, paint) in enumerate(PAINTERS.items())}
    files["known-bad-copy.jpg"] = make_copy(files["known-bad.jpg"])
    return files


def distance_matrix(files: dict[str, bytes]) -> dict[tuple[str, str], int]:
    """pHash Hamming distance for every pair of files."""
    hashes = {name: hash_image(data) for name, data in files.items()}
    return {(a, b): hamming_distance(hashes[a], hashes[b]) for a in hashes for b in hashes}


def format_matrix(files: dict[str, bytes], distances: dict[tuple[str, str], int]) -> str:
    """The matrix as a fixed-width table."""
    names = list(files)
    width = max(map(len, names)) + 1
    columns = [Path(name).stem for name in names]
    lines = [" " * width + " ".join(f"{column:>{len(column)}}" for column in columns)]
    lines += [
        f"{a:<{width}}" + " ".join(f"{distances[a, b]:>{len(column)}}" for b, column in zip(names, columns))
        for a in names
    ]
    return "\n".join(lines)


def problems(files: dict[str, bytes], distances: dict[tuple[str, str], int]) -> list[str]:
    """Why this sample set would make a bad demo (empty if it is fine)."""
    found = [f"{name} is {len(data)} bytes" for name, data in files.items() if len(data) > MAX_FILE_BYTES]
    related = {frozenset({"known-bad.jpg", "known-bad-copy.jpg"})}
    for (a, b), distance in distances.items():
        if a >= b:
            continue
        if frozenset({a, b}) in related and distance > MAX_COPY_DISTANCE:
            found.append(f"copy {a}/{b} is {distance} bits apart (max {MAX_COPY_DISTANCE})")
        elif frozenset({a, b}) not in related and distance < MIN_UNRELATED_DISTANCE:
            found.append(f"{a}/{b} are only {distance} bits apart (min {MIN_UNRELATED_DISTANCE})")
    return found


def write_samples(files: dict[str, bytes]) -> None:
    """Write the images and a fresh hash list holding known-bad.jpg."""
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (SAMPLES_DIR / name).write_bytes(data)
    HASHLIST_PATH.unlink(missing_ok=True)
    add_entry(HASHLIST_PATH, files["known-bad.jpg"], KNOWN_BAD_LABEL, KNOWN_BAD_NOTE)


def main() -> int:
    """Render, check, print the matrix, and write; exit status 1 if the set fails its checks."""
    files = render_all()
    distances = distance_matrix(files)
    print(format_matrix(files, distances))
    for name, data in files.items():
        print(f"{name}: {len(data)} bytes")
    found = problems(files, distances)
    if found:
        print("not written:", *found, sep="\n  ", file=sys.stderr)
        return 1
    write_samples(files)
    print(f"wrote {len(files)} images to {SAMPLES_DIR} and {HASHLIST_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
