"""Decoding an upload the way every detector must: what Rekognition accepts, and nothing else.

Rekognition takes JPEG and PNG only, at least 80 px and at most 10,000 px on each side, up to
15 MB (the size is checked while reading, in ``pipeline.objects``). The hash list and the local
model decode with :func:`decode_image`, so all detectors agree on what counts as an image and
fail the same images with Rekognition's own error codes.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, ImageOps

from pipeline.errors import UnsupportedImageError

#: The formats Rekognition accepts, so every detector agrees on what counts as an image.
ACCEPTED_FORMATS = ("JPEG", "PNG")
#: What Pillow raises for bytes it cannot decode (truncated files raise OSError from ``load()``).
DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, EOFError, struct.error)
MIN_SIDE = 80  #: Rekognition limits.html: minimum image height and width, pixels.
MAX_SIDE = 10_000  #: Rekognition limits.html: DetectModerationLabels maximum height and width, pixels.
#: Rekognition's code for an image outside the size limits (see the stand-in's notes in tests/standins).
SIZE_CODE = "InvalidParameterException"


def decode_image(image_bytes: bytes, *, shrink_to: int | None = None) -> Image.Image:
    """Fully decode a JPEG or PNG, upright per its EXIF orientation; else UnsupportedImageError.

    ``load()`` forces the decode: ``Image.open`` reads only the header, so a truncated file
    would otherwise pass (this relies on Pillow's default ``LOAD_TRUNCATED_IMAGES = False``).
    ``shrink_to``: the caller shrinks the image to this long side anyway, so a JPEG may be decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) as long as its long side stays at least this.
    That is several times faster for large photos; the limits are checked on the full size first,
    and every byte is still decoded, so a truncated file still fails.
    """
    try:
        image = Image.open(io.BytesIO(image_bytes), formats=ACCEPTED_FORMATS)
        check_dimensions(*image.size)
        if shrink_to and image.format == "JPEG":
            image.draft("RGB", fit_within(image.size, shrink_to))
        image.load()
        return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        # Pillow refuses over ~179 million pixels, so at least one side is over 13,000 px: Rekognition
        # answers InvalidParameterException for any side over 10,000 px, so every detector does too.
        raise UnsupportedImageError(f"image has too many pixels: {exc}", code="InvalidParameterException") from exc
    except Image.UnidentifiedImageError as exc:
        raise UnsupportedImageError("not a JPEG or PNG image") from exc
    except DECODE_ERRORS as exc:
        raise UnsupportedImageError(f"not a readable JPEG or PNG image: {exc}") from exc


def fit_within(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``size`` scaled, aspect kept, so that its longer side is ``long_side`` (each side at least 1)."""
    scale = long_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def check_dimensions(width: int, height: int) -> None:
    """UnsupportedImageError (Rekognition's InvalidParameterException) outside 80-10,000 px a side."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise UnsupportedImageError(
            f"image is {width}x{height} px; each side must be {MIN_SIDE}-{MAX_SIDE} px", code=SIZE_CODE
        )


__all__ = ["ACCEPTED_FORMATS", "DECODE_ERRORS", "MAX_SIDE", "MIN_SIDE", "check_dimensions", "decode_image", "fit_within"]
