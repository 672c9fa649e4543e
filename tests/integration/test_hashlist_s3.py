"""HashListDetector end to end through S3, against a real moto server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.config import Config

from pipeline.demo.make_samples import HASHLIST_PATH, SAMPLES_DIR
from pipeline.detectors.base import ImageRef, Label
from pipeline.detectors.hashlist import HashList, HashListDetector
from pipeline.errors import ObjectGoneError, RetryableError, UnsupportedImageError
from pipeline.local.processes import free_port
from pipeline.objects import read_image_bytes
from pipeline.settings import DEFAULT_HASHLIST_MAX_DISTANCE
from tests.conftest import aws_client

# s3 and bucket (one of this test's own on the session's moto server) come from tests/conftest.py.

DEMO_LABEL = Label("Known Bad Content (demo)", "Explicit", 100.0, 2, "hashlist")
KEY = "content/images/upload.jpg"


def sample(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


@pytest.fixture
def detector(s3: Any) -> HashListDetector:
    return HashListDetector(HashList.load(HASHLIST_PATH), s3_client=s3, max_distance=DEFAULT_HASHLIST_MAX_DISTANCE)


def upload(s3: Any, bucket: str, data: bytes, key: str = KEY) -> ImageRef:
    """Put ``data`` and return the ImageRef an S3 event would announce (ETag unquoted)."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=data)
    return ImageRef(bucket, key, response.get("VersionId"), response["ETag"].strip('"'))


def test_copy_of_known_bad_is_labelled(s3: Any, bucket: str, detector: HashListDetector) -> None:
    # Given
    image = upload(s3, bucket, sample("known-bad-copy.jpg"))
    # When
    detection = detector.detect(image)
    # Then
    assert detection.detector == "hashlist"
    assert detection.labels == (DEMO_LABEL,)
    assert detection.model_version == HashList.load(HASHLIST_PATH).model_version
    assert [m["distance"] <= 6 for m in detection.extra["matches"]] == [True]
    assert detection.elapsed_ms > 0


@pytest.mark.parametrize("name", ["sunset.jpg", "tiles.png", "waves.jpg", "meadow.jpg"])
def test_unrelated_sample_gets_no_label(s3: Any, bucket: str, detector: HashListDetector, name: str) -> None:
    detection = detector.detect(upload(s3, bucket, sample(name), key=f"content/images/{name}"))
    assert detection.labels == ()
    assert detection.extra == {"matches": []}


def test_versioned_bucket_reads_the_requested_version(s3: Any, bucket: str, detector: HashListDetector) -> None:
    # Given: the known-bad copy, then overwritten by an unrelated image under the same key
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bad = upload(s3, bucket, sample("known-bad-copy.jpg"))
    clean = upload(s3, bucket, sample("sunset.jpg"))
    assert bad.version_id and clean.version_id and bad.version_id != clean.version_id
    # When / Then: each version is judged on its own bytes
    assert detector.detect(bad).labels == (DEMO_LABEL,)
    assert detector.detect(clean).labels == ()


def test_missing_version_is_gone(s3: Any, bucket: str, detector: HashListDetector) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    image = upload(s3, bucket, sample("sunset.jpg"))
    s3.delete_object(Bucket=bucket, Key=KEY, VersionId=image.version_id)
    with pytest.raises(ObjectGoneError) as caught:
        detector.detect(image)
    assert caught.value.error_code == "NoSuchVersion"


def test_missing_key_is_gone(bucket: str, detector: HashListDetector) -> None:
    with pytest.raises(ObjectGoneError) as caught:
        detector.detect(ImageRef(bucket, "content/images/never-uploaded.jpg"))
    assert caught.value.error_code == "NoSuchKey"


def test_missing_bucket_is_gone(detector: HashListDetector) -> None:
    with pytest.raises(ObjectGoneError) as caught:
        detector.detect(ImageRef(f"missing-{uuid.uuid4().hex[:12]}", KEY))
    assert caught.value.error_code == "NoSuchBucket"


def test_overwritten_object_is_superseded(s3: Any, bucket: str, detector: HashListDetector) -> None:
    # Given: the event announced the clean upload; the known-bad copy replaced it since
    announced = upload(s3, bucket, sample("sunset.jpg"))
    upload(s3, bucket, sample("known-bad-copy.jpg"))
    # When
    with pytest.raises(ObjectGoneError) as caught:
        detector.detect(announced)
    # Then: the newer bytes are not judged in the announced version's name
    assert caught.value.error_code == "ObjectSuperseded"


def test_matching_etag_reads_unversioned_object(s3: Any, bucket: str, detector: HashListDetector) -> None:
    image = upload(s3, bucket, sample("known-bad-copy.jpg"))
    assert image.version_id is None and image.etag
    assert detector.detect(image).labels == (DEMO_LABEL,)


def test_zero_byte_object_is_unsupported(s3: Any, bucket: str, detector: HashListDetector) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        detector.detect(upload(s3, bucket, b""))
    assert caught.value.error_code == "InvalidImageFormatException"


def test_non_image_object_is_unsupported(s3: Any, bucket: str, detector: HashListDetector) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        detector.detect(upload(s3, bucket, b"<html>not an image</html>"))
    assert caught.value.error_code == "InvalidImageFormatException"


def test_object_over_limit_is_too_large(s3: Any, bucket: str) -> None:
    image = upload(s3, bucket, sample("waves.jpg"))
    with pytest.raises(UnsupportedImageError) as caught:
        read_image_bytes(s3, image, max_bytes=1024)
    assert caught.value.error_code == "ImageTooLargeException"


def test_unreachable_endpoint_is_retryable() -> None:
    # Given: a port nothing listens on
    port = free_port()
    client = aws_client("s3", f"http://127.0.0.1:{port}", Config(retries={"max_attempts": 1}, connect_timeout=1))
    # When / Then
    with pytest.raises(RetryableError) as caught:
        read_image_bytes(client, ImageRef("any-bucket", KEY))
    assert caught.value.error_code == "EndpointConnectionError"
