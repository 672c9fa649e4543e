"""The pipeline's exception tree.

::

    PipelineError
     +- ConfigurationError     a bad setting; raised at start-up, names the variable
     +- RetryableError         throttling, 5xx, timeouts, connection loss: try again later
     |   +- ThrottledError     the service said "slow down"
     |   +- RateLimitWaitExceeded   the shared rate limit's next slot is further off than allowed
     |   +- RateLimiterUnavailable  the limiter's Redis cannot be reached (never call unlimited)
     +- PermanentError         retrying cannot help: record a terminal ``failed`` outcome
         +- MalformedEventError    an SQS body that is not an S3 event we understand
         +- ObjectGoneError        the object (version) no longer exists
         +- UnsupportedImageError  not an image, truncated, too large, too small
         +- TagLimitError          blocking would need more than S3's 10 tags
         +- AccessDeniedError      the pipeline's role may not read or tag the object
         +- BucketNotAllowedError  the event names a bucket outside PIPELINE_ALLOWED_BUCKETS
         +- SetupError             `pipeline setup` cannot do as asked (no bucket, overlapping rules)
         +- ReviewRefusedError     a moderator decision on an unknown or unflagged work id

AWS ``ClientError`` is caught only in the thin client modules (detectors, tagging, report) and
turned into one of these; Celery tasks retry ``RetryableError`` and record ``PermanentError``.
Every ``PermanentError`` carries an ``error_code`` that ends up in the report row.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    #: Short, stable code stored in the report row (AWS's own code when there is one).
    default_code = "PipelineError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = code or self.default_code


class ConfigurationError(PipelineError):
    """A setting is missing or invalid; the message names the environment variable."""

    default_code = "ConfigurationError"


class RetryableError(PipelineError):
    """A transient failure: the same call may succeed later."""

    default_code = "Retryable"


class ThrottledError(RetryableError):
    """The service rejected the call for exceeding a rate (ThrottlingException and friends)."""

    default_code = "ThrottlingException"


class RateLimitWaitExceeded(RetryableError):
    """The shared rate limit's next slot is further off than PIPELINE_RATELIMIT_MAX_WAIT.

    Raised before the call, with nothing reserved: the task retries later with back-off instead
    of holding its worker. ``wait_seconds`` is how long the slot was away.
    """

    default_code = "RateLimitWaitExceeded"

    def __init__(self, message: str, *, wait_seconds: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.wait_seconds = wait_seconds


class RateLimiterUnavailable(RetryableError):
    """The shared rate limiter's Redis cannot be reached; the call is not made unlimited."""

    default_code = "RateLimiterUnavailable"


class PermanentError(PipelineError):
    """Retrying cannot help; the image ends with a ``failed`` outcome carrying ``error_code``."""

    default_code = "Permanent"


class MalformedEventError(PermanentError):
    """An SQS message body that is not a well-formed S3 / SNS / EventBridge event."""

    default_code = "MalformedEvent"


class ObjectGoneError(PermanentError):
    """The object or the requested version no longer exists."""

    default_code = "NoSuchKey"


class UnsupportedImageError(PermanentError):
    """The bytes are not an image the detector accepts."""

    default_code = "InvalidImageFormatException"


class TagLimitError(PermanentError):
    """Adding the block tag would exceed S3's limit of 10 tags per object."""

    default_code = "TagLimitExceeded"


class AccessDeniedError(PermanentError):
    """The pipeline's credentials may not perform the call."""

    default_code = "AccessDenied"


class BucketNotAllowedError(PermanentError):
    """Work for a bucket outside PIPELINE_ALLOWED_BUCKETS: refused, never read or tagged."""

    default_code = "BucketNotAllowed"


class SetupError(PermanentError):
    """``pipeline setup`` cannot make the resources as asked: a missing bucket, an overlapping rule."""

    default_code = "SetupError"


class ReviewRefusedError(PermanentError):
    """``pipeline review approve|reject`` on a work id that is unknown or not flagged."""

    default_code = "ReviewRefused"
