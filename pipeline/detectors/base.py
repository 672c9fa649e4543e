"""What every detector takes and returns, so the steps after detection never know which one ran.

The result shape is Rekognition's ``ModerationLabels``: each label has ``Name``, ``ParentName``,
``Confidence`` (0-100) and ``TaxonomyLevel``; the pipeline adds ``Detector``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageRef:
    """One object version to look at. ``version_id`` is None in an unversioned bucket."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageRef":
        return cls(data["bucket"], data["key"], data.get("version_id"), data.get("etag"))


@dataclass(frozen=True)
class Label:
    """One moderation label in Rekognition's vocabulary (taxonomy v7)."""

    name: str
    parent_name: str
    confidence: float
    taxonomy_level: int
    detector: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "ParentName": self.parent_name,
            "Confidence": round(float(self.confidence), 3),
            "TaxonomyLevel": self.taxonomy_level,
            "Detector": self.detector,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Label":
        return cls(
            name=data["Name"],
            parent_name=data.get("ParentName", ""),
            confidence=float(data["Confidence"]),
            taxonomy_level=int(data.get("TaxonomyLevel") or 0),
            detector=data.get("Detector", ""),
        )


@dataclass(frozen=True)
class Detection:
    """What one detector (or several combined) found in one image."""

    detector: str
    model_version: str
    labels: tuple[Label, ...] = ()
    elapsed_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: Time spent waiting for a shared rate-limit slot before the call (not in ``elapsed_ms``);
    #: None when no limiter was involved.
    waited_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "detector": self.detector,
            "model_version": self.model_version,
            "labels": [label.to_dict() for label in self.labels],
            "elapsed_ms": round(self.elapsed_ms, 3),
            "extra": self.extra,
        }
        if self.waited_ms is not None:
            data["waited_ms"] = round(self.waited_ms, 3)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Detection":
        return cls(
            detector=data["detector"],
            model_version=data.get("model_version", ""),
            labels=tuple(Label.from_dict(item) for item in data.get("labels", [])),
            elapsed_ms=float(data.get("elapsed_ms", 0.0)),
            extra=dict(data.get("extra") or {}),
            waited_ms=None if data.get("waited_ms") is None else float(data["waited_ms"]),
        )


class Detector(abc.ABC):
    """Looks at one image and returns labels; raises RetryableError or PermanentError on failure."""

    #: Short name used in settings (PIPELINE_DETECTORS) and recorded on each label.
    name: str = ""

    @abc.abstractmethod
    def detect(self, image: ImageRef) -> Detection:
        """Return the labels found in ``image``. Never returns "clean" for an image it could not read."""
