"""Create or update, idempotently, the AWS resources the pipeline uses: plan first, then apply.

``pipeline setup`` (against AWS or the moto server) and ``pipeline up --local`` both come here.
Each resource is read and compared with what the pipeline needs. The plan lists every resource
as create, update or unchanged; applying it writes only what differs, so a second run writes
nothing:

- the dead-letter queue, the events queue (redrive policy, visibility timeout), the review queue;
- the events queue's policy letting the bucket send to it: our statement (Sid
  ``AllowS3Notifications``) is added or replaced, every other statement is kept;
- the bucket notification. PutBucketNotificationConfiguration replaces the whole configuration,
  so it is read, merged and written back: other teams' rules survive. S3 matches suffixes
  case-sensitively, so there is one rule per suffix case (``.jpg`` and ``.JPG``); mixed case such
  as ``.Jpg`` is not notified. S3 refuses a whole configuration in which two rules share an event
  type with overlapping filters: such a rule is found while planning, before anything is written.

Buckets are never created here, except by ``ensure_bucket`` for ``up --local``'s moto server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from pipeline.awserrors import classify_client_error, translated_aws_errors
from pipeline.errors import SetupError
from pipeline.settings import Settings

#: Our notification rules' ids start with this, so a re-run replaces only ours.
RULE_ID_PREFIX = "moderation-pipeline-"
#: Event types the bridge understands.
NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectRestore:Completed")
#: Receives before SQS moves a message to the dead-letter queue.
MAX_RECEIVE_COUNT = 5
#: Events queue visibility timeout, seconds: a bridge hands a message off in well under this.
EVENTS_VISIBILITY_TIMEOUT = 120
#: SQS's longest retention (14 days), for every queue.
MAX_RETENTION_SECONDS = 14 * 24 * 3600
#: Sid of our statement in the events queue's policy; statements with other Sids are kept.
POLICY_SID = "AllowS3Notifications"
#: The kinds of destination a bucket notification rule can have; all of them count for overlaps.
RULE_LISTS = ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations")
#: Stands in for the ARN of a queue the plan has yet to create.
NOT_YET_CREATED = "(created by this run)"
#: SQS error codes for a queue that does not exist.
_MISSING_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"


@dataclass(frozen=True)
class Queues:
    """URLs (and the events queue's ARN) of the queues the pipeline uses."""

    events_url: str
    events_arn: str
    dead_letter_url: str
    review_url: str


@dataclass(frozen=True)
class Change:
    """One line of a plan: what happens to one resource."""

    resource: str
    action: str
    detail: str = ""

    def line(self) -> str:
        """``update     queue moderation-events: VisibilityTimeout 30 -> 120``."""
        return f"{self.action:<10} {self.resource}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class QueueState:
    """A queue as read, and the attributes the pipeline needs on it."""

    name: str
    #: None: the queue does not exist yet.
    url: str | None
    current: Mapping[str, str]
    desired: Mapping[str, str]

    @property
    def arn(self) -> str:
        return self.current.get("QueueArn", NOT_YET_CREATED)

    def differences(self) -> dict[str, str]:
        """The desired attributes whose current value differs (all of them for a new queue)."""
        return {name: value for name, value in self.desired.items()
                if _comparable(name, self.current.get(name)) != _comparable(name, value)}

    def change(self) -> Change:
        if self.url is None:
            return Change(f"queue {self.name}", CREATE, _attribute_list(self.desired))
        diff = self.differences()
        if not diff:
            return Change(f"queue {self.name}", UNCHANGED)
        shown = "; ".join(f"{name} {self.current.get(name, '(unset)')} -> {value}" for name, value in diff.items())
        return Change(f"queue {self.name}", UPDATE, shown)


@dataclass(frozen=True)
class SetupPlan:
    """Everything ``pipeline setup`` read, and what it would change."""

    settings: Settings
    dead_letter: QueueState
    events: QueueState
    review: QueueState
    #: The events queue's policy as read (None: it has none).
    policy: dict[str, Any] | None
    #: The bucket's notification configuration as read.
    notification: dict[str, Any]

    def changes(self) -> list[Change]:
        """One line per resource, in the order they are applied."""
        policy = merge_policy(self.policy, self.events.arn, self.settings.bucket)
        notification = merge_notifications(self.notification, notification_rules(self.settings, self.events.arn))
        return [
            self.dead_letter.change(),
            self.events.change(),
            self.review.change(),
            _policy_change(self.events.name, self.policy, policy),
            _notification_change(self.settings.bucket, self.notification, notification),
        ]

    @property
    def up_to_date(self) -> bool:
        """True when applying would write nothing."""
        return all(change.action == UNCHANGED for change in self.changes())


# -- plan -------------------------------------------------------------------------------------


def plan_setup(s3: Any, sqs: Any, settings: Settings) -> SetupPlan:
    """Read every resource and compare it with what ``settings`` need; writes nothing.

    Raises SetupError when the bucket is missing or another rule overlaps ours.
    """
    check_bucket(s3, settings.bucket)
    dead_letter, events, review = plan_queues(sqs, settings)
    notification = read_notifications(s3, settings.bucket)
    check_overlaps(notification, notification_rules(settings, events.arn))
    return SetupPlan(settings, dead_letter, events, review, read_policy(events), notification)


def plan_queues(sqs: Any, settings: Settings) -> tuple[QueueState, QueueState, QueueState]:
    """The dead-letter, events and review queues as read, with the attributes each needs."""
    retention = {"MessageRetentionPeriod": str(MAX_RETENTION_SECONDS)}
    dead_letter = read_queue(sqs, settings.dead_letter_queue, retention)
    # The events queue is the buffer a backfill fills: keep its messages as long as SQS allows.
    events = read_queue(sqs, settings.events_queue, {
        "VisibilityTimeout": str(EVENTS_VISIBILITY_TIMEOUT), "RedrivePolicy": redrive_policy(dead_letter.arn), **retention})
    return dead_letter, events, read_queue(sqs, settings.review_queue, retention)


def read_queue(sqs: Any, name_or_url: str, desired: Mapping[str, str]) -> QueueState:
    """A queue's attributes, or an empty state when it does not exist."""
    name = name_or_url.rstrip("/").rsplit("/", 1)[-1]
    try:
        url = name_or_url if "://" in name_or_url else sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING_QUEUE:
            return QueueState(name, None, {}, dict(desired))
        raise classify_client_error(exc) from exc
    return QueueState(name, url, attributes, dict(desired))


def read_policy(queue: QueueState) -> dict[str, Any] | None:
    """The queue's access policy, parsed; None when it has none."""
    text = queue.current.get("Policy")
    return json.loads(text) if text else None


def check_bucket(s3: Any, bucket: str) -> None:
    """SetupError naming PIPELINE_BUCKET when the bucket is missing or out of reach."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            raise SetupError(f"bucket {bucket} (PIPELINE_BUCKET) does not exist; create it first "
                             "(pipeline setup never creates buckets)", code="NoSuchBucket") from None
        if status == 403:
            raise SetupError(f"bucket {bucket} (PIPELINE_BUCKET): access denied to these credentials",
                             code="AccessDenied") from None
        raise classify_client_error(exc) from exc


def read_notifications(s3: Any, bucket: str) -> dict[str, Any]:
    """The bucket's notification configuration, without the response metadata."""
    with translated_aws_errors():
        existing = s3.get_bucket_notification_configuration(Bucket=bucket)
    return {k: v for k, v in existing.items() if k != "ResponseMetadata"}


# -- apply ------------------------------------------------------------------------------------


def apply_setup(s3: Any, sqs: Any, plan: SetupPlan) -> Queues:
    """Write what ``plan`` found different, and nothing else; returns the queues."""
    queues = apply_queues(sqs, plan.dead_letter, plan.events, plan.review)
    apply_policy(sqs, queues, plan.settings.bucket, plan.policy)
    apply_notifications(s3, plan.settings, queues.events_arn, plan.notification)
    return queues


def apply_queues(sqs: Any, dead_letter: QueueState, events: QueueState, review: QueueState) -> Queues:
    """Create or update the three queues; the events queue's redrive points at the real DLQ ARN."""
    dead_letter_url, dead_letter_arn = _apply_queue(sqs, dead_letter)
    events = replace(events, desired={**events.desired, "RedrivePolicy": redrive_policy(dead_letter_arn)})
    events_url, events_arn = _apply_queue(sqs, events)
    review_url, _ = _apply_queue(sqs, review)
    return Queues(events_url, events_arn, dead_letter_url, review_url)


def _apply_queue(sqs: Any, queue: QueueState) -> tuple[str, str]:
    """(url, arn) of ``queue`` after creating it or setting the attributes that differ."""
    with translated_aws_errors():
        if queue.url is None:
            url = sqs.create_queue(QueueName=queue.name, Attributes=dict(queue.desired))["QueueUrl"]
            return url, _arn(sqs, url)
        diff = queue.differences()
        if diff:
            sqs.set_queue_attributes(QueueUrl=queue.url, Attributes=diff)
    return queue.url, queue.arn


def apply_policy(sqs: Any, queues: Queues, bucket: str, current: dict[str, Any] | None) -> None:
    """Write the merged queue policy when it differs from ``current``."""
    merged = merge_policy(current, queues.events_arn, bucket)
    if merged != current:
        with translated_aws_errors():
            sqs.set_queue_attributes(QueueUrl=queues.events_url, Attributes={"Policy": json.dumps(merged)})


def apply_notifications(s3: Any, settings: Settings, queue_arn: str, current: dict[str, Any]) -> dict[str, Any]:
    """Write the merged notification configuration when it differs from ``current``; returns it."""
    ours = notification_rules(settings, queue_arn)
    check_overlaps(current, ours)
    merged = merge_notifications(current, ours)
    if not same_notifications(current, merged):
        with translated_aws_errors():
            s3.put_bucket_notification_configuration(Bucket=settings.bucket, NotificationConfiguration=merged)
    return merged


# -- the steps `up --local` and the tests call one by one ---------------------------------------


def ensure_queues(sqs: Any, settings: Settings) -> Queues:
    """Create or update the events queue with its dead-letter queue and redrive policy, and the review queue."""
    return apply_queues(sqs, *plan_queues(sqs, settings))


def allow_bucket_to_send(sqs: Any, queues: Queues, bucket: str) -> None:
    """Add (or keep) the queue policy statement that lets the bucket's notifications reach the events queue."""
    with translated_aws_errors():
        attributes = sqs.get_queue_attributes(QueueUrl=queues.events_url, AttributeNames=["Policy"])
    text = attributes.get("Attributes", {}).get("Policy")
    apply_policy(sqs, queues, bucket, json.loads(text) if text else None)


def ensure_bucket(s3: Any, bucket: str) -> None:
    """Create the bucket unless it exists (the local stack's moto server only)."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)


def ensure_notifications(s3: Any, settings: Settings, queue_arn: str) -> dict[str, Any]:
    """Read, merge and write back the bucket notification; returns the configuration now in place."""
    return apply_notifications(s3, settings, queue_arn, read_notifications(s3, settings.bucket))


# -- pure: policies and rules -------------------------------------------------------------------


def redrive_policy(dead_letter_arn: str) -> str:
    """The events queue's RedrivePolicy attribute."""
    return json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})


def policy_statement(queue_arn: str, bucket: str) -> dict[str, Any]:
    """Our statement: S3 may send the bucket's notifications to the events queue."""
    return {
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
    }


def merge_policy(current: Mapping[str, Any] | None, queue_arn: str, bucket: str) -> dict[str, Any]:
    """``current`` with our statement added or replaced, every other statement (and field) kept."""
    merged = dict(current or {"Version": "2012-10-17"})
    statements = merged.get("Statement", [])
    others = [s for s in ([statements] if isinstance(statements, dict) else statements) if s.get("Sid") != POLICY_SID]
    merged["Statement"] = others + [policy_statement(queue_arn, bucket)]
    return merged


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
    others = [r for r in merged.get("QueueConfigurations", []) if not _is_ours(r)]
    merged["QueueConfigurations"] = others + ours
    return merged


def same_notifications(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two configurations hold the same rules, whatever their order and filter-name case."""
    return all(sorted(map(_rule_key, a.get(name) or [])) == sorted(map(_rule_key, b.get(name) or []))
               for name in RULE_LISTS)


def check_overlaps(existing: Mapping[str, Any], ours: list[dict[str, Any]]) -> None:
    """SetupError naming every rule of someone else's that S3 would find overlapping one of ours.

    S3 refuses the whole configuration ("Configurations overlap") when two rules share an event
    type and one's prefix starts the other's while one's suffix ends the other's (a missing
    prefix or suffix matches everything).
    """
    others = [rule for name in RULE_LISTS for rule in existing.get(name) or [] if not _is_ours(rule)]
    clashes = [f"rule {other.get('Id', '(no id)')!r} (prefix {_filter(other, 'prefix')!r}, suffix "
               f"{_filter(other, 'suffix')!r}, events {', '.join(other.get('Events', []))}) overlaps our rule "
               f"{rule['Id']!r} (prefix {_filter(rule, 'prefix')!r}, suffix {_filter(rule, 'suffix')!r})"
               for other in others for rule in ours if rules_overlap(other, rule)]
    if clashes:
        raise SetupError(
            "the bucket's notification has a rule that overlaps ours, so S3 would refuse the whole configuration "
            "(\"Configurations overlap\"): " + "; ".join(clashes) + ". Narrow that rule's prefix or suffix, or change "
            "PIPELINE_PREFIX; nothing was written", code="NotificationOverlap")


def rules_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when S3 would take rules ``a`` and ``b`` as overlapping (see :func:`check_overlaps`)."""
    if not any(_events_overlap(x, y) for x in a.get("Events", []) for y in b.get("Events", [])):
        return False
    prefix_a, prefix_b = _filter(a, "prefix"), _filter(b, "prefix")
    suffix_a, suffix_b = _filter(a, "suffix"), _filter(b, "suffix")
    return ((prefix_a.startswith(prefix_b) or prefix_b.startswith(prefix_a))
            and (suffix_a.endswith(suffix_b) or suffix_b.endswith(suffix_a)))


def _events_overlap(a: str, b: str) -> bool:
    """``s3:ObjectCreated:*`` overlaps ``s3:ObjectCreated:Put``; different families never overlap."""
    family_a, _, leaf_a = a.rpartition(":")
    family_b, _, leaf_b = b.rpartition(":")
    if a == b:
        return True
    return family_a == family_b and family_a.count(":") == 1 and "*" in (leaf_a, leaf_b)


def _filter(rule: Mapping[str, Any], name: str) -> str:
    """A rule's prefix or suffix filter value ('' when it has none); AWS answers ``Prefix``, we write ``prefix``."""
    for item in rule.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        if item.get("Name", "").lower() == name:
            return str(item.get("Value", ""))
    return ""


def _rule_key(rule: Mapping[str, Any]) -> str:
    """A rule in a form that compares equal however S3 echoes it back."""
    destination = {k: v for k, v in rule.items() if k.endswith("Arn")}
    return json.dumps([rule.get("Id"), destination, sorted(rule.get("Events", [])),
                       _filter(rule, "prefix"), _filter(rule, "suffix")], sort_keys=True)


def _is_ours(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("Id", "")).startswith(RULE_ID_PREFIX)


def _policy_change(queue: str, current: dict[str, Any] | None, merged: dict[str, Any]) -> Change:
    resource = f"queue policy {queue}"
    if current is None:
        return Change(resource, CREATE, f"statement {POLICY_SID}: s3.amazonaws.com may send")
    if current == merged:
        return Change(resource, UNCHANGED)
    kept = len(merged["Statement"]) - 1
    return Change(resource, UPDATE, f"statement {POLICY_SID} added or replaced, {kept} other statement(s) kept")


def _notification_change(bucket: str, current: dict[str, Any], merged: dict[str, Any]) -> Change:
    resource = f"bucket notification {bucket}"
    if same_notifications(current, merged):
        return Change(resource, UNCHANGED)
    ours = [r for r in merged["QueueConfigurations"] if _is_ours(r)]
    kept = sum(len(merged.get(name) or []) for name in RULE_LISTS) - len(ours)
    action = UPDATE if any(current.get(name) for name in RULE_LISTS) else CREATE
    suffixes = ", ".join(_filter(r, "suffix") for r in ours)
    return Change(resource, action, f"{len(ours)} rule(s) of ours ({suffixes}), {kept} other rule(s) kept")


def _comparable(name: str, value: str | None) -> Any:
    """An attribute value as compared: a RedrivePolicy parsed (SQS echoes maxReceiveCount as a number)."""
    if name == "RedrivePolicy" and value:
        policy = json.loads(value)
        return policy.get("deadLetterTargetArn"), str(policy.get("maxReceiveCount"))
    return value


def _attribute_list(attributes: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in attributes.items())


def _suffix_cases(suffixes: Iterable[str]) -> list[str]:
    cases: list[str] = []
    for suffix in suffixes:
        for variant in (suffix.lower(), suffix.upper()):
            if variant not in cases:
                cases.append(variant)
    return cases


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
