"""pipeline.requeue.envelope: the requeue message, built, parsed, refused, and seen by pipeline.events."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from pipeline.errors import MalformedEventError
from pipeline.events import KeyFilter, parse_body
from pipeline.requeue import RequeueEvent, build_message, parse_message
from pipeline.requeue.envelope import MAX_REASON_CHARS

NOW = datetime(2024, 5, 14, 9, 26, 1, tzinfo=timezone.utc)
WORK_ID = hashlib.sha256(b"a work id").hexdigest()


@dataclass(frozen=True)
class Row:
    """The ImageRow attributes build_message reads."""

    work_id: str = WORK_ID
    bucket: str = "moderation-uploads"
    key: str = "content/images/user 7/holiday+photo é.JPG"
    version_id: str | None = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e"


def envelope(**changes: Any) -> str:
    """A valid requeue body with fields changed; a value of ... removes the field."""
    document = json.loads(build_message(Row(), reason="fixed the role", now=NOW))
    for name, value in changes.items():
        document.pop(name) if value is ... else document.__setitem__(name, value)
    return json.dumps(document)


def test_build_message_writes_the_documented_fields() -> None:
    # When
    document = json.loads(build_message(Row(), reason="fixed the role", now=NOW))

    # Then
    assert document == {
        "pipeline": "requeue", "version": 1, "work_id": WORK_ID, "bucket": "moderation-uploads",
        "key": "content/images/user 7/holiday+photo é.JPG", "version_id": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
        "etag": "d41d8cd98f00b204e9800998ecf8427e", "outcomes": ["failed"],
        "requested_at": "2024-05-14T09:26:01+00:00", "reason": "fixed the role",
    }


def test_round_trip_keeps_every_field() -> None:
    # Given
    body = build_message(Row(version_id=None, etag=None), reason="r", outcomes=["clean", "failed"], now=NOW)

    # When
    event = parse_message(body)

    # Then
    assert event == RequeueEvent(work_id=WORK_ID, bucket="moderation-uploads", key=Row.key, version_id=None,
                                 etag=None, requested_at="2024-05-14T09:26:01+00:00", reason="r",
                                 outcomes=("failed", "clean"))
    assert (event.kind, event.event_name, event.source) == ("requeue", "pipeline:Requeue", "pipeline")


def test_parse_body_recognises_the_envelope_and_applies_the_key_filter() -> None:
    body = envelope()
    assert parse_body(body) == [parse_message(body)]
    assert parse_body(body, KeyFilter(prefix="content/images/", suffixes=(".png",))) == []
    assert parse_body(body, KeyFilter(prefix="other/")) == []


def test_missing_outcomes_means_failed_only_and_unknown_fields_are_ignored() -> None:
    event = parse_message(envelope(outcomes=..., reason=..., added_in_a_later_release={"x": 1}))
    assert (event.outcomes, event.reason) == (("failed",), "")


def test_reason_is_cut_to_its_limit() -> None:
    long = "x" * (MAX_REASON_CHARS + 50)
    assert len(json.loads(build_message(Row(), reason=long, now=NOW))["reason"]) == MAX_REASON_CHARS
    assert parse_message(envelope(reason=long)).reason == "x" * MAX_REASON_CHARS


def test_build_message_refuses_blocked() -> None:
    with pytest.raises(ValueError, match="outcomes may only be failed, clean, not blocked"):
        build_message(Row(), outcomes=["failed", "blocked"], now=NOW)


MALFORMED = [
    ({"version": 2}, "version must be 1, got 2"),
    ({"version": True}, "version must be 1, got true"),
    ({"version": ...}, "version must be 1, got null"),
    ({"work_id": "abc"}, "work_id must be 64 lowercase hex digits"),
    ({"work_id": WORK_ID.upper()}, "work_id must be 64 lowercase hex digits"),
    ({"work_id": ...}, "needs a non-empty string 'work_id', got null"),
    ({"bucket": ""}, "needs a non-empty string 'bucket'"),
    ({"key": 7}, "needs a non-empty string 'key', got 7"),
    ({"version_id": ""}, "'version_id' must be a non-empty string or null"),
    ({"etag": ["x"]}, "'etag' must be a non-empty string or null"),
    ({"requested_at": "yesterday"}, 'requested_at is not ISO-8601: "yesterday"'),
    ({"requested_at": ...}, "needs a non-empty string 'requested_at'"),
    ({"reason": 5}, "reason must be a string, got 5"),
    ({"outcomes": []}, "outcomes must be a non-empty list of strings"),
    ({"outcomes": "failed"}, "outcomes must be a non-empty list of strings"),
    ({"outcomes": ["blocked"]}, "outcomes may only be failed, clean, not blocked"),
    ({"outcomes": ["pending", "deleted"]}, "not deleted, pending"),
]


@pytest.mark.parametrize(("changes", "message"), MALFORMED)
def test_malformed_envelopes_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    body = envelope(**changes)
    with pytest.raises(MalformedEventError) as caught:
        parse_message(body)
    assert message in str(caught.value)
    # The bridge's parser refuses it the same way, so the message goes to the dead-letter queue
    with pytest.raises(MalformedEventError) as through_events:
        parse_body(body)
    assert str(through_events.value) == str(caught.value)
    assert through_events.value.error_code == "MalformedEvent"


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"requeue"'])
def test_parse_message_refuses_bodies_that_are_no_json_object(body: str) -> None:
    with pytest.raises(MalformedEventError, match="requeue message"):
        parse_message(body)


def test_another_pipeline_value_is_an_unknown_shape() -> None:
    with pytest.raises(MalformedEventError, match="unknown message shape"):
        parse_body(envelope(pipeline="sweep"))
