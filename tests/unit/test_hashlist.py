"""The hash list: loading, matching the demo samples, undecodable images, add_entry."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFile

from pipeline.demo.make_samples import HASHLIST_PATH, KNOWN_BAD_LABEL, SAMPLES_DIR
from pipeline.detectors import hashlist
from pipeline.detectors.base import ImageRef, Label
from pipeline.detectors.hashlist import HashEntry, HashList, HashListDetector, add_entry, build_detection, hash_image
from pipeline.errors import ConfigurationError, UnsupportedImageError
from pipeline.settings import DEFAULT_HASHLIST_MAX_DISTANCE

UNRELATED = ["sunset.jpg", "tiles.png", "waves.jpg", "meadow.jpg"]
DEMO_LABEL = Label("Known Bad Content (demo)", "Explicit", 100.0, 2, "hashlist")
VALID_ENTRY = {"algorithm": "phash", "hash": "a811ac5795bb16b6", "label": {"Name": "X", "ParentName": "Explicit"}}


def sample(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


def write_list(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "list.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


@pytest.fixture(scope="module")
def demo_list() -> HashList:
    return HashList.load(HASHLIST_PATH)


# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not valid JSON"),
        ([], "expected a JSON object"),
        ({"entries": []}, "unsupported version None"),
        ({"version": 2, "entries": []}, "unsupported version 2"),
        ({"version": 1, "entries": {}}, "'entries' must be a list"),
        ({"version": 1, "entries": ["x"]}, "entry 0: expected an object"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "algorithm": "ahash"}]}, "unknown algorithm 'ahash'; known: pdq, phash"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "algorithm": "pdq"}]}, "'hash' must be 64 hex digits (256 bits)"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "hash": "zz11ac5795bb16b6"}]}, "16 hex digits (64 bits)"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "hash": "a811"}]}, "16 hex digits"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "hash": 12}]}, "16 hex digits"),
        ({"version": 1, "entries": [VALID_ENTRY, {**VALID_ENTRY, "label": {}}]}, "entry 1: 'label' must be"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "label": {"Name": "X", "ParentName": "Explicit", "TaxonomyLevel": 7}}]},
         "TaxonomyLevel"),
        # A parent outside the taxonomy would let PIPELINE_BLOCK_CATEGORIES pass its matches as clean
        ({"version": 1, "entries": [{**VALID_ENTRY, "label": {"Name": "X", "ParentName": "Explict"}}]},
         "label 'X' (ParentName 'Explict') is not placed in the moderation taxonomy"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "label": {"Name": "Known Bad"}}]}, "is not placed in the moderation taxonomy"),
        ({"version": 1, "entries": [{key: v for key, v in VALID_ENTRY.items() if key != "algorithm"}]}, "missing 'algorithm'"),
        ({"version": 1, "entries": [{**VALID_ENTRY, "note": 3}]}, "'note' must be a string"),
    ],
)
def test_load_rejects_invalid_file_naming_the_setting(tmp_path: Path, document: Any, expected: str) -> None:
    # Given
    path = write_list(tmp_path, document)
    # When
    with pytest.raises(ConfigurationError) as caught:
        HashList.load(path)
    # Then
    assert str(caught.value).startswith(f"PIPELINE_HASHLIST_PATH={str(path)!r}: ")
    assert expected in str(caught.value)


def test_load_missing_file_names_setting_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigurationError, match="PIPELINE_HASHLIST_PATH=.*nope.json.*cannot read") as caught:
        HashList.load(missing)
    assert caught.value.error_code == "ConfigurationError"


def test_load_normalises_entries_and_applies_label_defaults(tmp_path: Path) -> None:
    # Given: upper-case hex, a top-level taxonomy name without ParentName/TaxonomyLevel, no note
    entry = {**VALID_ENTRY, "hash": "A811AC5795BB16B6", "label": {"Name": "Violence"}}
    path = write_list(tmp_path, {"version": 1, "entries": [entry]})
    # When
    loaded = HashList.load(path)
    # Then
    assert loaded.entries == (HashEntry("phash", "a811ac5795bb16b6", "Violence", "", 1, ""),)
    assert loaded.source == str(path)


def test_demo_list_model_version_is_file_sha256_prefix(demo_list: HashList) -> None:
    digest = hashlib.sha256(HASHLIST_PATH.read_bytes()).hexdigest()
    assert demo_list.model_version == f"hashlist-v1:{digest[:12]}"
    assert [entry.to_label() for entry in demo_list.entries] == [DEMO_LABEL]
    assert demo_list.entries[0].hash == hash_image(sample("known-bad.jpg"))


# --- matching ------------------------------------------------------------------------------------


def test_copy_matches_known_bad_within_threshold(demo_list: HashList) -> None:
    matches = demo_list.match(sample("known-bad-copy.jpg"), DEFAULT_HASHLIST_MAX_DISTANCE)
    assert [(entry.name, entry.parent_name) for entry, _ in matches] == [("Known Bad Content (demo)", "Explicit")]
    assert matches[0][1] <= 6


def test_original_matches_at_distance_zero(demo_list: HashList) -> None:
    assert [distance for _, distance in demo_list.match(sample("known-bad.jpg"), 0)] == [0]


@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_sample_does_not_match(demo_list: HashList, name: str) -> None:
    assert demo_list.match(sample(name), DEFAULT_HASHLIST_MAX_DISTANCE) == []
    # Far from the threshold, not just over it.
    assert hashlist.hamming_distance(hash_image(sample(name)), demo_list.entries[0].hash) > 20


def test_hash_image_is_64_bit_hex_and_stable() -> None:
    first = hash_image(sample("sunset.jpg"))
    assert len(first) == 16 and int(first, 16) >= 0
    assert hash_image(sample("sunset.jpg"), "phash") == first


def test_hash_image_unknown_algorithm() -> None:
    with pytest.raises(ConfigurationError, match="unknown hash algorithm 'ahash'; known: pdq, phash"):
        hash_image(sample("sunset.jpg"), "ahash")


def test_pdq_entry_without_the_pdq_extra_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: pdq not registered, as without the `pdq` extra
    monkeypatch.setattr(hashlist, "ALGORITHMS", {"phash": hashlist.ALGORITHMS["phash"]})
    path = write_list(tmp_path, {"version": 1, "entries": [{**VALID_ENTRY, "algorithm": "pdq", "hash": "0" * 64}]})
    # When / Then
    with pytest.raises(ConfigurationError, match=r"unknown algorithm 'pdq' \(needs the `pdq` extra: pip install"):
        HashList.load(path)


def test_hamming_distance() -> None:
    assert hashlist.hamming_distance("00", "ff") == 8
    assert hashlist.hamming_distance("a811ac5795bb16b6", "a811ac5795bb16b7") == 1


def test_matches_are_sorted_closest_first(tmp_path: Path) -> None:
    # Given: the exact hash and a 3-bit-off variant, farther one first in the file
    exact = hash_image(sample("known-bad.jpg"))
    near = f"{int(exact, 16) ^ 0b111:016x}"
    entries = [{**VALID_ENTRY, "hash": near, "label": {"Name": "Near", "ParentName": "Violence"}}, {**VALID_ENTRY, "hash": exact}]
    loaded = HashList.load(write_list(tmp_path, {"version": 1, "entries": entries}))
    # When
    matches = loaded.match(sample("known-bad.jpg"), 3)
    # Then
    assert [(entry.name, distance) for entry, distance in matches] == [("X", 0), ("Near", 3)]


# --- undecodable images --------------------------------------------------------------------------


def truncated_jpeg() -> bytes:
    data = sample("known-bad.jpg")
    return data[: len(data) // 2]


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [truncated_jpeg(), b"Hello, I am a text file.\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, gif_bytes()],
    ids=["truncated-jpeg", "text", "broken-png", "gif"],
)
def test_undecodable_bytes_raise_unsupported_image(demo_list: HashList, data: bytes) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        demo_list.match(data, DEFAULT_HASHLIST_MAX_DISTANCE)
    assert caught.value.error_code == "InvalidImageFormatException"


def test_empty_list_still_rejects_undecodable_bytes() -> None:
    # An unreadable upload must never come back "clean", even with nothing to match.
    with pytest.raises(UnsupportedImageError):
        HashList((), digest="0" * 64).match(truncated_jpeg(), 10)


def test_pillow_does_not_load_truncated_images() -> None:
    # decode_image relies on Pillow's default; a module flipping it would let truncated JPEGs pass.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- detection shape -----------------------------------------------------------------------------


def test_build_detection_dedupes_labels_by_name() -> None:
    # Given: two entries with the same Name, one with another Name
    a = HashEntry("phash", "0" * 16, "Known", "Explicit", 2, "first")
    b = HashEntry("phash", "1" * 16, "Known", "Explicit", 2, "second")
    c = HashEntry("phash", "2" * 16, "Other", "", 1, "")
    # When
    detection = build_detection([(a, 1), (b, 4), (c, 5)], "hashlist-v1:abc")
    # Then
    assert [label.name for label in detection.labels] == ["Known", "Other"]
    assert all(label.confidence == 100.0 and label.detector == "hashlist" for label in detection.labels)
    assert [(m["distance"], m["note"]) for m in detection.extra["matches"]] == [(1, "first"), (4, "second"), (5, "")]
    assert detection.detector == "hashlist" and detection.model_version == "hashlist-v1:abc"


class InMemoryS3:
    """Just enough of an S3 client for HashListDetector: get_object from a dict."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        data = self.objects[Bucket, Key]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


def test_detector_labels_copy_read_through_client(demo_list: HashList) -> None:
    # Given
    s3 = InMemoryS3({("uploads", "a.jpg"): sample("known-bad-copy.jpg")})
    detector = HashListDetector(demo_list, s3_client=s3, max_distance=DEFAULT_HASHLIST_MAX_DISTANCE)
    # When
    detection = detector.detect(ImageRef("uploads", "a.jpg"))
    # Then
    assert detection.labels == (DEMO_LABEL,)
    assert detection.model_version == demo_list.model_version
    assert detection.extra["matches"][0]["name"] == "Known Bad Content (demo)"


def test_detector_rejects_negative_distance(demo_list: HashList) -> None:
    with pytest.raises(ConfigurationError, match="PIPELINE_HASHLIST_MAX_DISTANCE"):
        HashListDetector(demo_list, s3_client=InMemoryS3({}), max_distance=-1)


# --- registry ------------------------------------------------------------------------------------


def test_registered_algorithm_loads_and_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a stand-in 8-bit "algorithm", registered the way a PDQ module would register itself
    monkeypatch.setattr(hashlist, "ALGORITHMS", dict(hashlist.ALGORITHMS))
    hashlist.register_algorithm("mean8", lambda image: f"{image.convert('L').resize((1, 1)).getpixel((0, 0)):02x}", bits=8)
    digest = hash_image(sample("tiles.png"), "mean8")
    path = write_list(tmp_path, {"version": 1, "entries": [{**VALID_ENTRY, "algorithm": "mean8", "hash": digest}]})
    # When
    matches = HashList.load(path).match(sample("tiles.png"), 0)
    # Then
    assert [(entry.algorithm, distance) for entry, distance in matches] == [("mean8", 0)]


def test_register_algorithm_rejects_partial_hex_digits() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        hashlist.register_algorithm("odd", lambda image: "0", bits=6)


# --- add_entry -----------------------------------------------------------------------------------


def test_add_entry_creates_file_and_round_trips(tmp_path: Path) -> None:
    # Given
    path = tmp_path / "lists" / "new.json"
    # When
    entry = add_entry(path, sample("known-bad.jpg"), KNOWN_BAD_LABEL, "from a report")
    # Then
    loaded = HashList.load(path)
    assert loaded.entries == (entry,)
    assert entry == HashEntry("phash", hash_image(sample("known-bad.jpg")), *KNOWN_BAD_LABEL.values(), "from a report")
    assert [e.name for e, _ in loaded.match(sample("known-bad-copy.jpg"), 6)] == ["Known Bad Content (demo)"]
    assert json.loads(path.read_text())["version"] == 1
    assert list(tmp_path.joinpath("lists").iterdir()) == [path]  # no temporary file left behind


def test_add_entry_appends_keeps_others_and_skips_duplicates(tmp_path: Path) -> None:
    # Given: an existing list whose entry carries an extra key
    path = write_list(tmp_path, {"version": 1, "entries": [{**VALID_ENTRY, "source": "ticket-1"}]})
    # When
    first = add_entry(path, sample("waves.jpg"), {"Name": "Waves", "ParentName": "Violence"}, "")
    again = add_entry(path, sample("waves.jpg"), {"Name": "Waves", "ParentName": "Violence"}, "a different note")
    # Then
    document = json.loads(path.read_text())
    assert [e.get("source") for e in document["entries"]] == ["ticket-1", None]
    assert again == first and len(HashList.load(path).entries) == 2


def test_add_entry_refuses_to_rewrite_an_invalid_file(tmp_path: Path) -> None:
    path = write_list(tmp_path, "{broken")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        add_entry(path, sample("waves.jpg"), {"Name": "Waves", "ParentName": "Violence"}, "")
    assert path.read_text() == "{broken"


def test_add_entry_rejects_non_image_and_bad_label(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    with pytest.raises(UnsupportedImageError):
        add_entry(path, b"not an image", {"Name": "X", "ParentName": "Violence"}, "")
    with pytest.raises(ConfigurationError, match="non-empty 'Name'"):
        add_entry(path, sample("waves.jpg"), {"Name": " "}, "")
    assert not path.exists()
