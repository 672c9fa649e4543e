"""ClientError / transport error -> PipelineError, and read_image_bytes' use of it (no services)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from pipeline.awserrors import classify_client_error, translated_aws_errors
from pipeline.detectors.base import ImageRef
from pipeline.errors import (
    AccessDeniedError,
    ObjectGoneError,
    PermanentError,
    RetryableError,
    ThrottledError,
    UnsupportedImageError,
)
from pipeline.objects import MAX_IMAGE_BYTES, get_object_params, read_image_bytes

IMAGE = ImageRef("uploads", "content/images/a.jpg")


def client_error(code: str, status: int | None, operation: str = "GetObject") -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "boom"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status", "expected_class", "expected_code"),
    [
        # S3
        ("NoSuchKey", 404, ObjectGoneError, "NoSuchKey"),
        ("NoSuchVersion", 404, ObjectGoneError, "NoSuchVersion"),
        ("NoSuchBucket", 404, ObjectGoneError, "NoSuchBucket"),
        ("404", 404, ObjectGoneError, "404"),
        ("PreconditionFailed", 412, ObjectGoneError, "ObjectSuperseded"),
        ("412", 412, ObjectGoneError, "ObjectSuperseded"),
        ("AccessDenied", 403, AccessDeniedError, "AccessDenied"),
        ("403", 403, AccessDeniedError, "403"),
        ("SlowDown", 503, ThrottledError, "SlowDown"),
        ("ServiceUnavailable", 503, RetryableError, "ServiceUnavailable"),
        ("InternalError", 500, RetryableError, "InternalError"),
        ("500", 500, RetryableError, "500"),
        ("503", 503, RetryableError, "503"),
        ("RequestTimeout", 400, RetryableError, "RequestTimeout"),
        ("Throttling", 400, ThrottledError, "Throttling"),
        # Rekognition
        ("ThrottlingException", 400, ThrottledError, "ThrottlingException"),
        ("ProvisionedThroughputExceededException", 400, ThrottledError, "ProvisionedThroughputExceededException"),
        ("LimitExceededException", 400, ThrottledError, "LimitExceededException"),
        ("InternalServerError", 500, RetryableError, "InternalServerError"),
        ("ServiceUnavailableException", 503, RetryableError, "ServiceUnavailableException"),
        ("InvalidImageFormatException", 400, UnsupportedImageError, "InvalidImageFormatException"),
        ("ImageTooLargeException", 400, UnsupportedImageError, "ImageTooLargeException"),
        ("InvalidParameterException", 400, UnsupportedImageError, "InvalidParameterException"),
        ("InvalidS3ObjectException", 400, ObjectGoneError, "InvalidS3ObjectException"),
        ("AccessDeniedException", 400, AccessDeniedError, "AccessDeniedException"),
        # Unknown codes: by status
        ("SomethingNew", 502, RetryableError, "SomethingNew"),
        ("BrandNewThrottle", 429, ThrottledError, "BrandNewThrottle"),
        ("InvalidArgument", 400, PermanentError, "InvalidArgument"),
        ("WeirdError", None, PermanentError, "WeirdError"),
    ],
)
def test_classify_client_error(code: str, status: int | None, expected_class: type, expected_code: str) -> None:
    # When
    result = classify_client_error(client_error(code, status))
    # Then: exactly that class, not merely a subclass of it
    assert type(result) is expected_class
    assert result.error_code == expected_code
    assert str(result) == f"GetObject failed: {code}: boom"
    assert isinstance(result.__cause__, ClientError)


def test_classify_uses_status_when_code_is_missing() -> None:
    error = ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject")
    result = classify_client_error(error)
    assert type(result) is ObjectGoneError and result.error_code == "404"


TRANSPORT_ERRORS = [
    EndpointConnectionError(endpoint_url="http://s3"),
    ConnectTimeoutError(endpoint_url="http://s3"),
    ReadTimeoutError(endpoint_url="http://s3"),
    ConnectionClosedError(endpoint_url="http://s3"),
    ResponseStreamingError(error="reset"),
    IncompleteReadError(actual_bytes=1, expected_bytes=2),
]


@pytest.mark.parametrize("exc", TRANSPORT_ERRORS, ids=lambda exc: type(exc).__name__)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    with pytest.raises(RetryableError) as caught:
        with translated_aws_errors():
            raise exc
    assert caught.value.error_code == type(exc).__name__
    assert caught.value.__cause__ is exc


# --- read_image_bytes with stand-in clients -------------------------------------------------------


class Body(io.BytesIO):
    """A StreamingBody stand-in that remembers how much was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        self.reads.append(size)
        return super().read(size)


class FakeS3:
    """get_object returns ``data`` (claiming ``length``) or raises ``error``; records the call."""

    def __init__(self, data: bytes = b"", *, length: int | None = None, error: Exception | None = None) -> None:
        self.body = Body(data)
        self.length = len(data) if length is None else length
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def get_object(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error:
            raise self.error
        return {"Body": self.body, "ContentLength": self.length}


def test_params_pin_version_when_known() -> None:
    image = ImageRef("b", "k", version_id="v1", etag="abc")
    assert get_object_params(image) == {"Bucket": "b", "Key": "k", "VersionId": "v1"}


@pytest.mark.parametrize("etag", ["abc123", '"abc123"'])
def test_params_send_quoted_if_match_when_unversioned(etag: str) -> None:
    assert get_object_params(ImageRef("b", "k", etag=etag)) == {"Bucket": "b", "Key": "k", "IfMatch": '"abc123"'}


def test_params_plain_when_nothing_known() -> None:
    assert get_object_params(ImageRef("b", "k")) == {"Bucket": "b", "Key": "k"}


def test_read_returns_bytes_and_closes_body() -> None:
    s3 = FakeS3(b"jpeg-bytes")
    assert read_image_bytes(s3, IMAGE) == b"jpeg-bytes"
    assert s3.body.closed and s3.body.reads == [MAX_IMAGE_BYTES + 1]


def test_read_refuses_large_object_before_reading_body() -> None:
    # Given: S3 announces 16 MiB
    s3 = FakeS3(b"x", length=16 * 1024 * 1024)
    # When
    with pytest.raises(UnsupportedImageError) as caught:
        read_image_bytes(s3, IMAGE)
    # Then
    assert caught.value.error_code == "ImageTooLargeException"
    assert s3.body.reads == [] and s3.body.closed


def test_read_refuses_body_longer_than_announced() -> None:
    s3 = FakeS3(b"x" * 11, length=5)
    with pytest.raises(UnsupportedImageError, match="over the 10-byte limit"):
        read_image_bytes(s3, IMAGE, max_bytes=10)


def test_read_refuses_empty_object() -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        read_image_bytes(FakeS3(b""), IMAGE)
    assert caught.value.error_code == "InvalidImageFormatException"


@pytest.mark.parametrize(
    ("error", "expected_class", "expected_code"),
    [
        (client_error("AccessDenied", 403), AccessDeniedError, "AccessDenied"),
        (client_error("SlowDown", 503), ThrottledError, "SlowDown"),
        (client_error("PreconditionFailed", 412), ObjectGoneError, "ObjectSuperseded"),
        (EndpointConnectionError(endpoint_url="http://s3"), RetryableError, "EndpointConnectionError"),
        (ReadTimeoutError(endpoint_url="http://s3"), RetryableError, "ReadTimeoutError"),
        (ConnectionClosedError(endpoint_url="http://s3"), RetryableError, "ConnectionClosedError"),
    ],
)
def test_read_maps_client_failures(error: Exception, expected_class: type, expected_code: str) -> None:
    with pytest.raises(expected_class) as caught:
        read_image_bytes(FakeS3(error=error), IMAGE)
    assert caught.value.error_code == expected_code
