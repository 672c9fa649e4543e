"""The ``local`` detector: NudeNet's bundled model on the worker's own CPU, no AWS and no network.

Needs the ``model`` extra. The image is read from S3 (the announced version, like the hash
list), decoded with the same checks as every detector, run through the model
(:mod:`pipeline.detectors.local_model`) and its classes mapped onto Rekognition's taxonomy
(:mod:`pipeline.detectors.local_labels`), so decision rules, tags and reports see one vocabulary.

The model is loaded once per process, on its first image: the Runtime keeps one detector per
process, and a prefork child builds its own session after the fork instead of inheriting one.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.detectors.base import Detection, Detector, ImageRef
from pipeline.detectors.local_labels import DETECTOR_NAME, labels_for
from pipeline.detectors.local_model import INPUT_SIZE, LocalModel
from pipeline.images import decode_image
from pipeline.objects import read_image_bytes

#: At most this many raw boxes are kept in the detection's ``extra`` (for whoever reads the task result).
MAX_BOXES_KEPT = 20


class LocalModelDetector(Detector):
    """Labels an S3 image with the local model; labels under ``min_confidence`` are not reported."""

    name = DETECTOR_NAME

    def __init__(self, model: LocalModel, *, s3_client: Any, min_confidence: float) -> None:
        self.model = model
        self._s3 = s3_client
        self._min_confidence = min_confidence

    def detect(self, image: ImageRef) -> Detection:
        """Read the announced version and run the model; raises RetryableError or PermanentError."""
        started = time.perf_counter()
        return self.detect_bytes(read_image_bytes(self._s3, image), started=started)

    def detect_bytes(self, image_bytes: bytes, *, started: float | None = None) -> Detection:
        """The model on bytes already read; UnsupportedImageError for what is not an accepted image."""
        started = time.perf_counter() if started is None else started
        boxes = self.model.predict(decode_image(image_bytes, shrink_to=INPUT_SIZE))
        return Detection(
            detector=self.name,
            model_version=self.model.version,
            labels=labels_for(boxes, self._min_confidence),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            extra={"boxes": [box.to_dict() for box in boxes[:MAX_BOXES_KEPT]]},
        )


__all__ = ["LocalModelDetector"]
