"""CombinedDetector: several detectors on one image; any failure fails the whole detection."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipeline.detectors.base import Detection, Detector, ImageRef, Label
from pipeline.detectors.combined import CombinedDetector
from pipeline.errors import ObjectGoneError, PipelineError, ThrottledError, UnsupportedImageError

IMAGE = ImageRef("uploads", "content/images/cat.jpg", "v1", "e1")
REK_NUDITY = Label("Exposed Female Nipple", "Explicit Nudity", 97.0, 3, "rekognition")
REK_ALCOHOL = Label("Drinking", "Alcohol Use", 88.0, 3, "rekognition")
HASH_MATCH = Label("Known Bad Content (demo)", "Explicit", 100.0, 2, "hashlist")


@dataclass
class FixedDetector(Detector):
    """Returns fixed labels or raises ``error``; records every image it was asked about."""

    name: str
    labels: tuple[Label, ...] = ()
    error: Exception | None = None
    extra: dict = field(default_factory=dict)
    elapsed_ms: float = 10.0
    seen: list[ImageRef] = field(default_factory=list)

    def detect(self, image: ImageRef) -> Detection:
        self.seen.append(image)
        if self.error is not None:
            raise self.error
        return Detection(self.name, f"{self.name}-v1", self.labels, self.elapsed_ms, dict(self.extra))


def test_labels_are_the_union_each_with_its_detector() -> None:
    # Given
    rekognition = FixedDetector("rekognition", (REK_NUDITY, REK_ALCOHOL), elapsed_ms=120.0)
    hashlist = FixedDetector("hashlist", (HASH_MATCH,), extra={"matches": [{"distance": 3}]}, elapsed_ms=8.5)
    combined = CombinedDetector([rekognition, hashlist])
    # When
    detection = combined.detect(IMAGE)
    # Then
    assert detection == Detection(
        detector="rekognition+hashlist",
        model_version="rekognition-v1+hashlist-v1",
        labels=(REK_NUDITY, REK_ALCOHOL, HASH_MATCH),
        elapsed_ms=128.5,
        extra={"hashlist": {"matches": [{"distance": 3}]}},
    )
    assert [label.detector for label in detection.labels] == ["rekognition", "rekognition", "hashlist"]
    assert rekognition.seen == hashlist.seen == [IMAGE]


def test_name_joins_the_detector_names() -> None:
    assert CombinedDetector([FixedDetector("a"), FixedDetector("b"), FixedDetector("c")]).name == "a+b+c"


def test_no_labels_from_anyone_is_no_labels() -> None:
    detection = CombinedDetector([FixedDetector("rekognition"), FixedDetector("hashlist")]).detect(IMAGE)
    assert detection.labels == ()
    assert detection.extra == {}


def test_same_label_from_two_detectors_is_kept_twice() -> None:
    # Each detector's evidence is reported; the report shows who found what.
    hash_twin = Label(REK_NUDITY.name, REK_NUDITY.parent_name, 100.0, 3, "hashlist")
    detection = CombinedDetector([FixedDetector("rekognition", (REK_NUDITY,)), FixedDetector("hashlist", (hash_twin,))]).detect(IMAGE)
    assert detection.labels == (REK_NUDITY, hash_twin)


@pytest.mark.parametrize("failing", [0, 1], ids=["first-fails", "second-fails"])
@pytest.mark.parametrize(
    "error",
    [
        ThrottledError("Rate exceeded", code="ThrottlingException"),
        UnsupportedImageError("not an image", code="InvalidImageFormatException"),
        ObjectGoneError("gone", code="NoSuchVersion"),
    ],
    ids=["retryable", "unsupported", "gone"],
)
def test_one_detector_raising_fails_the_whole_detection(failing: int, error: PipelineError) -> None:
    # Given: one detector finds a label, the other fails
    detectors = [FixedDetector("hashlist", (HASH_MATCH,)), FixedDetector("rekognition", (REK_NUDITY,))]
    detectors[failing].error = error
    combined = CombinedDetector(detectors)
    # When / Then: the error propagates as raised; there is no partial or clean result
    with pytest.raises(type(error)) as caught:
        combined.detect(IMAGE)
    assert caught.value is error
    assert caught.value.error_code == error.error_code


def test_an_unexpected_exception_propagates_too() -> None:
    combined = CombinedDetector([FixedDetector("hashlist"), FixedDetector("local", error=RuntimeError("model crashed"))])
    with pytest.raises(RuntimeError, match="model crashed"):
        combined.detect(IMAGE)


def test_needs_at_least_one_detector() -> None:
    with pytest.raises(ValueError, match="at least one detector"):
        CombinedDetector([])
