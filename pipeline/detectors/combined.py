"""Several detectors on one image: the labels are the union, each tagged with its detector.

The decision rules see every label, so a hash-list hit blocks even when the model sees nothing
(``hashlist,local`` on the local stack). A failure of any one detector fails the detection
(RetryableError or PermanentError as raised, so the task retries or records ``failed`` exactly as
for a single detector), never a silent "clean"; a retry runs every detector again.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.detectors.base import Detection, Detector, ImageRef


class CombinedDetector(Detector):
    """Runs each detector in order and merges their results."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("CombinedDetector needs at least one detector")
        self._detectors = tuple(detectors)
        self.name = "+".join(d.name for d in self._detectors)

    def detect(self, image: ImageRef) -> Detection:
        results = [detector.detect(image) for detector in self._detectors]
        return Detection(
            detector=self.name,
            model_version="+".join(r.model_version for r in results),
            labels=tuple(label for r in results for label in r.labels),
            elapsed_ms=sum(r.elapsed_ms for r in results),
            extra={r.detector: r.extra for r in results if r.extra},
            waited_ms=_total_wait(results),
        )


def _total_wait(results: Sequence[Detection]) -> float | None:
    """The rate-limit waits added up; None when no detector had a limiter."""
    waits = [r.waited_ms for r in results if r.waited_ms is not None]
    return sum(waits) if waits else None
