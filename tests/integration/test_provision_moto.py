"""Provisioning against a real moto server: queues, redrive, and bucket notifications reaching SQS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline import provision
from pipeline.events import KeyFilter, ObjectEvent, parse_body
from pipeline.settings import Settings
from tests.conftest import delete_bucket

# s3 and sqs, clients for the session's moto server, come from tests/conftest.py.

#: Parse every key: the point is what S3 sent, not what the bridge would keep.
ALL_KEYS = KeyFilter(prefix="", suffixes=())


@pytest.fixture
def settings(s3: Any, sqs: Any) -> Iterator[Settings]:
    """Settings naming a bucket and queues no other test uses; all removed afterwards."""
    run = uuid.uuid4().hex[:10]
    settings = Settings(
        bucket=f"provision-{run}",
        events_queue=f"events-{run}",
        dead_letter_queue=f"events-dlq-{run}",
        review_queue=f"review-{run}",
    )
    yield settings
    for url in sqs.list_queues(QueueNamePrefix="").get("QueueUrls", []):
        if url.endswith(run):
            sqs.delete_queue(QueueUrl=url)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if settings.bucket in buckets:
        delete_bucket(s3, settings.bucket)


def attributes(sqs: Any, url: str) -> dict[str, str]:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def our_queue_urls(sqs: Any, settings: Settings) -> list[str]:
    names = (settings.events_queue, settings.dead_letter_queue, settings.review_queue)
    return sorted(u for u in sqs.list_queues().get("QueueUrls", []) if u.rsplit("/", 1)[-1] in names)


def test_ensure_queues_creates_the_dead_letter_queue_and_redrive_policy(sqs: Any, settings: Settings) -> None:
    # When
    queues = provision.ensure_queues(sqs, settings)
    # Then
    dlq = attributes(sqs, queues.dead_letter_url)
    events = attributes(sqs, queues.events_url)
    redrive = json.loads(events["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == provision.MAX_RECEIVE_COUNT == 5
    assert events["VisibilityTimeout"] == str(provision.EVENTS_VISIBILITY_TIMEOUT)
    assert events["QueueArn"] == queues.events_arn
    assert dlq["MessageRetentionPeriod"] == str(provision.MAX_RETENTION_SECONDS) == "1209600"
    assert attributes(sqs, queues.review_url)["MessageRetentionPeriod"] == "1209600"
    assert queues.events_url.endswith("/" + settings.events_queue)
    assert queues.dead_letter_url.endswith("/" + settings.dead_letter_queue)
    assert queues.review_url.endswith("/" + settings.review_queue)


def test_ensure_queues_is_idempotent(sqs: Any, settings: Settings) -> None:
    # Given
    first = provision.ensure_queues(sqs, settings)
    urls = our_queue_urls(sqs, settings)
    # When
    second = provision.ensure_queues(sqs, settings)
    # Then
    assert second == first
    assert our_queue_urls(sqs, settings) == urls
    assert len(urls) == 3
    assert int(json.loads(attributes(sqs, second.events_url)["RedrivePolicy"])["maxReceiveCount"]) == 5


def test_ensure_bucket_is_idempotent(s3: Any, settings: Settings) -> None:
    provision.ensure_bucket(s3, settings.bucket)
    provision.ensure_bucket(s3, settings.bucket)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names.count(settings.bucket) == 1


def test_ensure_notifications_keeps_a_foreign_rule(s3: Any, sqs: Any, settings: Settings) -> None:
    # Given: another team already notifies its own queue from the bucket
    provision.ensure_bucket(s3, settings.bucket)
    queues = provision.ensure_queues(sqs, settings)
    other_url = sqs.create_queue(QueueName=f"thumbnails-{settings.events_queue}")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    foreign = {
        "Id": "thumbnails",
        "QueueArn": other_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "thumbs/"}]}},
    }
    s3.put_bucket_notification_configuration(
        Bucket=settings.bucket, NotificationConfiguration={"QueueConfigurations": [foreign]}
    )
    try:
        # When: run twice, as `up --local` does on every start
        provision.ensure_notifications(s3, settings, queues.events_arn)
        provision.ensure_notifications(s3, settings, queues.events_arn)
        # Then
        stored = s3.get_bucket_notification_configuration(Bucket=settings.bucket)["QueueConfigurations"]
        by_id = {rule["Id"]: rule for rule in stored}
        assert len(stored) == 7
        assert by_id["thumbnails"]["QueueArn"] == other_arn
        assert by_id["thumbnails"]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "thumbs/"}]
        ours = [rule for rule in stored if rule["Id"].startswith(provision.RULE_ID_PREFIX)]
        assert sorted(rule["Id"] for rule in ours) == sorted(
            rule["Id"] for rule in provision.notification_rules(settings, queues.events_arn)
        )
        assert {rule["QueueArn"] for rule in ours} == {queues.events_arn}
    finally:
        sqs.delete_queue(QueueUrl=other_url)


@pytest.fixture
def notified(s3: Any, sqs: Any, settings: Settings) -> provision.Queues:
    """The bucket, queues and notifications as ``up --local`` provisions them."""
    provision.ensure_bucket(s3, settings.bucket)
    queues = provision.ensure_queues(sqs, settings)
    provision.allow_bucket_to_send(sqs, queues, settings.bucket)
    provision.ensure_notifications(s3, settings, queues.events_arn)
    return queues


def drain_events(sqs: Any, url: str) -> list[ObjectEvent]:
    """Every object event on the queue, until a receive comes back empty (s3:TestEvent parses to [])."""
    events: list[ObjectEvent] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return events
        for message in messages:
            events.extend(parse_body(message["Body"], ALL_KEYS))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_upload_under_the_prefix_with_upper_case_suffix_is_notified(
    s3: Any, sqs: Any, settings: Settings, notified: provision.Queues
) -> None:
    # Given
    key = f"{settings.prefix}holiday/IMG_0001.JPG"
    # When
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"jpeg bytes")
    # Then
    events = drain_events(sqs, notified.events_url)
    assert [(e.bucket, e.key, e.kind) for e in events] == [(settings.bucket, key, "created")]
    assert events[0].event_name == "ObjectCreated:Put"


@pytest.mark.parametrize(
    "key",
    [
        "elsewhere/holiday/IMG_0002.JPG",  # outside the prefix
        "Content/Images/IMG_0003.jpg",  # S3 prefixes are case-sensitive
        "content/images/IMG_0004.Jpg",  # mixed case: no rule (see pipeline.provision)
        "content/images/notes.txt",  # not an image suffix
    ],
)
def test_upload_outside_the_rules_is_not_notified(
    s3: Any, sqs: Any, settings: Settings, notified: provision.Queues, key: str
) -> None:
    # Given: an upload the rules exclude, then one they include (so the queue is known to work)
    included = f"{settings.prefix}IMG_0005.png"
    # When
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"bytes")
    s3.put_object(Bucket=settings.bucket, Key=included, Body=b"png bytes")
    # Then
    assert [e.key for e in drain_events(sqs, notified.events_url)] == [included]


def test_delete_under_the_prefix_is_notified(s3: Any, sqs: Any, settings: Settings, notified: provision.Queues) -> None:
    key = f"{settings.prefix}gone.jpeg"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"bytes")
    s3.delete_object(Bucket=settings.bucket, Key=key)
    assert sorted((e.key, e.kind) for e in drain_events(sqs, notified.events_url)) == [
        (key, "created"),
        (key, "removed"),
    ]
