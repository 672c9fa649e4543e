"""PDQ, Meta's 256-bit perceptual hash (through pdqhash), as a hash-list algorithm (``pdq`` extra).

The hex form is Meta's own (ThreatExchange ``pdqhashtypes.cpp``: the sixteen 16-bit words from
the highest down, four hex digits each), so PDQ hashes shared between platforms can be put on
the list as they are. pdqhash returns the 256 bits highest first, so they read off as one binary
number. Importing this module without pdqhash raises ImportError; ``hashlist`` registers the
algorithm only when the import works.
"""

from __future__ import annotations

import numpy as np
import pdqhash
from PIL import Image

from pipeline.errors import UnsupportedImageError

PDQ_BITS = 256
#: ThreatExchange's quality threshold: a hash of quality under 50 (a flat, featureless image) says little.
MIN_QUALITY = 50
#: ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD: at most 31 of 256 bits apart is a match.
RECOMMENDED_MAX_DISTANCE = 31
LOW_QUALITY_CODE = "LowQualityHash"


def pdq_hash_and_quality(image: Image.Image) -> tuple[str, int]:
    """The PDQ hash (64 hex digits, Meta's form) of a decoded image and its quality (0-100)."""
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    bits, quality = pdqhash.compute(pixels)
    return bits_to_hex(bits), int(quality)


def pdq_hash(image: Image.Image) -> str:
    """The PDQ hash in hex; the signature ``hashlist.register_algorithm`` expects."""
    return pdq_hash_and_quality(image)[0]


def require_quality(image: Image.Image) -> int:
    """The image's PDQ quality; UnsupportedImageError (``LowQualityHash``) when it is under MIN_QUALITY.

    For images going onto a hash list: a flat picture's hash is near-arbitrary, so its entry
    would match little of what it should and some of what it should not.
    """
    quality = pdq_hash_and_quality(image)[1]
    if quality < MIN_QUALITY:
        raise UnsupportedImageError(
            f"PDQ quality {quality} is under {MIN_QUALITY}: too little detail for a reliable hash", code=LOW_QUALITY_CODE
        )
    return quality


def bits_to_hex(bits: np.ndarray) -> str:
    """256 bits, highest first, as 64 lower-case hex digits."""
    if bits.shape != (PDQ_BITS,):
        raise ValueError(f"expected {PDQ_BITS} bits, got shape {bits.shape}")
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):0{PDQ_BITS // 4}x}"


__all__ = ["MIN_QUALITY", "PDQ_BITS", "RECOMMENDED_MAX_DISTANCE", "bits_to_hex", "pdq_hash", "pdq_hash_and_quality", "require_quality"]
