"""ensure_tag / ensure_untagged against a real moto S3 server: the owner's tags always survive."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from pipeline.detectors.base import ImageRef
from pipeline.errors import ObjectGoneError, TagLimitError
from pipeline.tagging import MAX_TAGS, TagResult, ensure_tag, ensure_untagged, read_tags

# s3 and bucket (one of this test's own on the session's moto server) come from tests/conftest.py.

TAG_KEY = "BlockedContent"
TAG_VALUE = "true"
OWNER_TAGS = [{"Key": "team", "Value": "photos"}, {"Key": "cost-centre", "Value": "42"}]


@pytest.fixture
def key() -> str:
    return f"content/images/{uuid.uuid4().hex[:8]}.jpg"


def put(s3: Any, bucket: str, key: str, body: bytes = b"image bytes", tag_set: list[dict[str, str]] = ()) -> ImageRef:
    """Upload and return the ImageRef an S3 event would announce (ETag unquoted)."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=body)
    image = ImageRef(bucket, key, response.get("VersionId"), response["ETag"].strip('"'))
    if tag_set:
        s3.put_object_tagging(**_target(image), Tagging={"TagSet": list(tag_set)})
    return image


def stored_tags(s3: Any, image: ImageRef) -> list[dict[str, str]]:
    return s3.get_object_tagging(**_target(image))["TagSet"]


def _target(image: ImageRef) -> dict[str, str]:
    target = {"Bucket": image.bucket, "Key": image.key}
    if image.version_id:
        target["VersionId"] = image.version_id
    return target


def test_ensure_tag_keeps_the_owners_tags(s3: Any, bucket: str, key: str) -> None:
    # Given
    image = put(s3, bucket, key, tag_set=OWNER_TAGS)
    # When
    result = ensure_tag(s3, image, TAG_KEY, TAG_VALUE)
    # Then
    assert result == TagResult(changed=True, tags={"team": "photos", "cost-centre": "42", TAG_KEY: TAG_VALUE})
    assert stored_tags(s3, image) == OWNER_TAGS + [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def test_ensure_tag_on_an_untagged_object(s3: Any, bucket: str, key: str) -> None:
    image = put(s3, bucket, key)
    assert ensure_tag(s3, image, TAG_KEY, TAG_VALUE).changed is True
    assert stored_tags(s3, image) == [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def test_ensure_tag_twice_changes_nothing_the_second_time(s3: Any, bucket: str, key: str) -> None:
    # Given: a first run tagged the object
    image = put(s3, bucket, key, tag_set=OWNER_TAGS)
    first = ensure_tag(s3, image, TAG_KEY, TAG_VALUE)
    # When: the task runs again (acks_late redelivery)
    second = ensure_tag(s3, image, TAG_KEY, TAG_VALUE)
    # Then
    assert first.changed is True
    assert second == TagResult(changed=False, tags=first.tags)
    assert stored_tags(s3, image) == OWNER_TAGS + [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def test_ensure_tag_updates_our_key_with_another_value(s3: Any, bucket: str, key: str) -> None:
    image = put(s3, bucket, key, tag_set=[{"Key": TAG_KEY, "Value": "false"}, *OWNER_TAGS])
    result = ensure_tag(s3, image, TAG_KEY, TAG_VALUE)
    assert result.changed is True
    assert stored_tags(s3, image) == [{"Key": TAG_KEY, "Value": TAG_VALUE}, *OWNER_TAGS]


def test_ten_owner_tags_raise_tag_limit_and_leave_the_tags_untouched(s3: Any, bucket: str, key: str) -> None:
    # Given
    owner = [{"Key": f"owner-{i}", "Value": str(i)} for i in range(MAX_TAGS)]
    image = put(s3, bucket, key, tag_set=owner)
    # When
    with pytest.raises(TagLimitError) as caught:
        ensure_tag(s3, image, TAG_KEY, TAG_VALUE)
    # Then
    assert caught.value.error_code == "TagLimitExceeded"
    assert stored_tags(s3, image) == owner


def test_versioned_bucket_tags_the_named_version_only(s3: Any, bucket: str, key: str) -> None:
    # Given: the judged version, then a newer upload under the same key
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    older = put(s3, bucket, key, b"judged bytes", tag_set=OWNER_TAGS)
    latest = put(s3, bucket, key, b"newer bytes")
    assert older.version_id and latest.version_id and older.version_id != latest.version_id
    # When
    result = ensure_tag(s3, older, TAG_KEY, TAG_VALUE)
    # Then
    assert result.changed is True
    assert stored_tags(s3, older) == OWNER_TAGS + [{"Key": TAG_KEY, "Value": TAG_VALUE}]
    assert stored_tags(s3, latest) == []
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == []


def test_unversioned_matching_etag_is_tagged(s3: Any, bucket: str, key: str) -> None:
    image = put(s3, bucket, key)
    assert image.version_id is None and image.etag
    assert ensure_tag(s3, image, TAG_KEY, TAG_VALUE).changed is True
    assert stored_tags(s3, image) == [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def test_unversioned_stale_etag_is_superseded_and_nothing_is_tagged(s3: Any, bucket: str, key: str) -> None:
    # Given: the event announced the first upload; the key was overwritten since
    announced = put(s3, bucket, key, b"judged bytes")
    put(s3, bucket, key, b"newer bytes", tag_set=OWNER_TAGS)
    # When
    with pytest.raises(ObjectGoneError) as caught:
        ensure_tag(s3, announced, TAG_KEY, TAG_VALUE)
    # Then: the newer, unjudged bytes are not tagged in the old version's name
    assert caught.value.error_code == "ObjectSuperseded"
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == OWNER_TAGS


@pytest.mark.parametrize(
    ("etag", "code"),
    [(None, "NoSuchKey"), ("0123456789abcdef0123456789abcdef", "404")],
    ids=["without-etag", "with-etag"],
)
def test_missing_key_is_gone(s3: Any, bucket: str, key: str, etag: str | None, code: str) -> None:
    with pytest.raises(ObjectGoneError) as caught:
        ensure_tag(s3, ImageRef(bucket, key, None, etag), TAG_KEY, TAG_VALUE)
    assert caught.value.error_code == code


def test_deleted_version_is_gone(s3: Any, bucket: str, key: str) -> None:
    # Given
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    image = put(s3, bucket, key)
    s3.delete_object(Bucket=bucket, Key=key, VersionId=image.version_id)
    # When / Then
    with pytest.raises(ObjectGoneError):
        ensure_tag(s3, image, TAG_KEY, TAG_VALUE)


def test_ensure_untagged_removes_only_our_tag(s3: Any, bucket: str, key: str) -> None:
    # Given
    image = put(s3, bucket, key, tag_set=[OWNER_TAGS[0], {"Key": TAG_KEY, "Value": TAG_VALUE}, OWNER_TAGS[1]])
    # When
    first = ensure_untagged(s3, image, TAG_KEY)
    second = ensure_untagged(s3, image, TAG_KEY)
    # Then
    assert first == TagResult(changed=True, tags={"team": "photos", "cost-centre": "42"})
    assert second == TagResult(changed=False, tags={"team": "photos", "cost-centre": "42"})
    assert stored_tags(s3, image) == OWNER_TAGS


def test_read_tags_returns_the_version_tag_set(s3: Any, bucket: str, key: str) -> None:
    image = put(s3, bucket, key, tag_set=OWNER_TAGS)
    assert read_tags(s3, image) == OWNER_TAGS
