"""detect -> tag -> report through pipeline.steps on a moto S3/SQS server, with no fakes at all.

The detector is the real hash-list detector reading the demo samples from moto's S3; the clients
are the product's own (``pipeline.aws.client``), pointed at moto through boto3's per-service
endpoint variables exactly as ``up --local`` does; the report store is SQLite in memory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.dispatch import build_recheck, work_for
from pipeline import aws, steps, tasks
from pipeline import runtime as runtime_module
from pipeline.app import create_app
from pipeline.demo.make_samples import SAMPLES_DIR
from pipeline.detectors.base import ImageRef
from pipeline.errors import ObjectGoneError, PermanentError
from pipeline.events import ObjectEvent
from pipeline.runtime import Runtime
from pipeline.settings import DEMO_HASHLIST, Settings
from tests.conftest import delete_bucket

# moto_endpoint, aws_env and the s3/sqs clients (for the tests' own checks) come from tests/conftest.py.

OWNER_TAGS = [{"Key": "team", "Value": "photos"}]
BLOCK_TAG = {"Key": "BlockedContent", "Value": "true"}
DEMO_LABEL = {
    "Name": "Known Bad Content (demo)",
    "ParentName": "Explicit",
    "Confidence": 100.0,
    "TaxonomyLevel": 2,
    "Detector": "hashlist",
}


class FakeTask:
    """A bound task's surface for ``tasks._run``: it must not retry in these tests."""

    def __init__(self, settings: Settings, name: str = "pipeline.detect") -> None:
        self.name = name
        self.app = SimpleNamespace(pipeline_settings=settings)
        self.request = SimpleNamespace(retries=0)

    def retry(self, **kwargs: Any) -> Exception:
        raise AssertionError(f"unexpected retry: {kwargs}")


@pytest.fixture
def product_env(aws_env: dict[str, str], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """boto3's own endpoint variables aimed at moto (``aws_env`` has the credentials and region);
    the product's client cache emptied around the test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    aws._client.cache_clear()
    yield
    aws._client.cache_clear()


@pytest.fixture
def settings(s3: Any, sqs: Any) -> Iterator[Settings]:
    """A versioned bucket and a review queue of this test's own, removed afterwards."""
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url="sqlite://",
        bucket=f"steps-{run}",
        review_queue=f"review-{run}",
        detectors=("hashlist",),
        hashlist_path=DEMO_HASHLIST,
    )
    s3.create_bucket(Bucket=settings.bucket)
    s3.put_bucket_versioning(Bucket=settings.bucket, VersioningConfiguration={"Status": "Enabled"})
    review_url = sqs.create_queue(QueueName=settings.review_queue)["QueueUrl"]
    yield settings
    sqs.delete_queue(QueueUrl=review_url)
    delete_bucket(s3, settings.bucket)


@pytest.fixture
def rt(product_env: None, settings: Settings) -> Iterator[Runtime]:
    """The process runtime for ``settings``: real detector, the product's own clients, in-memory report store."""
    rt = runtime_module.runtime(settings)
    yield rt
    rt.store.dispose()
    runtime_module._runtime.cache_clear()


def upload(s3: Any, rt: Runtime, sample: str, *, key: str | None = None, tags: list[dict] = ()) -> dict[str, Any]:
    """Upload a demo sample, write the bridge's pending row, and return the chain's work payload."""
    bucket = rt.settings.bucket
    key = key or f"{rt.settings.prefix}{uuid.uuid4().hex[:8]}-{sample}"
    response = s3.put_object(Bucket=bucket, Key=key, Body=(SAMPLES_DIR / sample).read_bytes())
    if tags:
        s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=response["VersionId"], Tagging={"TagSet": list(tags)})
    event = ObjectEvent(
        bucket=bucket,
        key=key,
        kind="created",
        event_name="ObjectCreated:Put",
        event_time="2024-05-01T12:00:00.000Z",
        version_id=response.get("VersionId"),
        etag=response["ETag"].strip('"'),
    )
    row, _created = rt.store.upsert_pending(event)
    return work_for(row)


def stored_tags(s3: Any, image: dict[str, Any]) -> list[dict[str, str]]:
    ref = ImageRef.from_dict(image)
    target = {"Bucket": ref.bucket, "Key": ref.key, **({"VersionId": ref.version_id} if ref.version_id else {})}
    return s3.get_object_tagging(**target)["TagSet"]


def review_messages(sqs: Any, settings: Settings) -> list[dict[str, Any]]:
    url = sqs.get_queue_url(QueueName=settings.review_queue)["QueueUrl"]
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def run_chain(rt: Runtime, work: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    detected = steps.detect(rt, work)
    tagged = steps.tag(rt, detected)
    return detected, tagged, steps.report(rt, tagged)


def test_known_bad_image_is_blocked_tagged_reported_and_sent_for_review(s3: Any, sqs: Any, rt: Runtime) -> None:
    # Given: a re-upload of known content, carrying its owner's tag
    work = upload(s3, rt, "known-bad-copy.jpg", tags=OWNER_TAGS)
    # When
    detected, tagged, reported = run_chain(rt, work)
    # Then: blocked on the hash-list label
    assert detected["outcome"] == "blocked"
    assert detected["detection"]["labels"] == [DEMO_LABEL]
    # ... tagged, keeping the owner's tag
    assert tagged["tag_changed"] is True
    assert tagged["tags"] == {"team": "photos", "BlockedContent": "true"}
    assert stored_tags(s3, work["image"]) == OWNER_TAGS + [BLOCK_TAG]
    assert set(tagged["timings"]) == {"detect_ms", "tag_ms"}
    # ... reported
    assert reported == {"work_id": work["work_id"], "outcome": "blocked"}
    row = rt.store.get(work["work_id"])
    assert row is not None
    assert row.outcome == "blocked"
    assert row.labels == [DEMO_LABEL]
    assert row.detector == "hashlist"
    assert row.model_version.startswith("hashlist-v1:")
    # ... and sent to moderators
    (message,) = review_messages(sqs, rt.settings)
    assert message["type"] == "moderation.blocked"
    assert (message["work_id"], message["bucket"], message["key"]) == (
        work["work_id"], work["image"]["bucket"], work["image"]["key"])
    assert message["version_id"] == work["image"]["version_id"]
    assert message["labels"] == [DEMO_LABEL]
    assert message["detector"] == "hashlist"


@pytest.mark.parametrize("sample", ["meadow.jpg", "tiles.png"])
def test_unrelated_image_is_clean_untagged_and_not_sent_for_review(
    s3: Any, sqs: Any, rt: Runtime, sample: str
) -> None:
    # Given
    work = upload(s3, rt, sample, tags=OWNER_TAGS)
    # When
    detected, tagged, reported = run_chain(rt, work)
    # Then
    assert detected["outcome"] == "clean"
    assert tagged is detected
    assert reported == {"work_id": work["work_id"], "outcome": "clean"}
    assert stored_tags(s3, work["image"]) == OWNER_TAGS
    assert rt.store.get(work["work_id"]).outcome == "clean"
    assert review_messages(sqs, rt.settings) == []


def test_recheck_of_a_blocked_row_finds_the_tag_already_there(s3: Any, sqs: Any, rt: Runtime) -> None:
    # Given: the image went through the chain once
    work = upload(s3, rt, "known-bad.jpg")
    run_chain(rt, work)
    review_messages(sqs, rt.settings)
    row = rt.store.get(work["work_id"])
    # When: a duplicate event arrives and the bridge enqueues the recheck
    (recheck,) = build_recheck(create_app(rt.settings), row).tasks[0].args
    tagged = steps.tag(rt, recheck)
    reported = steps.report(rt, tagged)
    # Then: the tag was read again and found; nothing was written, the first decision stands
    assert tagged["tag_changed"] is False
    assert stored_tags(s3, work["image"]) == [BLOCK_TAG]
    assert reported == {"work_id": work["work_id"], "outcome": "blocked"}
    assert rt.store.get(work["work_id"]) == row
    assert review_messages(sqs, rt.settings) == []


def test_recheck_puts_back_a_tag_someone_removed(s3: Any, sqs: Any, rt: Runtime) -> None:
    # Given: blocked and tagged, then the owner overwrote the tag set
    work = upload(s3, rt, "known-bad.jpg")
    run_chain(rt, work)
    image = ImageRef.from_dict(work["image"])
    s3.put_object_tagging(Bucket=image.bucket, Key=image.key, VersionId=image.version_id,
                          Tagging={"TagSet": OWNER_TAGS})
    # When
    (recheck,) = build_recheck(create_app(rt.settings), rt.store.get(work["work_id"])).tasks[0].args
    tagged = steps.tag(rt, recheck)
    # Then
    assert tagged["tag_changed"] is True
    assert stored_tags(s3, work["image"]) == OWNER_TAGS + [BLOCK_TAG]


def test_tag_limit_becomes_a_failed_report_with_labels(s3: Any, sqs: Any, rt: Runtime) -> None:
    # Given: the owner already uses all ten tags
    owner = [{"Key": f"owner-{i}", "Value": str(i)} for i in range(10)]
    work = upload(s3, rt, "known-bad-copy.jpg", tags=owner)
    detected = steps.detect(rt, work)
    # When: the tag task maps the PermanentError, then report records it
    task = FakeTask(rt.settings, name="pipeline.tag")
    tagged = tasks._run(task, steps.tag, detected, give_up=tasks._failed)
    reported = steps.report(rt, tagged)
    # Then
    assert reported == {"work_id": work["work_id"], "outcome": "failed"}
    row = rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("failed", "TagLimitExceeded")
    assert row.labels == [DEMO_LABEL]
    assert stored_tags(s3, work["image"]) == owner
    (message,) = review_messages(sqs, rt.settings)  # still visible: moderators must see it
    assert (message["type"], message["outcome"], message["error_code"]) == (
        "moderation.flagged_untagged", "failed", "TagLimitExceeded")
    assert message["labels"] == [DEMO_LABEL]


def test_a_version_deleted_before_detection_is_recorded_deleted(s3: Any, rt: Runtime) -> None:
    # Given: the version was deleted before the worker got to it
    work = upload(s3, rt, "meadow.jpg")
    image = ImageRef.from_dict(work["image"])
    s3.delete_object(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)
    # When
    with pytest.raises(ObjectGoneError) as caught:
        steps.detect(rt, work)
    result = tasks._run(FakeTask(rt.settings), steps.detect, work, give_up=tasks._failed)
    steps.report(rt, result)
    # Then
    assert caught.value.error_code == "NoSuchVersion"
    row = rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("deleted", "NoSuchVersion")


def test_missing_review_queue_still_records_the_blocked_decision(s3: Any, sqs: Any, rt: Runtime) -> None:
    # Given: blocked and tagged, but the review queue is gone
    work = upload(s3, rt, "known-bad.jpg")
    tagged = steps.tag(rt, steps.detect(rt, work))
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=rt.settings.review_queue)["QueueUrl"])
    try:
        # When: report fails with a pipeline error (never a raw ClientError) and the task gives up
        with pytest.raises(PermanentError) as caught:
            steps.report(rt, tagged)
        assert rt.store.get(work["work_id"]).outcome == "pending"
        result = tasks._run(FakeTask(rt.settings, name="pipeline.report"), steps.report, tagged,
                            give_up=steps.report_without_review)
        # Then: the decision is on record, saying why moderators got no message
        row = rt.store.get(work["work_id"])
        assert result == {"work_id": work["work_id"], "outcome": "blocked"}
        assert (row.outcome, row.error_code) == ("blocked", f"ReviewNotSent:{caught.value.error_code}")
        assert row.labels == [DEMO_LABEL]
    finally:
        sqs.create_queue(QueueName=rt.settings.review_queue)  # for the fixture's clean-up



# -- Rekognition's InvalidS3ObjectException: deleted, overwritten, or not readable ---------------


@pytest.fixture
def rekognition_rt(rt: Runtime, moto_endpoint: str) -> Iterator[Runtime]:
    """``rt`` with the Rekognition detector on the stand-in (the product's detector class and client config)."""
    import boto3

    from pipeline.aws import REKOGNITION_CONFIG
    from pipeline.detectors.rekognition import RekognitionDetector
    from tests.standins.rekognition import RekognitionStandIn

    with RekognitionStandIn(s3_endpoint_url=moto_endpoint) as standin:
        client = boto3.client("rekognition", endpoint_url=standin.endpoint_url, config=REKOGNITION_CONFIG)
        rt.__dict__["detector"] = RekognitionDetector(client=client, min_confidence=80.0)
        yield rt


def test_an_object_deleted_before_rekognition_reads_it_is_recorded_deleted(s3: Any, rekognition_rt: Runtime) -> None:
    work = upload(s3, rekognition_rt, "meadow.jpg")
    image = ImageRef.from_dict(work["image"])
    s3.delete_object(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)

    result = tasks._run(FakeTask(rekognition_rt.settings), steps.detect, work, give_up=tasks._failed)
    steps.report(rekognition_rt, result)

    row = rekognition_rt.store.get(work["work_id"])
    assert row.outcome == "deleted" and row.error_code in ("404", "NoSuchVersion", "NoSuchKey")


def test_an_unreadable_object_that_still_exists_stays_failed_with_rekognitions_code(
    s3: Any, rekognition_rt: Runtime
) -> None:
    # Given: Rekognition cannot read the object (here: the stand-in is asked about a version it cannot
    # see), while S3 says the object is there
    work = upload(s3, rekognition_rt, "meadow.jpg")
    rekognition_rt.detector._client.meta.events.register(  # a version Rekognition cannot find
        "provide-client-params.rekognition.DetectModerationLabels",
        lambda params, **_: params["Image"]["S3Object"].update(Version="no-such-version"))

    result = tasks._run(FakeTask(rekognition_rt.settings), steps.detect, work, give_up=tasks._failed)
    steps.report(rekognition_rt, result)

    row = rekognition_rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("failed", "InvalidS3ObjectException")
