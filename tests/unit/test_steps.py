"""pipeline.steps and the retry mapping in pipeline.tasks, without AWS.

The detector is a fake (there is no Rekognition here); the report store is a real in-memory
SQLite database. Steps that need S3 or SQS (tagging, the review queue) are covered in
``tests/integration/test_steps_moto.py``.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline import runtime as runtime_module
from pipeline import steps, tasks
from pipeline.detectors.base import Detection, Detector, ImageRef, Label
from pipeline.errors import (
    ObjectGoneError,
    PermanentError,
    PipelineError,
    RetryableError,
    ThrottledError,
    UnsupportedImageError,
)
from pipeline.events import ObjectEvent
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.tasks import MAX_DOUBLINGS, backoff_seconds

WEAPONS = Label("Weapons", "Violence", 95.0, 2, "fake")
DRINKING = Label("Drinking", "Alcohol Use", 91.0, 3, "fake")
FAINT = Label("Smoking", "Drugs & Tobacco Paraphernalia & Use", 55.0, 3, "fake")


@dataclass
class FakeDetector(Detector):
    """Returns fixed labels, or raises ``error``; records the images it was asked about."""

    labels: tuple[Label, ...] = ()
    error: Exception | None = None
    name: str = "fake"
    seen: list[ImageRef] = field(default_factory=list)

    def detect(self, image: ImageRef) -> Detection:
        self.seen.append(image)
        if self.error is not None:
            raise self.error
        return Detection(self.name, "fake-1", self.labels, elapsed_ms=12.3456, extra={"note": "fixed"})


class RetryRequested(Exception):
    """What the fake task's ``retry`` returns for ``_retry_or_give_up`` to raise (Celery raises Retry)."""


class FakeTask:
    """The parts of a bound Celery task ``_run`` uses: name, app.pipeline_settings, request.retries, retry()."""

    def __init__(self, settings: Settings, retries: int = 0, name: str = "pipeline.detect") -> None:
        self.name = name
        self.app = SimpleNamespace(pipeline_settings=settings)
        self.request = SimpleNamespace(retries=retries)
        self.retry_calls: list[dict[str, Any]] = []

    def retry(self, *, exc: Exception, countdown: float, max_retries: int) -> RetryRequested:
        self.retry_calls.append({"exc": exc, "countdown": countdown, "max_retries": max_retries})
        return RetryRequested(str(exc))


def make_settings(**changes: Any) -> Settings:
    """Settings unique to one test (the per-process runtime is cached on them), in-memory database."""
    changes.setdefault("allowed_buckets", ("uploads", "b"))
    return Settings(database_url="sqlite://", review_queue=f"review-{uuid.uuid4().hex[:10]}", **changes)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    """The process runtime ``tasks._run`` will find for ``settings``, with a fake detector."""
    rt = runtime_module.runtime(settings)
    rt.__dict__["detector"] = FakeDetector()
    yield rt
    rt.store.dispose()
    runtime_module._runtime.cache_clear()


def pending_work(rt: Runtime, key: str = "content/images/cat.jpg") -> dict[str, Any]:
    """Insert the bridge's pending row and return the work payload a chain starts from."""
    event = ObjectEvent(
        bucket="uploads",
        key=key,
        kind="created",
        event_name="ObjectCreated:Put",
        event_time="2024-05-01T12:00:00.000Z",
        version_id=f"v-{uuid.uuid4().hex[:8]}",
        etag="d41d8cd98f00b204e9800998ecf8427e",
    )
    row, created = rt.store.upsert_pending(event)
    assert created
    return {
        "work_id": row.work_id,
        "image": ImageRef(event.bucket, event.key, event.version_id, event.etag).to_dict(),
        "event_time": event.event_time,
    }


def use_detector(rt: Runtime, detector: Detector) -> None:
    rt.__dict__["detector"] = detector


# -- detect ----------------------------------------------------------------------------------


def test_detect_blocks_and_keeps_the_work_payload(rt: Runtime) -> None:
    # Given
    detector = FakeDetector(labels=(WEAPONS, FAINT))
    use_detector(rt, detector)
    work = pending_work(rt)
    # When
    result = steps.detect(rt, work)
    # Then
    assert detector.seen == [ImageRef.from_dict(work["image"])]
    assert result == {
        **work,
        "outcome": "blocked",
        "detection": {
            "detector": "fake",
            "model_version": "fake-1",
            "labels": [WEAPONS.to_dict(), FAINT.to_dict()],
            "elapsed_ms": 12.346,
            "extra": {"note": "fixed"},
        },
        "timings": {"detect_ms": 12.346},
    }


def test_detect_below_min_confidence_is_clean_but_keeps_the_labels(rt: Runtime) -> None:
    use_detector(rt, FakeDetector(labels=(FAINT,)))
    result = steps.detect(rt, pending_work(rt))
    assert result["outcome"] == "clean"
    assert result["detection"]["labels"] == [FAINT.to_dict()]


def test_detect_with_no_labels_is_clean(rt: Runtime) -> None:
    use_detector(rt, FakeDetector())
    assert steps.detect(rt, pending_work(rt))["outcome"] == "clean"


def test_detect_applies_block_categories() -> None:
    # Given: only Alcohol blocks
    settings = make_settings(block_categories=("alcohol",))
    rt = runtime_module.runtime(settings)
    try:
        work = pending_work(rt)
        # When / Then
        use_detector(rt, FakeDetector(labels=(WEAPONS,)))
        assert steps.detect(rt, work)["outcome"] == "clean"
        use_detector(rt, FakeDetector(labels=(WEAPONS, DRINKING)))
        assert steps.detect(rt, work)["outcome"] == "blocked"
    finally:
        rt.store.dispose()
        runtime_module._runtime.cache_clear()


def test_detect_keeps_earlier_timings(rt: Runtime) -> None:
    use_detector(rt, FakeDetector())
    result = steps.detect(rt, {**pending_work(rt), "timings": {"queue_ms": 4.0}})
    assert result["timings"] == {"queue_ms": 4.0, "detect_ms": 12.346}


@pytest.mark.parametrize(
    "error",
    [ThrottledError("slow down"), UnsupportedImageError("not an image"), ObjectGoneError("gone")],
    ids=["retryable", "unsupported", "gone"],
)
def test_detect_lets_detector_errors_through(rt: Runtime, error: PipelineError) -> None:
    # The step never turns a failure into "clean"; mapping errors is the task's job.
    use_detector(rt, FakeDetector(error=error))
    with pytest.raises(type(error)) as caught:
        steps.detect(rt, pending_work(rt))
    assert caught.value is error


# -- tag (the non-S3 half) -----------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["clean", "failed"])
def test_tag_passes_images_that_are_not_blocked_through(rt: Runtime, outcome: str) -> None:
    result = {**pending_work(rt), "outcome": outcome, "detection": None}
    assert steps.tag(rt, result) is result


# -- report (the database half) ------------------------------------------------------------


def test_report_records_a_clean_decision(rt: Runtime) -> None:
    # Given
    use_detector(rt, FakeDetector(labels=(FAINT,)))
    result = steps.detect(rt, pending_work(rt))
    # When
    reported = steps.report(rt, result)
    # Then
    assert reported == {"work_id": result["work_id"], "outcome": "clean"}
    row = rt.store.get(result["work_id"])
    assert row is not None
    assert row.outcome == "clean"
    assert row.labels == [FAINT.to_dict()]
    assert (row.detector, row.model_version) == ("fake", "fake-1")
    assert row.timings == {"detect_ms": 12.346}
    assert (row.error_code, row.error_message) == (None, None)
    assert row.decided_at is not None


def test_report_twice_changes_nothing(rt: Runtime) -> None:
    use_detector(rt, FakeDetector())
    result = steps.detect(rt, pending_work(rt))
    steps.report(rt, result)
    first = rt.store.get(result["work_id"])
    steps.report(rt, result)
    assert rt.store.get(result["work_id"]) == first


def test_report_records_a_failure_with_its_error_code(rt: Runtime) -> None:
    # Given: detection failed for good before any label was found
    work = pending_work(rt)
    result = steps.failed(work, UnsupportedImageError("truncated JPEG", code="InvalidImageFormatException"))
    # When
    reported = steps.report(rt, result)
    # Then
    assert reported == {"work_id": work["work_id"], "outcome": "failed"}
    row = rt.store.get(work["work_id"])
    assert row is not None
    assert (row.outcome, row.error_code, row.error_message) == ("failed", "InvalidImageFormatException", "truncated JPEG")
    assert row.labels == [] and row.detector is None


def test_report_of_a_failed_tag_keeps_the_labels(rt: Runtime) -> None:
    # Given: detected as blocked, then tagging hit the tag limit
    use_detector(rt, FakeDetector(labels=(WEAPONS,)))
    detected = steps.detect(rt, pending_work(rt))
    result = steps.failed(detected, PermanentError("object already has 10 tags", code="TagLimitExceeded"))
    # When (the review message it also needs is covered against SQS in test_steps_moto)
    flagged = steps.is_flagged(rt, result)
    steps._record(rt, result)
    # Then
    assert flagged is True
    row = rt.store.get(result["work_id"])
    assert row is not None
    assert (row.outcome, row.error_code) == ("failed", "TagLimitExceeded")
    assert row.labels == [WEAPONS.to_dict()]


def test_failures_without_blocking_labels_are_not_flagged(rt: Runtime) -> None:
    use_detector(rt, FakeDetector(labels=(FAINT,)))
    faint = steps.failed(steps.detect(rt, pending_work(rt)), PermanentError("gone", code="NoSuchKey"))
    undetected = steps.failed(pending_work(rt), PermanentError("not an image", code="InvalidImageFormatException"))
    assert (steps.is_flagged(rt, faint), steps.is_flagged(rt, undetected)) == (False, False)


def test_report_for_an_unknown_work_id_raises(rt: Runtime) -> None:
    with pytest.raises(KeyError):
        steps.report(rt, {"work_id": "no-such-work", "image": {"bucket": "b", "key": "k"}, "outcome": "clean"})


def test_failed_carries_the_code_and_a_bounded_message() -> None:
    work = {"work_id": "w", "image": {"bucket": "b", "key": "k"}}
    result = steps.failed(work, RetryableError("x" * 5000, code="SlowDown"))
    assert result["outcome"] == "failed"
    assert result["error"]["code"] == "SlowDown"
    assert result["error"]["message"] == "x" * 2000
    assert result["work_id"] == "w" and result["image"] == work["image"]


def test_review_message_names_the_object_and_its_labels() -> None:
    result = {
        "work_id": "w1",
        "image": {"bucket": "uploads", "key": "content/images/a.jpg", "version_id": "v1", "etag": "e1"},
        "event_time": "2024-05-01T12:00:00.000Z",
        "outcome": "blocked",
        "detection": {"detector": "fake", "model_version": "fake-1", "labels": [WEAPONS.to_dict()]},
    }
    message = steps.review_message(result)
    decided_at = message.pop("decided_at")
    assert decided_at.endswith("+00:00")
    assert message == {
        "type": "moderation.blocked",
        "outcome": "blocked",
        "error_code": None,
        "work_id": "w1",
        "bucket": "uploads",
        "key": "content/images/a.jpg",
        "version_id": "v1",
        "etag": "e1",
        "event_time": "2024-05-01T12:00:00.000Z",
        "detector": "fake",
        "model_version": "fake-1",
        "labels": [WEAPONS.to_dict()],
    }


# -- tasks: error mapping and retries --------------------------------------------------------


def test_permanent_error_becomes_a_failed_result(rt: Runtime, settings: Settings) -> None:
    # Given
    use_detector(rt, FakeDetector(error=UnsupportedImageError("not an image", code="InvalidImageFormatException")))
    work = pending_work(rt)
    task = FakeTask(settings)
    # When
    result = tasks._run(task, steps.detect, work, give_up=tasks._failed)
    # Then
    assert result == {**work, "outcome": "failed", "error": {"code": "InvalidImageFormatException", "message": "not an image"}}
    assert task.retry_calls == []
    # ... which report records
    steps.report(rt, result)
    row = rt.store.get(work["work_id"])
    assert row is not None and (row.outcome, row.error_code) == ("failed", "InvalidImageFormatException")


def test_permanent_error_in_report_of_a_clean_image_is_raised_not_swallowed(rt: Runtime, settings: Settings) -> None:
    def step(_rt: Runtime, _payload: dict) -> dict:
        raise PermanentError("cannot report", code="AccessDenied")

    with pytest.raises(PermanentError, match="cannot report"):
        tasks._run(FakeTask(settings, name="pipeline.report"), step, {"work_id": "w", "outcome": "clean"},
                   give_up=steps.report_without_review)


@pytest.mark.parametrize("retries", [0, 1, 4])
def test_retryable_error_under_max_retries_is_retried(rt: Runtime, retries: int) -> None:
    # Given: max_retries is 5
    settings = rt.settings
    error = ThrottledError("Rate exceeded", code="ThrottlingException")
    use_detector(rt, FakeDetector(error=error))
    task = FakeTask(settings, retries=retries)
    # When
    with pytest.raises(RetryRequested):
        tasks._run(task, steps.detect, pending_work(rt), give_up=tasks._failed)
    # Then
    assert len(task.retry_calls) == 1
    call = task.retry_calls[0]
    assert call["exc"] is error
    assert call["max_retries"] == settings.max_retries == 5
    assert 0 <= call["countdown"] <= min(settings.retry_backoff_max, 2**retries)


def test_retry_countdown_never_exceeds_the_configured_cap() -> None:
    # Given: a small cap and many retries left
    settings = make_settings(max_retries=50, retry_backoff_max=3)
    rt = Runtime(settings=settings, store=None, policy=None)  # type: ignore[arg-type]
    task = FakeTask(settings, retries=40)
    # When
    for _ in range(200):
        with pytest.raises(RetryRequested):
            tasks._retry_or_give_up(task, rt, {"work_id": "w"}, RetryableError("503"), tasks._failed)
    # Then
    countdowns = [call["countdown"] for call in task.retry_calls]
    assert len(countdowns) == 200
    assert max(countdowns) <= 3
    assert min(countdowns) >= 0


@pytest.mark.parametrize("retries", [5, 6])
def test_retryable_error_at_max_retries_becomes_failed(rt: Runtime, retries: int) -> None:
    # Given
    settings = rt.settings
    use_detector(rt, FakeDetector(error=RetryableError("Internal server error", code="InternalServerError")))
    work = pending_work(rt)
    task = FakeTask(settings, retries=retries)
    # When
    result = tasks._run(task, steps.detect, work, give_up=tasks._failed)
    # Then
    assert task.retry_calls == []
    assert result == {**work, "outcome": "failed", "error": {"code": "InternalServerError", "message": "Internal server error"}}


def test_max_retries_zero_fails_on_the_first_retryable_error() -> None:
    settings = make_settings(max_retries=0)
    rt = Runtime(settings=settings, store=None, policy=None)  # type: ignore[arg-type]
    task = FakeTask(settings, retries=0)
    result = tasks._retry_or_give_up(task, rt, {"work_id": "w"}, RetryableError("boom", code="RequestTimeout"), tasks._failed)
    assert result["outcome"] == "failed" and result["error"]["code"] == "RequestTimeout"
    assert task.retry_calls == []


def test_report_of_a_clean_image_out_of_retries_raises_instead_of_returning_failed() -> None:
    settings = make_settings()
    rt = Runtime(settings=settings, store=None, policy=None)  # type: ignore[arg-type]
    error = RetryableError("database unavailable", code="DatabaseUnavailable")
    with pytest.raises(RetryableError) as caught:
        tasks._retry_or_give_up(FakeTask(settings, retries=5, name="pipeline.report"), rt,
                                {"work_id": "w", "outcome": "clean"}, error, steps.report_without_review)
    assert caught.value is error


def test_unexpected_error_is_retried_then_recorded(rt: Runtime, settings: Settings) -> None:
    # Given: a bug in a step
    def step(_rt: Runtime, _payload: dict) -> dict:
        raise ValueError("boom")

    retrying = FakeTask(settings, retries=0)
    exhausted = FakeTask(settings, retries=settings.max_retries)
    # When
    with pytest.raises(RetryRequested):
        tasks._run(retrying, step, {"work_id": "w"}, give_up=tasks._failed)
    result = tasks._run(exhausted, step, {"work_id": "w"}, give_up=tasks._failed)
    # Then
    assert retrying.retry_calls[0]["exc"].error_code == "UnexpectedError"
    assert result == {"work_id": "w", "outcome": "failed", "error": {"code": "UnexpectedError", "message": "ValueError: boom"}}


# -- backoff_seconds -------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 3, 8, 9, 20, MAX_DOUBLINGS, 5000])
def test_backoff_never_exceeds_the_cap(retries: int) -> None:
    draws = [backoff_seconds(retries, cap=300) for _ in range(1000)]
    assert min(draws) >= 0
    assert max(draws) <= min(300, 2**retries)


def test_backoff_grows_with_retries_on_average() -> None:
    means = [statistics.fmean(backoff_seconds(retries, cap=300) for _ in range(1000)) for retries in (0, 3, 6, 10)]
    # Expected means 0.5, 4, 32 and 150 (capped): far apart for 1000 draws each.
    assert means == sorted(means)
    assert means[0] < 1 < means[1] < 8 < means[2] < 64 < means[3] <= 300


def test_backoff_with_a_custom_base() -> None:
    assert all(0 <= backoff_seconds(2, cap=1000, base=0.25) <= 1.0 for _ in range(1000))


# -- second chains, gone objects, refused buckets -----------------------------------------------


def test_a_second_chain_for_decided_work_skips_the_detector_and_changes_nothing(rt: Runtime) -> None:
    # Given: work decided (clean) by a first chain
    detector = FakeDetector(labels=(FAINT,))
    use_detector(rt, detector)
    work = pending_work(rt)
    steps.report(rt, steps.detect(rt, work))
    decided = rt.store.get(work["work_id"])
    # When: a second chain (say, re-enqueued by the sweeper) runs
    second = steps.report(rt, steps.tag(rt, steps.detect(rt, work)))
    # Then: one detector call, and the row is as the first chain left it
    assert len(detector.seen) == 1
    assert second == {"work_id": work["work_id"], "outcome": None, "skipped": True}
    assert rt.store.get(work["work_id"]) == decided


def test_detect_counts_each_attempt_on_the_row(rt: Runtime) -> None:
    use_detector(rt, FakeDetector(error=RetryableError("503")))
    work = pending_work(rt)
    for _ in range(3):
        with pytest.raises(RetryableError):
            steps.detect(rt, work)
    assert rt.store.get(work["work_id"]).attempts == 3


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ObjectGoneError("gone", code="NoSuchKey"), "deleted"),
        (ObjectGoneError("gone", code="NoSuchVersion"), "deleted"),
        (ObjectGoneError("etag changed", code="ObjectSuperseded"), "superseded"),
        # A missing bucket is a configuration problem, not a deleted image: keep it visible as failed.
        # (InvalidS3ObjectException is checked with HeadObject: see tests/integration/test_steps_moto.py.)
        (ObjectGoneError("no bucket", code="NoSuchBucket"), "failed"),
        (UnsupportedImageError("bad", code="InvalidImageFormatException"), "failed"),
        (PermanentError("other"), "failed"),
    ],
)
def test_a_gone_object_ends_deleted_or_superseded_other_errors_failed(rt: Runtime, error: PipelineError, outcome: str) -> None:
    use_detector(rt, FakeDetector(error=error))
    work = pending_work(rt)

    result = tasks._run(FakeTask(rt.settings), steps.detect, work, give_up=tasks._failed)
    steps.report(rt, result)

    row = rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == (outcome, error.error_code)


def test_work_for_a_bucket_outside_the_allow_list_is_refused_before_any_call(rt: Runtime) -> None:
    detector = FakeDetector(labels=(WEAPONS,))
    use_detector(rt, detector)
    work = pending_work(rt)
    forged = {**work, "image": {**work["image"], "bucket": "someone-elses-bucket"}}

    with pytest.raises(PermanentError) as caught:
        steps.detect(rt, forged)
    with pytest.raises(PermanentError):
        steps.tag(rt, {**forged, "outcome": "blocked"})

    assert caught.value.error_code == "BucketNotAllowed"
    assert detector.seen == []
