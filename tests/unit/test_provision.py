"""notification_rules / merge_notifications: the pure half of provisioning (no services)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeline.errors import SetupError
from pipeline.provision import (
    NOTIFIED_EVENTS,
    RULE_ID_PREFIX,
    check_overlaps,
    merge_notifications,
    notification_rules,
    rules_overlap,
    same_notifications,
)
from pipeline.settings import Settings

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:moderation-events"
PREFIX = "uploads/avatars/"


def rule_filters(rule: dict[str, Any]) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in rule["Filter"]["Key"]["FilterRules"]}


def test_one_rule_per_suffix_case_with_the_prefix() -> None:
    # When
    rules = notification_rules(Settings(prefix=PREFIX), QUEUE_ARN)
    # Then
    assert [rule_filters(rule) for rule in rules] == [
        {"prefix": PREFIX, "suffix": suffix} for suffix in (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG")
    ]
    assert [rule["Id"] for rule in rules] == [
        "moderation-pipeline-jpg",
        "moderation-pipeline-JPG",
        "moderation-pipeline-jpeg",
        "moderation-pipeline-JPEG",
        "moderation-pipeline-png",
        "moderation-pipeline-PNG",
    ]
    for rule in rules:
        assert rule["QueueArn"] == QUEUE_ARN
        assert rule["Events"] == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectRestore:Completed"]
        assert rule["Events"] == list(NOTIFIED_EVENTS)


@pytest.mark.parametrize(
    ("suffixes", "cases"),
    [
        ((".webp",), [".webp", ".WEBP"]),
        ((".JPG", ".jpg"), [".jpg", ".JPG"]),  # one rule per case, never a duplicate
        ((".123",), [".123"]),  # no letters: lower and upper are the same suffix
    ],
)
def test_suffix_cases(suffixes: tuple[str, ...], cases: list[str]) -> None:
    rules = notification_rules(Settings(suffixes=suffixes), QUEUE_ARN)
    assert [rule_filters(rule)["suffix"] for rule in rules] == cases
    assert len({rule["Id"] for rule in rules}) == len(rules)


def foreign_configuration() -> dict[str, Any]:
    """What GetBucketNotificationConfiguration returns for a bucket other teams use too."""
    return {
        "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "abc"},
        "QueueConfigurations": [
            {
                "Id": "thumbnails",
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:thumbnails",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "thumbs/"}]}},
            },
            # An old rule of ours (a suffix no longer configured): replaced.
            {
                "Id": f"{RULE_ID_PREFIX}gif",
                "QueueArn": QUEUE_ARN,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".gif"}]}},
            },
        ],
        "TopicConfigurations": [
            {"Id": "audit", "TopicArn": "arn:aws:sns:us-east-1:123456789012:audit", "Events": ["s3:ObjectRemoved:*"]},
        ],
        "LambdaFunctionConfigurations": [
            {
                "Id": "resize",
                "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:resize",
                "Events": ["s3:ObjectCreated:Put"],
            },
        ],
        "EventBridgeConfiguration": {},
    }


def test_merge_keeps_other_teams_configurations_and_replaces_ours() -> None:
    # Given
    existing = foreign_configuration()
    ours = notification_rules(Settings(), QUEUE_ARN)
    # When
    merged = merge_notifications(existing, ours)
    # Then
    assert "ResponseMetadata" not in merged
    assert merged["QueueConfigurations"] == [existing["QueueConfigurations"][0], *ours]
    assert merged["TopicConfigurations"] == existing["TopicConfigurations"]
    assert merged["LambdaFunctionConfigurations"] == existing["LambdaFunctionConfigurations"]
    assert merged["EventBridgeConfiguration"] == {}


def test_merge_does_not_mutate_the_existing_configuration() -> None:
    existing = foreign_configuration()
    snapshot = copy.deepcopy(existing)
    merge_notifications(existing, notification_rules(Settings(), QUEUE_ARN))
    assert existing == snapshot


def test_merge_is_idempotent() -> None:
    ours = notification_rules(Settings(), QUEUE_ARN)
    once = merge_notifications(foreign_configuration(), ours)
    twice = merge_notifications(once, ours)
    assert twice == once
    assert [rule["Id"] for rule in twice["QueueConfigurations"]].count("moderation-pipeline-jpg") == 1


def test_merge_into_an_empty_configuration() -> None:
    ours = notification_rules(Settings(), QUEUE_ARN)
    assert merge_notifications({"ResponseMetadata": {}}, ours) == {"QueueConfigurations": ours}


def rule(prefix: str = "", suffix: str = "", events: tuple[str, ...] = ("s3:ObjectCreated:*",)) -> dict[str, Any]:
    filters = [{"Name": name, "Value": value} for name, value in (("Prefix", prefix), ("Suffix", suffix)) if value]
    return {"Id": "other", "Events": list(events), "Filter": {"Key": {"FilterRules": filters}}}


@pytest.mark.parametrize(
    ("other", "overlaps"),
    [
        (rule(), True),  # no filter at all: everything
        (rule("content/"), True),  # a shorter prefix, any suffix
        (rule("content/images/holiday/", ".jpg"), True),  # a longer prefix, the same suffix
        (rule("", "g"), True),  # ".jpg" ends with "g"
        (rule("content/images/", ".gif"), False),  # same prefix, suffixes apart
        (rule("thumbs/", ".jpg"), False),  # prefixes apart
        (rule("content/images/", ".jpg", ("s3:ObjectCreated:Put",)), True),  # Put is in ObjectCreated:*
        (rule("content/images/", ".jpg", ("s3:ObjectTagging:*",)), False),  # no shared event type
        (rule("content/images/", ".jpg", ("s3:ObjectRestore:*",)), True),  # Restore:Completed is in it
    ],
)
def test_rules_overlap_as_s3_judges_them(other: dict[str, Any], overlaps: bool) -> None:
    ours = notification_rules(Settings(suffixes=(".jpg",)), QUEUE_ARN)[0]
    assert rules_overlap(other, ours) is overlaps
    assert rules_overlap(ours, other) is overlaps


def test_check_overlaps_ignores_our_own_old_rules() -> None:
    old_ours = {**rule("content/", ".jpg"), "Id": f"{RULE_ID_PREFIX}jpg"}
    check_overlaps({"QueueConfigurations": [old_ours]}, notification_rules(Settings(), QUEUE_ARN))


def test_check_overlaps_names_the_rule_of_any_destination_kind() -> None:
    lambda_rule = {**rule("content/"), "Id": "resize", "LambdaFunctionArn": "arn:aws:lambda:us-east-1:1:function:r"}
    with pytest.raises(SetupError, match="rule 'resize' \\(prefix 'content/', suffix ''"):
        check_overlaps({"LambdaFunctionConfigurations": [lambda_rule]}, notification_rules(Settings(), QUEUE_ARN))


def test_same_notifications_ignores_order_and_filter_name_case() -> None:
    ours = notification_rules(Settings(), QUEUE_ARN)
    echoed = [{**r, "Filter": {"Key": {"FilterRules": [{"Name": f["Name"].capitalize(), "Value": f["Value"]}
                                                        for f in r["Filter"]["Key"]["FilterRules"]]}}}
              for r in reversed(ours)]
    assert same_notifications({"QueueConfigurations": ours}, {"QueueConfigurations": echoed})
    assert not same_notifications({"QueueConfigurations": ours}, {"QueueConfigurations": ours[1:]})
