"""Turn botocore's exceptions into the pipeline's own (see :mod:`pipeline.errors`).

One table for S3, Rekognition and tagging, so every thin client module classifies a failure the
same way. A code the table does not know is classified by its HTTP status: 429 is throttling,
5xx is retryable, any other 4xx is permanent. The AWS code is kept as ``error_code``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline.errors import (
    AccessDeniedError,
    ObjectGoneError,
    PermanentError,
    PipelineError,
    RetryableError,
    ThrottledError,
    UnsupportedImageError,
)

#: Code S3 answers when an If-Match precondition fails: the object changed after the event.
SUPERSEDED_CODE = "ObjectSuperseded"

#: AWS error code -> (exception class, code to record; None keeps AWS's code).
CODE_TABLE: dict[str, tuple[type[PipelineError], str | None]] = {
    # Throttling (S3 and Rekognition).
    "SlowDown": (ThrottledError, None),
    "Throttling": (ThrottledError, None),
    "ThrottlingException": (ThrottledError, None),
    "RequestLimitExceeded": (ThrottledError, None),
    "TooManyRequestsException": (ThrottledError, None),
    "ProvisionedThroughputExceededException": (ThrottledError, None),
    "LimitExceededException": (ThrottledError, None),
    # Transient server-side failures.
    "InternalError": (RetryableError, None),
    "InternalServerError": (RetryableError, None),
    "ServiceUnavailable": (RetryableError, None),
    "ServiceUnavailableException": (RetryableError, None),
    "RequestTimeout": (RetryableError, None),
    "500": (RetryableError, None),
    "503": (RetryableError, None),
    # The object (version) is gone.
    "NoSuchKey": (ObjectGoneError, None),
    "NoSuchVersion": (ObjectGoneError, None),
    "NoSuchBucket": (ObjectGoneError, None),
    "NotFound": (ObjectGoneError, None),
    "404": (ObjectGoneError, None),
    "InvalidS3ObjectException": (ObjectGoneError, None),
    # The object changed after the event announced it: never judge newer bytes.
    "PreconditionFailed": (ObjectGoneError, SUPERSEDED_CODE),
    "412": (ObjectGoneError, SUPERSEDED_CODE),
    # Not an image the service accepts.
    "InvalidImageFormatException": (UnsupportedImageError, None),
    "ImageTooLargeException": (UnsupportedImageError, None),
    "InvalidParameterException": (UnsupportedImageError, None),
    # Missing permissions.
    "AccessDenied": (AccessDeniedError, None),
    "AccessDeniedException": (AccessDeniedError, None),
    "Forbidden": (AccessDeniedError, None),
    "403": (AccessDeniedError, None),
}

#: botocore errors raised before or while a response arrives: connection loss, timeouts.
TRANSPORT_ERRORS: tuple[type[BotoCoreError], ...] = (BotoConnectionError, HTTPClientError, IncompleteReadError)


def classify_client_error(exc: ClientError) -> PipelineError:
    """Return the :class:`PipelineError` for ``exc`` (not raised), carrying AWS's error code."""
    error = exc.response.get("Error") or {}
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    aws_code = str(error.get("Code") or status or "Unknown")
    error_class, code = CODE_TABLE.get(aws_code, (_class_for_status(status), None))
    message = f"{exc.operation_name} failed: {aws_code}: {error.get('Message') or 'no message'}"
    result = error_class(message, code=code or aws_code)
    result.__cause__ = exc
    return result


def _class_for_status(status: int | None) -> type[PipelineError]:
    """Fallback for codes the table does not know."""
    if status == 429:
        return ThrottledError
    if status is not None and status >= 500:
        return RetryableError
    return PermanentError


def classify_transport_error(exc: BotoCoreError) -> RetryableError:
    """A connection or read failure: always worth another try. Code is the botocore class name."""
    result = RetryableError(f"transport error: {exc}", code=type(exc).__name__)
    result.__cause__ = exc
    return result


@contextmanager
def translated_aws_errors() -> Iterator[None]:
    """Run the block, re-raising ClientError and transport errors as PipelineErrors."""
    try:
        yield
    except ClientError as exc:
        raise classify_client_error(exc) from exc
    except TRANSPORT_ERRORS as exc:
        raise classify_transport_error(exc) from exc


__all__ = ["classify_client_error", "classify_transport_error", "translated_aws_errors", "SUPERSEDED_CODE"]
