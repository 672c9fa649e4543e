"""PDQ as a hash-list algorithm: Meta's hex form, near copies and unrelated images, per-algorithm distances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.demo.make_samples import KNOWN_BAD_LABEL, SAMPLES_DIR
from pipeline.detectors.factory import build_hashlist
from pipeline.detectors.hashlist import HashList, add_entry, hamming_distance, hash_image
from pipeline.detectors.pdq import PDQ_BITS, bits_to_hex, pdq_hash_and_quality, require_quality
from pipeline.errors import ConfigurationError, UnsupportedImageError
from pipeline.images import decode_image
from pipeline.settings import Settings

UNRELATED = ["sunset.jpg", "tiles.png", "waves.jpg", "meadow.jpg"]


def sample(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


def test_bits_read_off_highest_first_as_meta_prints_them() -> None:
    # Meta's hex form prints word 15 first, most significant bit first; pdqhash's vector starts at bit 255.
    bits = np.zeros(PDQ_BITS, dtype=np.uint8)
    bits[0] = 1  # bit 255
    bits[-1] = 1  # bit 0
    bits[4:8] = 1  # bits 251-248: the second hex digit
    assert bits_to_hex(bits) == "8f" + "0" * 61 + "1"


def test_bits_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 256 bits"):
        bits_to_hex(np.zeros(64, dtype=np.uint8))


def test_a_resized_reencoded_copy_stays_close_and_unrelated_images_far() -> None:
    original = hash_image(sample("known-bad.jpg"), "pdq")
    assert len(original) == 64
    assert hamming_distance(original, hash_image(sample("known-bad-copy.jpg"), "pdq")) <= 16
    for name in UNRELATED:
        assert hamming_distance(original, hash_image(sample(name), "pdq")) > 80, name


def test_hash_and_quality_are_deterministic() -> None:
    image = decode_image(sample("meadow.jpg"))
    first, quality = pdq_hash_and_quality(image)
    assert pdq_hash_and_quality(image) == (first, quality)
    assert 50 <= quality <= 100


def test_pdq_entries_match_with_their_own_threshold(tmp_path: Path) -> None:
    # Given: a list with a pdq entry for known-bad.jpg
    path = tmp_path / "list.json"
    entry = add_entry(path, sample("known-bad.jpg"), KNOWN_BAD_LABEL, "pdq entry", algorithm="pdq")
    loaded = HashList.load(path)
    # When / Then: 10 (pHash's default) is per algorithm, so the pdq entry uses its own threshold
    assert entry.algorithm == "pdq" and json.loads(path.read_text())["entries"][0]["algorithm"] == "pdq"
    assert [e.name for e, _ in loaded.match(sample("known-bad-copy.jpg"), {"pdq": 31})] == ["Known Bad Content (demo)"]
    assert loaded.match(sample("known-bad-copy.jpg"), {"pdq": 0}) == []
    assert loaded.match(sample("sunset.jpg"), {"pdq": 31}) == []


def test_factory_gives_each_algorithm_its_setting(tmp_path: Path) -> None:
    # Given: one phash and one pdq entry for the same image
    path = tmp_path / "list.json"
    add_entry(path, sample("known-bad.jpg"), KNOWN_BAD_LABEL, algorithm="phash")
    add_entry(path, sample("known-bad.jpg"), KNOWN_BAD_LABEL, algorithm="pdq")
    settings = Settings(detectors=("hashlist",), hashlist_path=str(path), hashlist_max_distance=6, hashlist_pdq_max_distance=24)
    # When
    detector = build_hashlist(settings, s3_client=None)
    # Then
    assert detector.max_distance == {"phash": 6, "pdq": 24}
    matches = detector.hash_list.match(sample("known-bad-copy.jpg"), detector.max_distance)
    assert sorted(e.algorithm for e, _ in matches) == ["pdq", "phash"]


def test_a_pdq_threshold_that_matches_everything_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    add_entry(path, sample("known-bad.jpg"), KNOWN_BAD_LABEL, algorithm="pdq")
    settings = Settings(detectors=("hashlist",), hashlist_path=str(path), hashlist_pdq_max_distance=256)
    with pytest.raises(ConfigurationError, match="PIPELINE_HASHLIST_PDQ_MAX_DISTANCE=256 would match every image"):
        build_hashlist(settings, s3_client=None)


def test_a_flat_image_is_too_poor_for_a_pdq_entry() -> None:
    from PIL import Image

    assert require_quality(decode_image(sample("meadow.jpg"))) >= 50
    with pytest.raises(UnsupportedImageError, match="PDQ quality 0 is under 50") as caught:
        require_quality(Image.new("RGB", (200, 200), (120, 120, 120)))
    assert caught.value.error_code == "LowQualityHash"
