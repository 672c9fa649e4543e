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
        from pipeline import ratelimit
        from pipeline.detectors.rekognition import RekognitionDetector

        # The process's shared limiter (None when PIPELINE_RATELIMIT_RATE=0); made here, so only
        # a configuration with rekognition ever needs the limiter's Redis.
        return RekognitionDetector(client=client("rekognition"), min_confidence=settings.min_confidence,
                                   limiter=ratelimit.shared_limiter(settings))
    if name == "hashlist":
        return build_hashlist(settings, s3_client=client("s3"))
    raise ConfigurationError(f"PIPELINE_DETECTORS: detector {name!r} is not available in this installation")


def build_hashlist(settings: Settings, *, s3_client: Any) -> Detector:
    """The hash-list detector: loads and checks the list (PIPELINE_HASHLIST_PATH, _MAX_DISTANCE)."""
    from pipeline.detectors.hashlist import HashList, HashListDetector, get_algorithm

    assert settings.hashlist_path  # validated by Settings
    hash_list = HashList.load(settings.hashlist_path)
    for algorithm in {entry.algorithm for entry in hash_list.entries}:
        bits = get_algorithm(algorithm).bits
        if settings.hashlist_max_distance >= bits:
            raise ConfigurationError(
                f"PIPELINE_HASHLIST_MAX_DISTANCE={settings.hashlist_max_distance} would match every image "
                f"against a {bits}-bit {algorithm} hash; use a value well under {bits // 2}"
            )
    return HashListDetector(hash_list, s3_client=s3_client, max_distance=settings.hashlist_max_distance)
