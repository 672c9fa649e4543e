"""pipeline.images: every detector refuses what Rekognition refuses, with Rekognition's codes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.errors import UnsupportedImageError
from pipeline.images import decode_image


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def test_an_image_over_pillows_pixel_limit_is_an_invalid_parameter_like_any_side_over_10000_px() -> None:
    # 14,000 x 13,000 = 182 million pixels: Pillow refuses it as a decompression bomb before decoding
    bomb = png(14_000, 13_000, mode="1")

    with pytest.raises(UnsupportedImageError) as caught:
        decode_image(bomb)

    assert caught.value.error_code == "InvalidParameterException"
    assert "too many pixels" in str(caught.value)


@pytest.mark.parametrize(("size", "code"), [((79, 200), "InvalidParameterException"),
                                            ((10_001, 90), "InvalidParameterException")])
def test_sides_outside_80_to_10000_px_are_invalid_parameters(size: tuple[int, int], code: str) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        decode_image(png(*size, mode="L"))
    assert caught.value.error_code == code


def test_an_image_within_the_limits_decodes() -> None:
    assert decode_image(png(120, 90)).size == (120, 90)
