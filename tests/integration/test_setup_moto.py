"""`pipeline setup` against a real moto server: plan, apply, idempotence, other teams' rules, overlaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline import provision
from pipeline.errors import SetupError
from pipeline.settings import Settings
from tests.conftest import AWS_TEST_ENV
from tests.integration.test_provision_moto import attributes, settings  # noqa: F401 (fixture)

COMMAND_TIMEOUT_SECONDS = 60
#: Operations that change something; a second setup must call none of them.
WRITES = ("CreateQueue", "SetQueueAttributes", "PutBucketNotificationConfiguration", "CreateBucket")


def other_team_queue(sqs: Any, settings: Settings) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=f"thumbs-{settings.events_queue}")["QueueUrl"]
    return url, attributes(sqs, url)["QueueArn"]


@pytest.fixture
def write_calls(s3: Any, sqs: Any) -> Iterator[list[str]]:
    """The names of write operations the s3 and sqs clients make during the test."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        if model.name in WRITES:
            calls.append(model.name)

    for client in (s3, sqs):
        client.meta.events.register("before-call", record)
    yield calls
    for client in (s3, sqs):
        client.meta.events.unregister("before-call", record)


def run_setup(moto_endpoint: str, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline setup ARGS` as an operator runs it, against the moto server."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "PIPELINE_"))}
    env.update({**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": moto_endpoint, "AWS_ENDPOINT_URL_SQS": moto_endpoint,
                "PIPELINE_BUCKET": settings.bucket, "PIPELINE_EVENTS_QUEUE": settings.events_queue,
                "PIPELINE_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
                "PIPELINE_REVIEW_QUEUE": settings.review_queue})
    return subprocess.run([sys.executable, "-m", "pipeline", "setup", *args], env=env, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_SECONDS)


def queue_names(sqs: Any, settings: Settings) -> set[str]:
    wanted = {settings.events_queue, settings.dead_letter_queue, settings.review_queue}
    return {url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", [])} & wanted


def test_first_run_creates_everything_and_the_second_writes_nothing(
    s3: Any, sqs: Any, settings: Settings, write_calls: list[str]
) -> None:
    # Given: only the bucket
    s3.create_bucket(Bucket=settings.bucket)
    # When
    plan = provision.plan_setup(s3, sqs, settings)
    assert [(c.resource, c.action) for c in plan.changes()] == [
        (f"queue {settings.dead_letter_queue}", "create"), (f"queue {settings.events_queue}", "create"),
        (f"queue {settings.review_queue}", "create"), (f"queue policy {settings.events_queue}", "create"),
        (f"bucket notification {settings.bucket}", "create")]
    queues = provision.apply_setup(s3, sqs, plan)
    # Then: queues, redrive, policy and one rule per suffix case
    events = attributes(sqs, queues.events_url)
    dlq_arn = attributes(sqs, queues.dead_letter_url)["QueueArn"]
    assert json.loads(events["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn
    assert events["VisibilityTimeout"] == "120"
    assert attributes(sqs, queues.review_url)["MessageRetentionPeriod"] == "1209600"
    statement, = json.loads(events["Policy"])["Statement"]
    assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{settings.bucket}"}}
    assert statement["Resource"] == queues.events_arn
    rules = s3.get_bucket_notification_configuration(Bucket=settings.bucket)["QueueConfigurations"]
    assert sorted(r["Id"] for r in rules) == sorted(f"moderation-pipeline-{s}" for s in
                                                     ("jpg", "JPG", "jpeg", "JPEG", "png", "PNG"))
    assert {r["QueueArn"] for r in rules} == {queues.events_arn}
    assert write_calls.count("CreateQueue") == 3

    # When: a second run
    write_calls.clear()
    second = provision.plan_setup(s3, sqs, settings)
    assert {c.action for c in second.changes()} == {"unchanged"}
    assert second.up_to_date
    assert provision.apply_setup(s3, sqs, second) == queues
    # Then: not one write call
    assert write_calls == []


def test_an_updated_attribute_is_the_only_change(s3: Any, sqs: Any, settings: Settings) -> None:
    # Given: everything in place, then someone shortens the review queue's retention
    # (not the events queue: moto drops a queue's Policy on any SetQueueAttributes without one)
    s3.create_bucket(Bucket=settings.bucket)
    queues = provision.apply_setup(s3, sqs, provision.plan_setup(s3, sqs, settings))
    sqs.set_queue_attributes(QueueUrl=queues.review_url, Attributes={"MessageRetentionPeriod": "345600"})
    # When
    plan = provision.plan_setup(s3, sqs, settings)
    provision.apply_setup(s3, sqs, plan)
    # Then
    assert [(c.resource, c.action, c.detail) for c in plan.changes() if c.action != "unchanged"] == [
        (f"queue {settings.review_queue}", "update", "MessageRetentionPeriod 345600 -> 1209600")]
    assert attributes(sqs, queues.review_url)["MessageRetentionPeriod"] == "1209600"


def test_dry_run_prints_the_plan_and_changes_nothing(moto_endpoint: str, s3: Any, sqs: Any, settings: Settings) -> None:
    # Given
    s3.create_bucket(Bucket=settings.bucket)
    # When
    done = run_setup(moto_endpoint, settings, "--dry-run")
    # Then
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:5]] == ["create"] * 5
    assert lines[-1] == "dry run: nothing changed"
    assert queue_names(sqs, settings) == set()
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=settings.bucket)


def test_the_command_applies_then_reports_everything_unchanged(
    moto_endpoint: str, s3: Any, sqs: Any, settings: Settings
) -> None:
    s3.create_bucket(Bucket=settings.bucket)
    first = run_setup(moto_endpoint, settings)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1].startswith("done; events queue http")
    assert queue_names(sqs, settings) == {settings.events_queue, settings.dead_letter_queue, settings.review_queue}
    second = run_setup(moto_endpoint, settings)
    assert second.returncode == 0, second.stderr
    assert [line.split()[0] for line in second.stdout.splitlines()[:5]] == ["unchanged"] * 5
    assert second.stdout.splitlines()[-1] == "everything is up to date"


def test_other_teams_rule_and_policy_statement_survive(s3: Any, sqs: Any, settings: Settings) -> None:
    # Given: another team's queue, its notification rule on the bucket and its statement on our queue
    s3.create_bucket(Bucket=settings.bucket)
    other_url, other_arn = other_team_queue(sqs, settings)
    foreign_rule = {"Id": "thumbnails", "QueueArn": other_arn, "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "thumbs/"}]}}}
    s3.put_bucket_notification_configuration(Bucket=settings.bucket,
                                             NotificationConfiguration={"QueueConfigurations": [foreign_rule]})
    events_url = sqs.create_queue(QueueName=settings.events_queue)["QueueUrl"]
    audit = {"Sid": "AuditRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": "sqs:GetQueueAttributes", "Resource": attributes(sqs, events_url)["QueueArn"]}
    sqs.set_queue_attributes(QueueUrl=events_url,
                             Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [audit]})})
    try:
        # When
        plan = provision.plan_setup(s3, sqs, settings)
        changes = {c.resource: c for c in plan.changes()}
        provision.apply_setup(s3, sqs, plan)
        # Then
        assert changes[f"queue policy {settings.events_queue}"].action == "update"
        assert changes[f"bucket notification {settings.bucket}"].detail.endswith("1 other rule(s) kept")
        statements = json.loads(attributes(sqs, events_url)["Policy"])["Statement"]
        assert [s["Sid"] for s in statements] == ["AuditRead", "AllowS3Notifications"]
        assert statements[0] == audit
        rules = {r["Id"]: r for r in s3.get_bucket_notification_configuration(Bucket=settings.bucket)["QueueConfigurations"]}
        assert len(rules) == 7
        assert rules["thumbnails"]["QueueArn"] == other_arn
        assert provision.plan_setup(s3, sqs, settings).up_to_date
    finally:
        sqs.delete_queue(QueueUrl=other_url)


def test_an_overlapping_rule_is_refused_before_anything_is_written(
    moto_endpoint: str, s3: Any, sqs: Any, settings: Settings
) -> None:
    # Given: another team notifies every .jpg under content/: S3 would refuse ours beside it
    s3.create_bucket(Bucket=settings.bucket)
    other_url, other_arn = other_team_queue(sqs, settings)
    overlapping = {"Id": "search-index", "QueueArn": other_arn, "Events": ["s3:ObjectCreated:Put"],
                   "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "content/"},
                                                      {"Name": "suffix", "Value": ".jpg"}]}}}
    s3.put_bucket_notification_configuration(Bucket=settings.bucket,
                                             NotificationConfiguration={"QueueConfigurations": [overlapping]})
    try:
        # When
        with pytest.raises(SetupError) as refused:
            provision.plan_setup(s3, sqs, settings)
        done = run_setup(moto_endpoint, settings)
        # Then
        assert refused.value.error_code == "NotificationOverlap"
        assert "rule 'search-index' (prefix 'content/', suffix '.jpg', events s3:ObjectCreated:Put) overlaps our " \
               "rule 'moderation-pipeline-jpg' (prefix 'content/images/', suffix '.jpg')" in str(refused.value)
        assert done.returncode == 1
        assert "S3 would refuse the whole configuration" in done.stderr
        assert "Traceback" not in done.stderr
        assert queue_names(sqs, settings) == set()
        stored = s3.get_bucket_notification_configuration(Bucket=settings.bucket)["QueueConfigurations"]
        assert [r["Id"] for r in stored] == ["search-index"]
    finally:
        sqs.delete_queue(QueueUrl=other_url)


def test_a_missing_bucket_is_a_clear_error(moto_endpoint: str, sqs: Any, settings: Settings) -> None:
    done = run_setup(moto_endpoint, settings)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: setup stopped: bucket {settings.bucket} (PIPELINE_BUCKET) does not exist; "
                                   "create it first (pipeline setup never creates buckets)")
    assert queue_names(sqs, settings) == set()
