"""The pure parts of the shared rate limit: settings, the floor, limiter construction, wiring.

Nothing here talks to Redis (building a redis-py client or registering a script does not
connect); the limiter's behaviour against a real Redis is in tests/integration/test_ratelimit_redis.py.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis

from pipeline import ratelimit, steps
from pipeline import runtime as runtime_module
from pipeline.detectors.base import Detection, Detector, ImageRef, Label
from pipeline.detectors.combined import CombinedDetector
from pipeline.detectors.factory import build_detector
from pipeline.detectors.rekognition import RekognitionDetector
from pipeline.errors import ConfigurationError, RateLimiterUnavailable, RateLimitWaitExceeded, RetryableError
from pipeline.ratelimit import RateLimiter, floor_rate
from pipeline.events import ObjectEvent
from pipeline.settings import DEMO_HASHLIST, Settings

AMQP = "amqp://moderator:s3cret@rabbit.internal:5672//"
IMAGE = ImageRef("uploads", "content/images/cat.jpg", "v1", "e1")


def unused_client() -> redis.Redis:
    """A client that is never asked anything (redis-py connects on the first command only)."""
    return redis.Redis(host="127.0.0.1", port=1)


# -- settings ----------------------------------------------------------------------------------


def test_defaults_follow_rekognitions_quota_with_strict_spacing() -> None:
    settings = Settings.from_env({})
    assert (settings.ratelimit_rate, settings.ratelimit_burst) == (50.0, 0)
    assert (settings.ratelimit_max_wait, settings.ratelimit_recovery_seconds) == (10.0, 30.0)
    assert settings.ratelimit_url is None
    assert settings.ratelimit_enabled


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "redis://127.0.0.1:6379/0"),
        ({"PIPELINE_BROKER_URL": "redis://cache:6380/2"}, "redis://cache:6380/2"),
        ({"PIPELINE_BROKER_URL": "rediss://:pw@cache:6380/0"}, "rediss://:pw@cache:6380/0"),
        ({"PIPELINE_BROKER_URL": "redis://cache/0", "PIPELINE_RATELIMIT_URL": "redis://limits/3"}, "redis://limits/3"),
        ({"PIPELINE_BROKER_URL": AMQP, "PIPELINE_RATELIMIT_URL": "unix:///run/redis.sock"}, "unix:///run/redis.sock"),
    ],
)
def test_the_limiter_uses_its_own_url_else_a_redis_broker(environ: dict[str, str], expected: str) -> None:
    assert Settings.from_env(environ).effective_ratelimit_url == expected


def test_a_broker_that_is_not_redis_needs_a_limiter_url_and_the_message_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"PIPELINE_BROKER_URL": AMQP})
    message = str(caught.value)
    assert message.startswith("PIPELINE_RATELIMIT_URL must be set")
    assert "amqp://..." in message and "s3cret" not in message and "PIPELINE_RATELIMIT_RATE=0" in message


@pytest.mark.parametrize(
    "environ",
    [
        {"PIPELINE_RATELIMIT_RATE": "0"},  # the limit is off
        {"PIPELINE_DETECTORS": "hashlist", "PIPELINE_HASHLIST_PATH": DEMO_HASHLIST},  # no Rekognition calls
    ],
    ids=["rate-0", "hashlist-only"],
)
def test_without_rekognition_calls_to_limit_no_limiter_redis_is_needed(environ: dict[str, str]) -> None:
    settings = Settings.from_env({"PIPELINE_BROKER_URL": AMQP, **environ})
    assert not settings.ratelimit_enabled
    assert settings.effective_ratelimit_url is None


# -- the floor and the limiter's numbers -----------------------------------------------------


@pytest.mark.parametrize(("rate", "floor"), [(50.0, 2.5), (200.0, 10.0), (10.0, 1.0), (1.0, 1.0), (0.5, 0.5)])
def test_floor_is_five_percent_at_least_one_per_second_never_above_the_rate(rate: float, floor: float) -> None:
    assert floor_rate(rate) == pytest.approx(floor)


def test_limiter_numbers_come_from_its_arguments() -> None:
    limiter = RateLimiter(unused_client(), rate=50, burst=3, max_wait=4, recovery_seconds=19, name="tenant-a")
    assert (limiter.rate, limiter.burst, limiter.max_wait, limiter.floor) == (50.0, 3, 4.0, 2.5)
    # floor to full rate in recovery_seconds: (50 - 2.5) / 19 calls/s regained per second
    assert limiter.recovery == pytest.approx(2.5)
    # one key per limiter, its name in braces: a Redis Cluster hash tag
    assert limiter.key == "pipeline:ratelimit:{tenant-a}"


@pytest.mark.parametrize(
    "bad", [{"rate": 0}, {"rate": -1}, {"burst": -1}, {"max_wait": 0}, {"recovery_seconds": 0}]
)
def test_limiter_refuses_numbers_that_cannot_limit(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(unused_client(), **{"rate": 10, **bad})


def test_limiter_errors_are_retryable_with_stable_codes() -> None:
    waited = RateLimitWaitExceeded("too far", wait_seconds=12.5)
    assert isinstance(waited, RetryableError) and waited.error_code == "RateLimitWaitExceeded"
    assert waited.wait_seconds == 12.5
    unavailable = RateLimiterUnavailable("down")
    assert isinstance(unavailable, RetryableError) and unavailable.error_code == "RateLimiterUnavailable"


# -- one limiter per process, from settings ---------------------------------------------------


def test_limiter_from_settings_carries_every_setting() -> None:
    settings = Settings(ratelimit_url="redis://127.0.0.1:1/5", ratelimit_rate=20, ratelimit_burst=2,
                        ratelimit_max_wait=3, ratelimit_recovery_seconds=19)
    limiter = ratelimit.limiter_from_settings(settings)
    assert limiter is not None
    assert (limiter.rate, limiter.burst, limiter.max_wait, limiter.floor) == (20.0, 2, 3.0, 1.0)
    assert limiter.recovery == pytest.approx(1.0)
    assert limiter.key == "pipeline:ratelimit:{rekognition}"


def test_rate_zero_turns_the_limiter_off() -> None:
    assert ratelimit.limiter_from_settings(Settings(ratelimit_rate=0)) is None


def test_shared_limiter_is_made_once_per_process() -> None:
    settings = Settings(ratelimit_url=f"redis://127.0.0.1:1/{uuid.uuid4().int % 16}")
    first = ratelimit.shared_limiter(settings)
    assert first is not None and ratelimit.shared_limiter(settings) is first
    # a forked child has another pid, so it gets a limiter (and connections) of its own
    assert ratelimit._shared_limiter(settings, os.getpid() + 1) is not first


def test_factory_puts_the_shared_limiter_on_rekognition_only() -> None:
    settings = Settings(ratelimit_url="redis://127.0.0.1:1/7", detectors=("rekognition", "hashlist"),
                        hashlist_path=DEMO_HASHLIST)
    detector = build_detector(settings, client=lambda service: object())
    assert isinstance(detector, CombinedDetector)
    rekognition, hashlist = detector._detectors
    assert isinstance(rekognition, RekognitionDetector)
    assert rekognition._limiter is ratelimit.shared_limiter(settings)
    assert not hasattr(hashlist, "_limiter")


def test_factory_builds_rekognition_without_a_limiter_at_rate_zero() -> None:
    detector = build_detector(Settings(ratelimit_rate=0), client=lambda service: object())
    assert isinstance(detector, RekognitionDetector) and detector._limiter is None


# -- the wait in the detection and in the result's timings ---------------------------------------


LABEL = Label("Weapons", "Violence", 95.0, 2, "fixed")


class WaitingDetector(Detector):
    """Returns one label and a fixed rate-limit wait."""

    def __init__(self, name: str, waited_ms: float | None) -> None:
        self.name, self._waited_ms = name, waited_ms

    def detect(self, image: ImageRef) -> Detection:
        return Detection(self.name, "v1", (LABEL,), elapsed_ms=100.0, waited_ms=self._waited_ms)


def test_detection_keeps_the_wait_through_json() -> None:
    detection = Detection("rekognition", "7.0", (LABEL,), elapsed_ms=120.0, waited_ms=15.25)
    assert detection.to_dict()["waited_ms"] == 15.25
    assert Detection.from_dict(detection.to_dict()) == detection


def test_detection_without_a_limiter_has_no_wait_key() -> None:
    detection = Detection("hashlist", "hashlist-v1:abc", (), elapsed_ms=3.0)
    assert "waited_ms" not in detection.to_dict()
    assert Detection.from_dict(detection.to_dict()).waited_ms is None


@pytest.mark.parametrize(("waits", "total"), [((15.0, None), 15.0), ((None, None), None), ((2.0, 3.5), 5.5)])
def test_combined_detection_adds_up_the_waits(waits: tuple[float | None, float | None], total: float | None) -> None:
    combined = CombinedDetector([WaitingDetector("a", waits[0]), WaitingDetector("b", waits[1])])
    assert combined.detect(IMAGE).waited_ms == total


@pytest.mark.parametrize(("waited_ms", "timings"), [(40.1234, {"detect_ms": 100.0, "ratelimit_wait_ms": 40.123}),
                                                    (None, {"detect_ms": 100.0})])
def test_detect_step_records_the_wait_next_to_detect_ms(waited_ms: float | None, timings: dict[str, float]) -> None:
    # Given: a runtime of this test's own with a detector that waited (or had no limiter)
    settings = Settings(database_url="sqlite://", review_queue=f"review-{uuid.uuid4().hex[:10]}",
                        allowed_buckets=(IMAGE.bucket,))
    rt = runtime_module.runtime(settings)
    rt.__dict__["detector"] = WaitingDetector("rekognition", waited_ms)
    row, _ = rt.store.upsert_pending(ObjectEvent(IMAGE.bucket, IMAGE.key, "created", "ObjectCreated:Put",
                                                 "2026-12-03T10:00:00.000Z", version_id=IMAGE.version_id))
    try:
        # When
        result = steps.detect(rt, {"work_id": row.work_id, "image": IMAGE.to_dict(), "event_time": None})
        # Then
        assert result["timings"] == timings
    finally:
        rt.store.dispose()
        runtime_module._runtime.cache_clear()
