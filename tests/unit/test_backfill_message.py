"""Backfill's pure parts: the record the bridge reads, what counts as known, the target URL."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from pipeline.backfill.listing import Listed
from pipeline.backfill.message import EVENT_NAME, already_known, build_body, event_for
from pipeline.backfill.queued import queued_warning
from pipeline.backfill.target import listing_prefix, parse_target
from pipeline.events import KeyFilter, parse_body
from tests.eventdata import load_event

BUCKET = "amzn-s3-demo-bucket"
MODIFIED = datetime(2024, 5, 14, 9, 26, 1, tzinfo=timezone.utc)


def listed(key: str = "content/images/HappyFace.jpg", version_id: str | None = None, etag: str = "d41d8cd98f00b204e9800998ecf8427e") -> Listed:
    return Listed(key=key, etag=etag, size=1024, last_modified=MODIFIED, version_id=version_id)


def row(id: int, version_id: str | None = None, etag: str | None = "d41d8cd98f00b204e9800998ecf8427e",
        outcome: str = "clean") -> SimpleNamespace:
    return SimpleNamespace(id=id, version_id=version_id, etag=etag, outcome=outcome)


def test_a_versioned_object_has_the_work_id_of_the_real_event_for_that_version() -> None:
    # Given: tests/events/s3_put.json, the real event for this version
    real, = parse_body(load_event("s3_put").replace("amzn-s3-demo-bucket", BUCKET))
    # When
    event = event_for(build_body(BUCKET, listed(version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko")))
    # Then
    assert event.work_id == real.work_id
    assert (event.bucket, event.key, event.kind, event.event_name) == (BUCKET, real.key, "created", EVENT_NAME)
    assert (event.size, event.etag, event.sequencer) == (1024, "d41d8cd98f00b204e9800998ecf8427e", None)
    assert event.event_time == "2024-05-14T09:26:01.000Z"


@pytest.mark.parametrize("key", ["content/images/red flower été.jpg", "content/images/a+b%2F c.png",
                                 "content/images/dir/sub dir/x.JPG"])
def test_keys_come_back_exactly_through_the_bridges_parser(key: str) -> None:
    event, = parse_body(build_body(BUCKET, listed(key)), KeyFilter())
    assert event.key == key


def test_an_unversioned_object_keeps_one_work_id_across_runs_and_none_of_a_real_event() -> None:
    first = event_for(build_body(BUCKET, listed()))
    again = event_for(build_body(BUCKET, listed()))
    real, = parse_body(load_event("s3_put_unversioned").replace("amzn-s3-demo-bucket", BUCKET))
    assert first.work_id == again.work_id
    assert first.version_id is None
    assert first.work_id != real.work_id  # a real event carries a sequencer the listing cannot know


@pytest.mark.parametrize(
    ("rows", "known"),
    [
        ([], False),
        ([row(1, version_id="v1")], True),
        ([row(1, version_id="v0")], False),  # another version of the key
        ([row(1, version_id="v1", outcome="pending")], True),
    ],
)
def test_a_version_is_known_by_its_version_id(rows: list[SimpleNamespace], known: bool) -> None:
    assert already_known(listed(version_id="v1"), rows) is known


@pytest.mark.parametrize(
    ("rows", "known"),
    [
        ([], False),
        ([row(1)], True),  # judged, same bytes
        ([row(1, outcome="pending")], True),  # on its way
        ([row(1, etag="0" * 32)], False),  # other bytes were judged: these are new
        ([row(1), row(2, etag="0" * 32)], False),  # the latest upload seen had other bytes
        ([row(1, etag="0" * 32), row(2)], True),
        ([row(1, outcome="deleted")], False),  # deleted, then uploaded again while nobody watched
        ([row(1, outcome="superseded")], False),
        ([row(1, version_id="v1")], False),  # a versioned row says nothing of a null version
    ],
)
def test_an_unversioned_key_is_known_by_its_latest_row(rows: list[SimpleNamespace], known: bool) -> None:
    assert already_known(listed(), rows) is known


@pytest.mark.parametrize(
    ("text", "expected"),
    [("s3://bucket/content/images/", ("bucket", "content/images/")), ("s3://bucket", ("bucket", "")),
     ("s3://bucket/", ("bucket", "")), ("s3://b/a b/é", ("b", "a b/é"))],
)
def test_parse_target(text: str, expected: tuple[str, str]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["bucket/prefix", "https://bucket/x", "s3:///prefix", "s3://b/x?y=1"])
def test_parse_target_refuses_other_urls(text: str) -> None:
    with pytest.raises(ValueError, match="is not an s3://bucket/prefix URL"):
        parse_target(text)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("", "content/images/"), ("content/", "content/images/"), ("content/images/2024/", "content/images/2024/"),
     ("thumbs/", None), ("content/images-old/", None)],
)
def test_listing_prefix_is_the_narrower_one(requested: str, expected: str | None) -> None:
    assert listing_prefix(requested, "content/images/") == expected


def test_the_queued_warning_names_the_count_and_how_to_avoid_it() -> None:
    assert queued_warning(0) is None
    warning = queued_warning(821)
    assert warning is not None
    assert warning.startswith("warning: the events queue holds about 821 messages; objects a previous backfill")
    assert warning.endswith("wait until `pipeline status` shows the events queue empty.")
