"""The ``rekognition`` detector: Amazon Rekognition DetectModerationLabels on the S3 object.

Rekognition reads the object from S3 itself, so image bytes never pass through the worker.
Its client makes one attempt only (see ``pipeline.aws.REKOGNITION_CONFIG``): throttling must
reach the pipeline's retry policy instead of being hidden in botocore's retries.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.awserrors import translated_aws_errors
from pipeline.detectors.base import Detection, Detector, ImageRef, Label

NAME = "rekognition"


class RekognitionDetector(Detector):
    """DetectModerationLabels with ``S3Object`` {Bucket, Name, Version when known}."""

    name = NAME

    def __init__(self, *, client: Any, min_confidence: float) -> None:
        self._client = client
        self._min_confidence = min_confidence

    def detect(self, image: ImageRef) -> Detection:
        started = time.perf_counter()
        response = self._call(image)
        labels = tuple(_label(item) for item in response.get("ModerationLabels", []))
        return Detection(
            detector=NAME,
            model_version=str(response.get("ModerationModelVersion", "")),
            labels=labels,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def _call(self, image: ImageRef) -> dict[str, Any]:
        s3_object = {"Bucket": image.bucket, "Name": image.key}
        if image.version_id:
            s3_object["Version"] = image.version_id
        with translated_aws_errors():
            return self._client.detect_moderation_labels(
                Image={"S3Object": s3_object}, MinConfidence=self._min_confidence
            )


def _label(item: dict[str, Any]) -> Label:
    return Label(
        name=item["Name"],
        parent_name=item.get("ParentName", ""),
        confidence=float(item["Confidence"]),
        taxonomy_level=int(item.get("TaxonomyLevel") or 0),
        detector=NAME,
    )
