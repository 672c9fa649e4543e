"""The ``rekognition`` detector: Amazon Rekognition DetectModerationLabels on the S3 object.

Rekognition reads the object from S3 itself, so image bytes never pass through the worker.
Its client makes one attempt only (see ``pipeline.aws.REKOGNITION_CONFIG``): throttling must
reach the pipeline's retry policy instead of being hidden in botocore's retries.

With a limiter (``pipeline.ratelimit``), every call first takes a slot of the rate shared by all
workers, and a throttling answer is reported to it (which lowers that shared rate) before the
ThrottledError goes on to the task's retry with back-off.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pipeline.awserrors import translated_aws_errors
from pipeline.detectors.base import Detection, Detector, ImageRef, Label
from pipeline.errors import RateLimiterUnavailable, ThrottledError
from pipeline.monitoring import metrics

if TYPE_CHECKING:
    from pipeline.ratelimit import RateLimiter

log = logging.getLogger(__name__)

NAME = "rekognition"


class RekognitionDetector(Detector):
    """DetectModerationLabels with ``S3Object`` {Bucket, Name, Version when known}."""

    name = NAME

    def __init__(self, *, client: Any, min_confidence: float, limiter: RateLimiter | None = None) -> None:
        self._client = client
        self._min_confidence = min_confidence
        self._limiter = limiter

    def detect(self, image: ImageRef) -> Detection:
        waited_ms = self._wait_for_slot()
        started = time.perf_counter()
        response = self._call(image)
        labels = tuple(_label(item) for item in response.get("ModerationLabels", []))
        return Detection(
            detector=NAME,
            model_version=str(response.get("ModerationModelVersion", "")),
            labels=labels,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            waited_ms=waited_ms,
        )

    def _wait_for_slot(self) -> float | None:
        """Milliseconds waited for the shared limiter's slot; None without a limiter."""
        if self._limiter is None:
            return None
        waited = self._limiter.acquire().waited
        metrics.observe_ratelimit_wait(waited)  # every slot taken, including those of calls that then fail
        return waited * 1000

    def _call(self, image: ImageRef) -> dict[str, Any]:
        s3_object = {"Bucket": image.bucket, "Name": image.key}
        if image.version_id:
            s3_object["Version"] = image.version_id
        metrics.record_rekognition_call()
        try:
            with translated_aws_errors():
                return self._client.detect_moderation_labels(
                    Image={"S3Object": s3_object}, MinConfidence=self._min_confidence
                )
        except ThrottledError:
            metrics.record_rekognition_throttle()
            self._report_throttle()
            raise

    def _report_throttle(self) -> None:
        """Lower the shared rate; a limiter that cannot be told must not hide the throttle itself."""
        if self._limiter is None:
            return
        try:
            self._limiter.report_throttle()
        except RateLimiterUnavailable as exc:
            log.warning("could not report a Rekognition throttle to the shared limiter: %s", exc)


def _label(item: dict[str, Any]) -> Label:
    return Label(
        name=item["Name"],
        parent_name=item.get("ParentName", ""),
        confidence=float(item["Confidence"]),
        taxonomy_level=int(item.get("TaxonomyLevel") or 0),
        detector=NAME,
    )
