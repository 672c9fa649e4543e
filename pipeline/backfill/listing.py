"""The objects under a prefix, page by page: ListObjectsV2, or ListObjectVersions in a versioned bucket.

In a versioned bucket only current versions are listed (``IsLatest``), with their version ids; a
key whose current version is a delete marker has no object and is left out. ``start_after``
resumes after a key (ListObjectsV2's StartAfter; ListObjectVersions' KeyMarker, which also
starts after the key when no version marker is given).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pipeline.awserrors import translated_aws_errors

#: S3's largest page, and its default.
PAGE_SIZE = 1000


@dataclass(frozen=True)
class Listed:
    """One current object as the listing shows it."""

    key: str
    etag: str
    size: int
    last_modified: datetime
    #: None in an unversioned bucket, and for a "null" version (stored while versioning was off).
    version_id: str | None = None


def is_versioned(s3: Any, bucket: str) -> bool:
    """True when versioning is or was on (Enabled or Suspended): objects may carry version ids."""
    with translated_aws_errors():
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in ("Enabled", "Suspended")


def list_current(s3: Any, bucket: str, prefix: str, *, versioned: bool, start_after: str | None = None,
                 page_size: int = PAGE_SIZE) -> Iterator[list[Listed]]:
    """The current objects under ``prefix`` in key order, one page at a time."""
    if versioned:
        yield from _list_versions(s3, bucket, prefix, start_after, page_size)
        return
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if start_after:
        params["StartAfter"] = start_after
    with translated_aws_errors():
        for page in s3.get_paginator("list_objects_v2").paginate(**params):
            yield [_listed(item) for item in page.get("Contents", [])]


def _list_versions(s3: Any, bucket: str, prefix: str, start_after: str | None, page_size: int) -> Iterator[list[Listed]]:
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if start_after:
        params["KeyMarker"] = start_after
    with translated_aws_errors():
        for page in s3.get_paginator("list_object_versions").paginate(**params):
            yield [_listed(item, item["VersionId"]) for item in page.get("Versions", []) if item.get("IsLatest")]


def _listed(item: dict[str, Any], version_id: str | None = None) -> Listed:
    return Listed(key=item["Key"], etag=item["ETag"].strip('"'), size=int(item["Size"]),
                  last_modified=item["LastModified"].astimezone(timezone.utc),
                  version_id=None if version_id in (None, "null") else version_id)


__all__ = ["Listed", "is_versioned", "list_current"]
