"""The IAM and bucket policies in deploy/: rendered with example values, linted by parliament, and
checked statement by statement against the settings and the AWS calls each process makes."""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipeline.monitoring.snapshot import QueueUrls, sqs_queues
from pipeline.settings import DEFAULT_TAG_KEY, DEFAULT_TAG_VALUE, Settings
from pipeline.tagplan import STATUS_CLEAN

with warnings.catch_warnings():  # parliament imports pkg_resources, which warns that it is deprecated
    warnings.simplefilter("ignore")
    from parliament import analyze_policy_string

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PIPELINE_ROLE = "arn:aws:iam::123456789012:role/moderation-pipeline"
MODERATOR_ROLE = "arn:aws:iam::123456789012:role/moderators"
EXAMPLE = {
    "BUCKET": "example-uploads",
    "PREFIX": "content/images/",
    "ACCOUNT_ID": "123456789012",
    "REGION": "eu-west-1",
    "EVENTS_QUEUE": "moderation-events",
    "DEAD_LETTER_QUEUE": "moderation-events-dlq",
    "REVIEW_QUEUE": "moderation-review",
    "PIPELINE_ROLE_ARN": PIPELINE_ROLE,
    "MODERATOR_ROLE_ARN": MODERATOR_ROLE,
    "STATUS_TAG_KEY": "ModerationStatus",
}
POLICIES = sorted(path.relative_to(DEPLOY).as_posix() for path in DEPLOY.glob("*/*.json"))
#: Findings README's "Access control" justifies: `pipeline setup` writes the events queue's policy
#: (so the bucket may send to it), which parliament rightly calls permissions management.
ACCEPTED_FINDINGS = {"iam/operator.json": {("PERMISSIONS_MANAGEMENT_ACTIONS", ("sqs:createqueue", "sqs:setqueueattributes"))}}
OBJECTS = "arn:aws:s3:::example-uploads/content/images/*"
SQS = "arn:aws:sqs:eu-west-1:123456789012:"
READ = {"s3:GetObject", "s3:GetObjectVersion"}
TAG_CHANGES = {"s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"}


def render(name: str) -> str:
    """The policy file with every ${PLACEHOLDER} replaced (a placeholder without a value raises KeyError)."""
    return string.Template((DEPLOY / name).read_text()).substitute(EXAMPLE)


def statements(name: str) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in json.loads(render(name))["Statement"]}


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def findings(text: str) -> set[tuple[str, tuple[str, ...]]]:
    policy = analyze_policy_string(text, include_community_auditors=True)
    return {(f.issue, tuple(sorted(f.location.get("actions", ())))) for f in policy.findings}


def test_every_policy_is_there() -> None:
    assert POLICIES == ["bucket-policy/deny-blocked.json", "bucket-policy/fail-closed.json",
                        "iam/bridge.json", "iam/operator.json", "iam/worker.json"]


@pytest.mark.parametrize("name", POLICIES)
def test_parliament_finds_nothing_unaccepted(name: str) -> None:
    assert findings(render(name)) == ACCEPTED_FINDINGS.get(name, set())


def test_parliament_does_find_a_broken_policy() -> None:
    # The linter is really looking: a misspelt action and a resource of the wrong service are findings.
    broken = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObjects", "Resource": OBJECTS},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": OBJECTS},
    ]}
    issues = {issue for issue, _ in findings(json.dumps(broken))}
    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues


@pytest.mark.parametrize("name", ["bucket-policy/deny-blocked.json", "bucket-policy/fail-closed.json"])
def test_blocked_images_are_denied_to_all_but_the_pipeline_and_moderators(name: str) -> None:
    deny = statements(name)["DenyReadingBlockedImages"]
    assert (deny["Effect"], deny["Principal"], actions(deny)) == ("Deny", "*", READ)
    assert deny["Resource"] == "arn:aws:s3:::example-uploads/*"
    assert deny["Condition"] == {
        "StringEquals": {f"s3:ExistingObjectTag/{DEFAULT_TAG_KEY}": DEFAULT_TAG_VALUE},
        "ArnNotEquals": {"aws:PrincipalArn": [PIPELINE_ROLE, MODERATOR_ROLE]},
    }
    assert "NotPrincipal" not in deny


@pytest.mark.parametrize("name", ["bucket-policy/deny-blocked.json", "bucket-policy/fail-closed.json"])
def test_only_the_pipeline_and_moderators_may_change_tags(name: str) -> None:
    deny = statements(name)["DenyTagChangesByAnyoneElse"]
    assert (deny["Effect"], deny["Principal"], actions(deny), deny["Resource"]) == ("Deny", "*", TAG_CHANGES, OBJECTS)
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [PIPELINE_ROLE, MODERATOR_ROLE]}}


def test_fail_closed_serves_only_objects_whose_status_is_clean() -> None:
    deny = statements("bucket-policy/fail-closed.json")["ServeOnlyImagesJudgedClean"]
    assert (deny["Effect"], deny["Principal"], actions(deny), deny["Resource"]) == ("Deny", "*", READ, OBJECTS)
    # A negated operator matches when the key is missing, so an untagged (unjudged) object is denied
    # too; an ...IfExists variant would behave the same, a positive operator in an Allow would not.
    assert deny["Condition"] == {
        "StringNotEquals": {"s3:ExistingObjectTag/ModerationStatus": STATUS_CLEAN},
        "ArnNotEquals": {"aws:PrincipalArn": [PIPELINE_ROLE, MODERATOR_ROLE]},
    }


def test_worker_may_read_and_tag_uploads_detect_and_notify_moderators() -> None:
    worker = statements("iam/worker.json")
    assert {sid: (actions(s), s["Resource"]) for sid, s in worker.items()} == {
        "ReadAndTagUploads": (READ | {"s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging",
                                      "s3:PutObjectVersionTagging"}, OBJECTS),
        # HeadObject of a missing key answers 404 only to a caller allowed to list; else 403.
        "TellDeletedFromDenied": ({"s3:ListBucket"}, "arn:aws:s3:::example-uploads"),
        "DetectModerationLabels": ({"rekognition:DetectModerationLabels"}, "*"),
        "NotifyModerators": ({"sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"}, SQS + "moderation-review"),
    }
    assert all(s["Effect"] == "Allow" for s in worker.values())


def test_bridge_may_consume_events_and_dead_letter_and_read_every_queue_depth() -> None:
    bridge = statements("iam/bridge.json")
    assert {sid: (actions(s), s["Resource"]) for sid, s in bridge.items()} == {
        "ConsumeObjectEvents": ({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"},
                                SQS + "moderation-events"),
        "DeadLetterMalformedMessages": ({"sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"},
                                        SQS + "moderation-events-dlq"),
        # The bridge's /metrics reads every SQS queue's depth (pipeline.monitoring.snapshot.sqs_queues).
        "ReadReviewQueueDepth": ({"sqs:GetQueueUrl", "sqs:GetQueueAttributes"}, SQS + "moderation-review"),
    }


def test_bridge_may_read_the_depth_of_every_queue_its_metrics_export() -> None:
    # Given: the queues pipeline.monitoring.snapshot.sqs_queues reads, under the example names
    settings = Settings().replace(events_queue="moderation-events", dead_letter_queue="moderation-events-dlq",
                                  review_queue="moderation-review")
    read: list[str] = []

    class Recording:  # records the lookups; the depth reads need no AWS here
        def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 (boto3's keyword)
            read.append(QueueName)
            return {"QueueUrl": f"https://sqs.eu-west-1.amazonaws.com/123456789012/{QueueName}"}

        def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict:  # noqa: N803
            return {"Attributes": {"ApproximateNumberOfMessages": "0"}}

    sqs_queues(QueueUrls(Recording()), settings)
    # Then: the bridge's role may look up and read each of them
    allowed = {s["Resource"] for s in statements("iam/bridge.json").values()
               if {"sqs:GetQueueUrl", "sqs:GetQueueAttributes"} <= actions(s)}
    assert {SQS + name for name in read} == allowed and len(read) == 3


def test_operator_may_set_up_backfill_requeue_and_review() -> None:
    operator = statements("iam/operator.json")
    queues = [SQS + name for name in ("moderation-events", "moderation-events-dlq", "moderation-review")]
    assert {sid: (actions(s), s["Resource"]) for sid, s in operator.items()} == {
        "SetUpQueues": ({"sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, queues),
        # setup: HeadBucket (ListBucket) and the notification; backfill: versioning, then
        # ListObjectsV2 or, in a versioned bucket, ListObjectVersions.
        "SetUpBucketNotificationAndBackfill": ({"s3:GetBucketNotification", "s3:PutBucketNotification",
                                                "s3:GetBucketVersioning", "s3:ListBucket", "s3:ListBucketVersions"},
                                               "arn:aws:s3:::example-uploads"),
        "BackfillAndRequeue": ({"sqs:SendMessage"}, SQS + "moderation-events"),
        "RequeueFromDeadLetterQueue": ({"sqs:ReceiveMessage", "sqs:DeleteMessage"}, SQS + "moderation-events-dlq"),
        # approve: an image whose only tag was the block tag is left with none (DeleteObjectTagging).
        "ReviewFlaggedImages": (READ | {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"} | TAG_CHANGES, OBJECTS),
    }
