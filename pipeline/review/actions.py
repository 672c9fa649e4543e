"""List what awaits a moderator; apply and record their approve/reject decision on one object version.

The tags are changed first, on exactly the version that was judged (its VersionId; in an
unversioned bucket the ETag must still match, else ``ObjectSuperseded``), then the decision is
recorded. A failure in between leaves the tags changed and nothing recorded: running the same
command again is safe (the tag change is idempotent) and records it.

When the judged bytes no longer exist (overwritten in an unversioned bucket, or the version
deleted), there is nothing to tag: the decision is still recorded, with a note saying no tag was
changed and why, so the image leaves the review list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pipeline import tagplan
from pipeline.decision import Policy
from pipeline.detectors.base import ImageRef
from pipeline.errors import ObjectGoneError, ReviewRefusedError
from pipeline.report.store import ImageRow, ReportStore
from pipeline.review.decisions import FLAGGED_OUTCOMES, is_flagged_row
from pipeline.settings import Settings
from pipeline.tagging import TagResult, apply_tags

#: Rows read from the store at a time while filtering flagged ones.
PAGE_SIZE = 200
#: ObjectGoneError codes meaning the judged bytes no longer exist, so there is nothing left to tag.
#: Not NoSuchKey, 404 or NoSuchBucket: a wrong endpoint or bucket answers those too, and a deleted
#: object's row is marked ``deleted`` by its own event, so it is no longer flagged anyway.
BYTES_GONE_CODES = {
    "ObjectSuperseded": "the object was overwritten after the event",
    "NoSuchVersion": "the judged version was deleted",
}


@dataclass(frozen=True)
class ReviewResult:
    """What a decision did: the row as recorded, and the object's tags afterwards.

    ``tags`` is None when the judged bytes were gone: ``untagged_because`` then says why no tag
    changed, and ``newer_work_id`` names the key's newest row in the store, if there is one.
    """

    row: ImageRow
    tags: TagResult | None
    untagged_because: str | None = None
    newer_work_id: str | None = None


def awaiting_review(store: ReportStore, policy: Policy, *, limit: int) -> list[ImageRow]:
    """Flagged rows no moderator has decided, newest first, at most ``limit``."""
    found: list[ImageRow] = []
    offset = 0
    while len(found) < limit:
        page = store.unreviewed(FLAGGED_OUTCOMES, offset=offset, limit=PAGE_SIZE)
        found += [row for row in page if is_flagged_row(row, policy)]
        if len(page) < PAGE_SIZE:
            break
        offset += PAGE_SIZE
    return found[:limit]


def decide(
    store: ReportStore, s3: Any, settings: Settings, *, work_id: str, decision: str, reviewer: str,
    note: str | None = None,
) -> ReviewResult:
    """Apply ``decision`` to the flagged row's object version and record it.

    When the judged bytes are gone (``BYTES_GONE_CODES``) the decision is recorded without a tag
    change. Raises ReviewRefusedError (unknown work id, row not flagged), TagLimitError (reject: no
    free slot for the block tag) or another PipelineError from S3.
    """
    row = flagged_row(store, Policy.from_settings(settings), work_id)
    image = ImageRef(bucket=row.bucket, key=row.key, version_id=row.version_id, etag=row.etag)
    try:
        tags = apply_tags(s3, image, tagplan.for_review(settings, decision))
    except ObjectGoneError as exc:
        if exc.error_code not in BYTES_GONE_CODES:
            raise
        because = f"{BYTES_GONE_CODES[exc.error_code]} ({exc.error_code})"
        recorded = store.record_review(work_id, decision=decision, reviewer=reviewer, note=untagged_note(because, note))
        return ReviewResult(row=recorded, tags=None, untagged_because=because, newer_work_id=newer_work_id(store, row))
    recorded = store.record_review(work_id, decision=decision, reviewer=reviewer, note=note)
    return ReviewResult(row=recorded, tags=tags)


def untagged_note(because: str, note: str | None) -> str:
    """The note recorded with a decision that changed no tag: why first, then the moderator's note."""
    reason = f"[no tag changed: {because}]"
    return f"{reason} {note}" if note else reason


def newer_work_id(store: ReportStore, row: ImageRow) -> str | None:
    """The work id of the newest row the store holds for ``row``'s key after ``row``, or None."""
    later = [other for other in store.rows_for_keys(row.bucket, [row.key]) if other.id > row.id]
    return later[-1].work_id if later else None


def flagged_row(store: ReportStore, policy: Policy, work_id: str) -> ImageRow:
    """The row for ``work_id`` if it is flagged; ReviewRefusedError otherwise."""
    row = store.get(work_id)
    if row is None:
        raise ReviewRefusedError(f"no image with work id {work_id!r} in the report database")
    if not is_flagged_row(row, policy):
        raise ReviewRefusedError(f"work id {work_id} is {row.outcome}, not flagged for review")
    return row


def age_seconds(row: ImageRow, now: datetime | None = None) -> float:
    """Seconds since the row was decided (or last updated, for a row never decided)."""
    now = now or datetime.now(timezone.utc)
    return max(0.0, (now - (row.decided_at or row.updated_at)).total_seconds())


def as_dict(row: ImageRow, now: datetime | None = None) -> dict[str, Any]:
    """The JSON ``pipeline review list --format json`` prints for one row."""
    return {
        "work_id": row.work_id,
        "url": f"s3://{row.bucket}/{row.key}",
        "version_id": row.version_id,
        "outcome": row.outcome,
        "error_code": row.error_code,
        "labels": [label["Name"] for label in row.labels],
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "age_seconds": round(age_seconds(row, now), 1),
    }
