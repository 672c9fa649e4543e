"""Build the configured detector(s) from Settings (PIPELINE_DETECTORS)."""

from __future__ import annotations

from typing import Any, Callable

from pipeline.detectors.base import Detector
from pipeline.detectors.combined import CombinedDetector
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings


def build_detector(settings: Settings, *, client: Callable[[str], Any]) -> Detector:
    """One detector, or a CombinedDetector when several are configured; ``client(service)`` gives boto3 clients."""
    detectors = [_build_one(name, settings, client) for name in settings.detectors]
    return detectors[0] if len(detectors) == 1 else CombinedDetector(detectors)


def _build_one(name: str, settings: Settings, client: Callable[[str], Any]) -> Detector:
    if name == "rekognition":
        from pipeline.detectors.rekognition import RekognitionDetector

        return RekognitionDetector(client=client("rekognition"), min_confidence=settings.min_confidence)
    if name == "hashlist":
        from pipeline.detectors.hashlist import HashList, HashListDetector

        assert settings.hashlist_path  # validated by Settings
        return HashListDetector(
            HashList.load(settings.hashlist_path),
            s3_client=client("s3"),
            max_distance=settings.hashlist_max_distance,
        )
    raise ConfigurationError(f"PIPELINE_DETECTORS: detector {name!r} is not available in this installation")
