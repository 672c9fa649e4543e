"""Pure: a report row for an object event -> the Celery work to enqueue for it (or none).

The bridge writes the ``pending`` row first; what it enqueues then depends on what the row says:
- pending and new, or pending and the SQS message is a redelivery (its first hand-off may have
  failed before the chain reached the broker): the full chain detect -> tag -> report;
- pending and older than PIPELINE_STALE_AFTER (an earlier enqueue may have been lost with Redis or
  a crashed bridge): the full chain again; a younger one is in flight, so a duplicate adds nothing;
- blocked: a duplicate delivery re-checks the block tag on the object's current tags (tag -> report),
  unless a moderator approved this version: their decision wins, the tag stays off;
- clean, failed, deleted: already decided; nothing to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

from pipeline import outcomes
from pipeline.app import DETECT_TASK, REPORT_TASK, TAG_TASK
from pipeline.detectors.base import ImageRef
from pipeline.review.decisions import APPROVED


def work_for(row: Any) -> dict[str, Any]:
    """The JSON payload a chain starts from: identifiers only."""
    image = ImageRef(bucket=row.bucket, key=row.key, version_id=row.version_id, etag=row.etag)
    event_time = row.event_time.isoformat() if row.event_time else None
    return {"work_id": row.work_id, "image": image.to_dict(), "event_time": event_time}


def build_chain(app: Celery, row: Any) -> Signature:
    """detect -> tag -> report for one object version."""
    return chain(
        app.signature(DETECT_TASK, args=(work_for(row),)),
        app.signature(TAG_TASK),
        app.signature(REPORT_TASK),
    )


def build_recheck(app: Celery, row: Any) -> Signature:
    """tag -> report from a stored blocked decision: the tag is read again from S3, never assumed."""
    detection = {"detector": row.detector or "", "model_version": row.model_version or "", "labels": row.labels or []}
    result = {**work_for(row), "outcome": outcomes.BLOCKED, "detection": detection, "timings": {}, "recheck": True}
    return chain(app.signature(TAG_TASK, args=(result,)), app.signature(REPORT_TASK))


def plan(
    app: Celery, row: Any, *, created: bool, stale_after: float, redelivered: bool = False, now: datetime | None = None
) -> Signature | None:
    """What to enqueue for ``row`` after an event for it arrived; None when nothing needs doing.

    ``redelivered``: SQS delivered this message before (ApproximateReceiveCount > 1) without it
    being deleted, so the earlier enqueue may not have happened; a second chain is harmless.
    """
    if row.outcome == outcomes.PENDING:
        now = now or datetime.now(timezone.utc)
        stale = row.updated_at is None or now - row.updated_at >= timedelta(seconds=stale_after)
        return build_chain(app, row) if created or redelivered or stale else None
    if row.outcome == outcomes.BLOCKED and row.review != APPROVED:
        return build_recheck(app, row)
    return None


# -- requeue ------------------------------------------------------------------------------


def plan_requeue(app: Celery, row: Any, *, claimed: bool, redelivered: bool) -> Signature | None:
    """What to enqueue for a requeue request of ``row``; None when nothing needs doing.

    ``claimed``: this request moved the row back to pending (``ReportStore.requeue``), so the
    chain is its to start. Otherwise the row is already judged again, deleted, or pending because
    another request (or an earlier delivery of this one) claimed it: nothing, unless this message
    is a redelivery of a pending row, whose first hand-off may have claimed the row and then
    failed before the chain reached the broker; a second chain is harmless, as in :func:`plan`.
    """
    if claimed or (redelivered and row.outcome == outcomes.PENDING):
        return build_chain(app, row)
    return None
