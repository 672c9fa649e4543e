"""Build the configured detector(s) from Settings (PIPELINE_DETECTORS)."""

from __future__ import annotations

from typing import Any, Callable

from pipeline.detectors.base import Detector
from pipeline.detectors.combined import CombinedDetector
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

#: Hash algorithm -> the Settings field holding its distance threshold; others use hashlist_max_distance.
DISTANCE_FIELDS = {"pdq": "hashlist_pdq_max_distance"}


def build_detector(settings: Settings, *, client: Callable[[str], Any], worker_processes: int | None = None) -> Detector:
    """One detector, or a CombinedDetector when several are configured; ``client(service)`` gives boto3 clients.

    ``worker_processes``: the pool size of the Celery worker this process belongs to, when known;
    the local model's automatic thread count divides the CPUs among them.
    """
    detectors = [_build_one(name, settings, client, worker_processes) for name in settings.detectors]
    return detectors[0] if len(detectors) == 1 else CombinedDetector(detectors)


def _build_one(name: str, settings: Settings, client: Callable[[str], Any], worker_processes: int | None) -> Detector:
    if name == "rekognition":
        from pipeline import ratelimit
        from pipeline.detectors.rekognition import RekognitionDetector

        # The process's shared limiter (None when PIPELINE_RATELIMIT_RATE=0); made here, so only
        # a configuration with rekognition ever needs the limiter's Redis.
        return RekognitionDetector(client=client("rekognition"), min_confidence=settings.min_confidence,
                                   limiter=ratelimit.shared_limiter(settings))
    if name == "hashlist":
        return build_hashlist(settings, s3_client=client("s3"))
    if name == "local":
        return build_local(settings, s3_client=client("s3"), worker_processes=worker_processes)
    raise ConfigurationError(f"PIPELINE_DETECTORS: detector {name!r} is not available in this installation")


def hashlist_distances(settings: Settings, algorithms: set[str]) -> dict[str, int]:
    """Each algorithm's Hamming-distance threshold, from its own setting."""
    return {name: getattr(settings, DISTANCE_FIELDS.get(name, "hashlist_max_distance")) for name in algorithms}


def build_hashlist(settings: Settings, *, s3_client: Any) -> Detector:
    """The hash-list detector: loads and checks the list (PIPELINE_HASHLIST_PATH and the distance settings)."""
    from pipeline.detectors.hashlist import HashList, HashListDetector, get_algorithm

    assert settings.hashlist_path  # validated by Settings
    hash_list = HashList.load(settings.hashlist_path)
    distances = hashlist_distances(settings, hash_list.algorithms)
    for algorithm, distance in distances.items():
        bits = get_algorithm(algorithm).bits
        if distance >= bits:
            variable = "PIPELINE_" + DISTANCE_FIELDS.get(algorithm, "hashlist_max_distance").upper()
            raise ConfigurationError(
                f"{variable}={distance} would match every image "
                f"against a {bits}-bit {algorithm} hash; use a value well under {bits // 2}"
            )
    return HashListDetector(hash_list, s3_client=s3_client, max_distance=distances)


def build_local(settings: Settings, *, s3_client: Any, worker_processes: int | None = None) -> Detector:
    """The local-model detector; the model file is found and checked now, its session made on first use."""
    from pipeline.detectors.local import LocalModelDetector
    from pipeline.detectors.local_model import LocalModel, bundled_model_path, default_threads

    threads = settings.local_model_threads or default_threads(worker_processes)
    model = LocalModel(bundled_model_path(), threads=threads)
    return LocalModelDetector(model, s3_client=s3_client, min_confidence=settings.min_confidence)
