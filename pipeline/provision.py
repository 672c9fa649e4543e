"""Create or update, idempotently, the AWS resources the pipeline uses.

Used by ``pipeline up --local`` against the moto server. The bucket notification is read, merged
and written back: PutBucketNotificationConfiguration replaces the whole configuration, so other
teams' rules must survive. S3 matches suffixes case-sensitively, so there is one rule per suffix
case (``.jpg`` and ``.JPG``); mixed case such as ``.Jpg`` is not notified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.settings import Settings

#: Our notification rules' ids start with this, so a re-run replaces only ours.
RULE_ID_PREFIX = "moderation-pipeline-"
#: Event types the bridge understands.
NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectRestore:Completed")
#: Receives before SQS moves a message to the dead-letter queue.
MAX_RECEIVE_COUNT = 5
#: Events queue visibility timeout, seconds: a bridge hands a message off in well under this.
EVENTS_VISIBILITY_TIMEOUT = 120
#: SQS's longest retention (14 days), for the dead-letter and review queues.
MAX_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class Queues:
    """URLs (and the events queue's ARN) of the queues the pipeline uses."""

    events_url: str
    events_arn: str
    dead_letter_url: str
    review_url: str


def ensure_queues(sqs: Any, settings: Settings) -> Queues:
    """Create the events queue with its dead-letter queue and redrive policy, and the review queue."""
    dlq_url = sqs.create_queue(QueueName=settings.dead_letter_queue,
                               Attributes={"MessageRetentionPeriod": str(MAX_RETENTION_SECONDS)})["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    events_url = sqs.create_queue(QueueName=settings.events_queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=events_url, Attributes={
        "RedrivePolicy": redrive, "VisibilityTimeout": str(EVENTS_VISIBILITY_TIMEOUT)})
    review_url = sqs.create_queue(QueueName=settings.review_queue,
                                  Attributes={"MessageRetentionPeriod": str(MAX_RETENTION_SECONDS)})["QueueUrl"]
    return Queues(events_url, _arn(sqs, events_url), dlq_url, review_url)


def allow_bucket_to_send(sqs: Any, queues: Queues, bucket: str) -> None:
    """The queue policy that lets the bucket's notifications reach the events queue."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowS3Notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queues.events_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
        }],
    }
    sqs.set_queue_attributes(QueueUrl=queues.events_url, Attributes={"Policy": json.dumps(policy)})


def ensure_bucket(s3: Any, bucket: str) -> None:
    """Create the bucket unless it exists."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)


def notification_rules(settings: Settings, queue_arn: str) -> list[dict[str, Any]]:
    """One queue rule per suffix case, all with the configured prefix."""
    rules = []
    for suffix in _suffix_cases(settings.suffixes):
        filters = [{"Name": "prefix", "Value": settings.prefix}, {"Name": "suffix", "Value": suffix}]
        rules.append({
            "Id": f"{RULE_ID_PREFIX}{suffix.lstrip('.')}",
            "QueueArn": queue_arn,
            "Events": list(NOTIFIED_EVENTS),
            "Filter": {"Key": {"FilterRules": filters}},
        })
    return rules


def merge_notifications(existing: dict[str, Any], ours: list[dict[str, Any]]) -> dict[str, Any]:
    """The bucket's notification configuration with our rules replaced and everyone else's kept."""
    merged = {k: v for k, v in existing.items() if k != "ResponseMetadata"}
    others = [r for r in merged.get("QueueConfigurations", []) if not r.get("Id", "").startswith(RULE_ID_PREFIX)]
    merged["QueueConfigurations"] = others + ours
    return merged


def ensure_notifications(s3: Any, settings: Settings, queue_arn: str) -> dict[str, Any]:
    """Read, merge and write back the bucket notification; returns what was written."""
    existing = s3.get_bucket_notification_configuration(Bucket=settings.bucket)
    merged = merge_notifications(existing, notification_rules(settings, queue_arn))
    s3.put_bucket_notification_configuration(Bucket=settings.bucket, NotificationConfiguration=merged)
    return merged


def _suffix_cases(suffixes: tuple[str, ...]) -> list[str]:
    cases: list[str] = []
    for suffix in suffixes:
        for variant in (suffix.lower(), suffix.upper()):
            if variant not in cases:
                cases.append(variant)
    return cases


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
