"""Read one object version's bytes from S3, exactly the version the event announced.

With a version id the read is pinned to that version. Without one (an unversioned bucket) the
event's ETag is sent as ``If-Match``, so an object overwritten after the event fails with
``ObjectSuperseded`` instead of having newer, unjudged bytes judged in its name.
"""

from __future__ import annotations

from typing import Any

from pipeline.awserrors import translated_aws_errors
from pipeline.detectors.base import ImageRef
from pipeline.errors import UnsupportedImageError

MAX_IMAGE_BYTES = 15 * 1024 * 1024  #: Rekognition's limit for S3 images
TOO_LARGE_CODE = "ImageTooLargeException"  #: Rekognition's code, so both paths record the same
#: Rekognition's answer for a zero-byte object, so every detector records the same code.
EMPTY_CODE = "InvalidImageFormatException"


def get_object_params(image: ImageRef) -> dict[str, Any]:
    """The GetObject arguments that pin the read to the announced version or ETag."""
    params: dict[str, Any] = {"Bucket": image.bucket, "Key": image.key}
    if image.version_id:
        params["VersionId"] = image.version_id
    elif image.etag:
        # S3 events carry the ETag unquoted; HTTP's If-Match wants the quoted form.
        etag = image.etag.strip('"')
        params["IfMatch"] = f'"{etag}"'
    return params


def read_image_bytes(s3_client: Any, image: ImageRef, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Return the object's bytes; raise a PipelineError (never ClientError) on failure.

    Raises ObjectGoneError (missing, or ``ObjectSuperseded``), AccessDeniedError, RetryableError,
    or UnsupportedImageError (``ImageTooLargeException`` over ``max_bytes``, ``EmptyObject``).
    """
    with translated_aws_errors():
        response = s3_client.get_object(**get_object_params(image))
        body = response["Body"]
        try:
            _check_size(image, response.get("ContentLength"), max_bytes)
            # Read one byte past the limit so a missing or wrong ContentLength cannot sneak by.
            data = body.read(max_bytes + 1)
        finally:
            body.close()
    _check_size(image, len(data), max_bytes)
    if not data:
        raise UnsupportedImageError(f"s3://{image.bucket}/{image.key} is empty (0 bytes)", code=EMPTY_CODE)
    return data


def check_still_there(s3_client: Any, image: ImageRef) -> None:
    """HEAD the announced version; raise ObjectGoneError if it was deleted or overwritten since.

    Rekognition answers ``InvalidS3ObjectException`` both for a missing object and for one it may
    not read; this tells the two apart. Returns quietly when the version is still there.
    """
    with translated_aws_errors():
        s3_client.head_object(**get_object_params(image))


def _check_size(image: ImageRef, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise UnsupportedImageError(
            f"s3://{image.bucket}/{image.key} is {size} bytes, over the {max_bytes}-byte limit",
            code=TOO_LARGE_CODE,
        )


__all__ = ["MAX_IMAGE_BYTES", "check_still_there", "get_object_params", "read_image_bytes"]
