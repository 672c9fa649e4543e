"""Merge-safe S3 object tagging.

S3's PutObjectTagging replaces the whole tag set, so a blind put would delete the owner's tags:
the block tag is always read, merged and written back on the same object version. The tags are
read again every time; an earlier run is never assumed to have left them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.awserrors import translated_aws_errors
from pipeline.detectors.base import ImageRef
from pipeline.errors import ObjectGoneError, TagLimitError

#: S3 allows at most 10 tags per object.
MAX_TAGS = 10

TagSet = list[dict[str, str]]


@dataclass(frozen=True)
class TagResult:
    """What ``apply_tags`` found and did."""

    changed: bool
    tags: dict[str, str]
    #: Optional tags left out because the object had no free slot for them (see TagChange).
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagChange:
    """What one PutObjectTagging should do: keys to set, keys to set when room is left, keys to remove.

    ``required`` keys raise TagLimitError when S3's ten slots are full; ``if_room`` keys are then
    left out and reported in ``TagResult.dropped`` (the fail-closed status tag: its absence only
    keeps the object unserved, it must not stop the block tag being written).
    """

    required: Mapping[str, str] = field(default_factory=dict)
    if_room: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


def merge_tag(existing: TagSet, key: str, value: str) -> TagSet | None:
    """The tag set with ``key=value`` added or updated; None when it is already there.

    Raises TagLimitError rather than dropping someone's tag to make room.
    """
    return plan_tags(existing, TagChange(required={key: value}))[0]


def remove_tag(existing: TagSet, key: str) -> TagSet | None:
    """The tag set without ``key``; None when it is not there."""
    return plan_tags(existing, TagChange(remove=(key,)))[0]


def plan_tags(existing: TagSet, change: TagChange) -> tuple[TagSet | None, tuple[str, ...]]:
    """(the tag set ``change`` leads to, or None when nothing changes; the ``if_room`` keys left out).

    Removals happen first, so they free slots; other keys keep their order and values.
    Raises TagLimitError when a ``required`` key has no slot, rather than drop someone's tag.
    """
    current = {tag["Key"]: tag["Value"] for tag in existing if tag["Key"] not in change.remove}
    dropped: list[str] = []
    for wanted, required in ((change.required, True), (change.if_room, False)):
        for key, value in wanted.items():
            if key not in current and len(current) >= MAX_TAGS:
                if required:
                    raise TagLimitError(
                        f"object already has {len(current)} tags; adding {key} would exceed S3's limit of {MAX_TAGS}",
                    )
                dropped.append(key)
                continue
            current[key] = value
    if current == _as_dict(existing):
        return None, tuple(dropped)
    return [{"Key": k, "Value": v} for k, v in current.items()], tuple(dropped)


def read_tags(s3: Any, image: ImageRef) -> TagSet:
    """The object version's current tag set."""
    with translated_aws_errors():
        return s3.get_object_tagging(**_target(image))["TagSet"]


def ensure_tag(s3: Any, image: ImageRef, key: str, value: str) -> TagResult:
    """Make sure the object version carries ``key=value``, keeping every other tag."""
    return apply_tags(s3, image, TagChange(required={key: value}))


def ensure_untagged(s3: Any, image: ImageRef, key: str) -> TagResult:
    """Make sure the object version does not carry ``key``, keeping every other tag."""
    return apply_tags(s3, image, TagChange(remove=(key,)))


def apply_tags(s3: Any, image: ImageRef, change: TagChange) -> TagResult:
    """Apply ``change`` to the object version in one read and at most one PutObjectTagging.

    Refuses (ObjectSuperseded) when an unversioned object's bytes are no longer the judged ones.
    """
    _check_not_superseded(s3, image)
    existing = read_tags(s3, image)
    planned, dropped = plan_tags(existing, change)
    if planned is None:
        return TagResult(changed=False, tags=_as_dict(existing), dropped=dropped)
    _put_tags(s3, image, planned)
    return TagResult(changed=True, tags=_as_dict(planned), dropped=dropped)


def _put_tags(s3: Any, image: ImageRef, tags: TagSet) -> None:
    """Write ``tags`` as the version's whole tag set; none left is a DeleteObjectTagging.

    Both mean the same to S3; the delete is also what S3-compatible stores (moto among them)
    accept, where an empty TagSet in PutObjectTagging fails.
    """
    with translated_aws_errors():
        if tags:
            s3.put_object_tagging(**_target(image), Tagging={"TagSet": tags})
        else:
            s3.delete_object_tagging(**_target(image))


def _check_not_superseded(s3: Any, image: ImageRef) -> None:
    """In an unversioned bucket, refuse to tag bytes newer than the ones that were judged."""
    if image.version_id or not image.etag:
        return
    with translated_aws_errors():
        head = s3.head_object(Bucket=image.bucket, Key=image.key)
    if head["ETag"].strip('"') != image.etag.strip('"'):
        raise ObjectGoneError(
            f"s3://{image.bucket}/{image.key} was overwritten after the event; its new version has its own event",
            code="ObjectSuperseded",
        )


def _target(image: ImageRef) -> dict[str, str]:
    target = {"Bucket": image.bucket, "Key": image.key}
    if image.version_id:
        target["VersionId"] = image.version_id
    return target


def _as_dict(tags: TagSet) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}
