"""The three steps of a chain as plain functions: a work/result dict in, a result dict out.

The dicts are JSON (Celery is configured for JSON only) and carry identifiers, not objects:
``work`` = {work_id, image: ImageRef dict, event_time}; each step adds to it. The Celery tasks in
``pipeline.tasks`` wrap these with retries and error mapping.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from pipeline import decision, outcomes, tagplan
from pipeline.awserrors import SUPERSEDED_CODE, translated_aws_errors
from pipeline.detectors.base import Detection, ImageRef, Label
from pipeline.errors import BucketNotAllowedError, ObjectGoneError, PipelineError
from pipeline.monitoring import metrics
from pipeline.objects import check_still_there
from pipeline.runtime import Runtime
from pipeline.review.decisions import APPROVED as REVIEW_APPROVED
from pipeline.tagging import TagChange, apply_tags

log = logging.getLogger(__name__)

Result = dict[str, Any]


def detect(rt: Runtime, work: Result) -> Result:
    """Run the configured detector(s) and decide; raises PipelineError on failure.

    The attempt is counted on the row first, which also tells the sweeper the work is alive. A
    row that is no longer pending (a second chain for work already decided) skips the detector:
    no second Rekognition call, and the rest of the chain passes it through.
    """
    image = ImageRef.from_dict(work["image"])
    check_bucket(rt, image.bucket)
    row = rt.store.start_attempt(work["work_id"])
    if row is None:
        log.info("work %s is decided already (or unknown); skipping detection", work["work_id"])
        return {**work, "skipped": True}
    detection = _detect(rt, image)
    outcome = decision.decide(detection.labels, rt.policy)
    timings = {**work.get("timings", {}), "detect_ms": round(detection.elapsed_ms, 3)}
    if detection.waited_ms is not None:
        timings["ratelimit_wait_ms"] = round(detection.waited_ms, 3)
        log.debug("detect %s waited %.1f ms for the shared rate limit", work["work_id"], detection.waited_ms)
    return {**work, "outcome": outcome, "detection": detection.to_dict(), "timings": timings}


#: Rekognition's answer for an S3 object it cannot read: missing, or not allowed to read it.
UNREADABLE_S3_OBJECT = "InvalidS3ObjectException"


def _detect(rt: Runtime, image: ImageRef) -> Detection:
    """The detector's answer; an unreadable S3 object is checked again to tell "deleted" from "denied"."""
    try:
        return rt.detector.detect(image)
    except ObjectGoneError as exc:
        if exc.error_code != UNREADABLE_S3_OBJECT:
            raise
        check_still_there(rt.s3, image)  # raises ObjectGoneError (NoSuchKey, 404, ObjectSuperseded) if gone
        raise


#: Error code recorded when the fail-closed status tag had no free slot (S3's 10 tags).
STATUS_TAG_NO_ROOM = "StatusTagNoRoom"
#: Error code prefix recorded on a failed row whose ``failed`` status tag could not be written.
STATUS_TAG_NOT_WRITTEN = "StatusTagNotWritten"


def tag(rt: Runtime, result: Result) -> Result:
    """Write the tags the outcome calls for, merge-safe, in one PutObjectTagging.

    Blocked: the block tag (and the status tag, when PIPELINE_STATUS_TAG_KEY is set). Clean and
    failed: the status tag only, when set. A version a moderator approved is never re-tagged (a
    recheck chain enqueued before the approval). A status tag without a free slot is recorded
    as ``StatusTagNoRoom``; the object then stays unserved under the fail-closed policy.
    """
    change = tagplan.for_outcome(rt.settings, result.get("outcome"))
    if change is None or result.get("skipped"):
        return result
    check_bucket(rt, result["image"]["bucket"])
    if moderator_approved(rt, result["work_id"]):
        log.info("work %s was approved by a moderator; not re-tagged", result["work_id"])
        return {**result, "skipped": True}
    if result["outcome"] == outcomes.FAILED:
        return _tag_failed(rt, result, change)
    started = time.perf_counter()
    tags = apply_tags(rt.s3, ImageRef.from_dict(result["image"]), change)
    timings = {**result.get("timings", {}), "tag_ms": round((time.perf_counter() - started) * 1000, 3)}
    tagged = {**result, "tags": tags.tags, "tag_changed": tags.changed, "timings": timings}
    if tags.dropped:
        log.warning("no free tag slot for %s on %s", ",".join(tags.dropped), result["work_id"])
        tagged["error"] = {"code": STATUS_TAG_NO_ROOM, "message": f"no free tag slot for {','.join(tags.dropped)}"}
    return tagged


def moderator_approved(rt: Runtime, work_id: str) -> bool:
    """True when a moderator's latest decision on this version is ``approved``."""
    row = rt.store.get(work_id)
    return row is not None and row.review == REVIEW_APPROVED


def _tag_failed(rt: Runtime, result: Result, change: TagChange) -> Result:
    """Best effort ``failed`` status: a gone object needs none; any other error is added to the row's code."""
    try:
        tags = apply_tags(rt.s3, ImageRef.from_dict(result["image"]), change)
    except ObjectGoneError:
        return result
    except PipelineError as exc:
        return _with_extra_error(result, f"{STATUS_TAG_NOT_WRITTEN}:{exc.error_code}")
    if tags.dropped:
        return _with_extra_error(result, STATUS_TAG_NO_ROOM)
    return {**result, "tags": tags.tags, "tag_changed": tags.changed}


def _with_extra_error(result: Result, code: str) -> Result:
    """``result`` with ``code`` appended to its error code (``Earlier+code``)."""
    error = result.get("error") or {}
    earlier = error.get("code")
    return {**result, "error": {**error, "code": f"{earlier}+{code}" if earlier else code}}


def report(rt: Runtime, result: Result) -> Result:
    """Record the decision; flagged images also go to the review queue (first, so none is lost).

    Flagged means blocked, or failed after detection found blocking labels (the block tag could
    not be written, e.g. ten owner tags): that image is still visible, so moderators must see it.
    A re-check of a stored blocked decision (a duplicate delivery) changes nothing when the tag
    is in place: the row, its first decision time and the moderators' message stand.
    """
    if result.get("skipped"):
        return {"work_id": result["work_id"], "outcome": None, "skipped": True}
    if result.get("recheck") and result["outcome"] == outcomes.BLOCKED:
        log.info("re-checked block tag on %s: %s", result["work_id"], "rewritten" if result.get("tag_changed") else "in place")
        return {"work_id": result["work_id"], "outcome": outcomes.BLOCKED}
    if is_flagged(rt, result):
        _send_review(rt, result)
    return _record(rt, result)


def is_flagged(rt: Runtime, result: Result) -> bool:
    """Blocked, or failed although detection found labels that block."""
    if result["outcome"] == outcomes.BLOCKED:
        return True
    detection = result.get("detection")
    if result["outcome"] != outcomes.FAILED or not detection:
        return False
    return decision.decide(Detection.from_dict(detection).labels, rt.policy) == outcomes.BLOCKED


def report_without_review(rt: Runtime, result: Result, exc: PipelineError) -> Result:
    """The last resort when ``report`` keeps failing: record the decision without the review message.

    The row is where moderators find the image, and the error code says the message was not sent. A failure of the database itself propagates.
    """
    if not is_flagged(rt, result):
        raise exc
    log.error("review message for %s not sent: %s %s", result["work_id"], exc.error_code, exc)
    earlier = (result.get("error") or {}).get("code")
    code = f"{earlier}+ReviewNotSent:{exc.error_code}" if earlier else f"ReviewNotSent:{exc.error_code}"
    return _record(rt, {**result, "error": {"code": code, "message": str(exc)[:2000]}})


def _record(rt: Runtime, result: Result) -> Result:
    detection = Detection.from_dict(result["detection"]) if result.get("detection") else None
    error = result.get("error") or {}
    row = rt.store.record_decision(
        result["work_id"],
        outcome=result["outcome"],
        labels=[label.to_dict() for label in detection.labels] if detection else [],
        detector=detection.detector if detection else None,
        model_version=detection.model_version if detection else None,
        error_code=error.get("code"),
        error_message=error.get("message"),
        timings=result.get("timings"),
    )
    _log_decision(result, row)
    metrics.record_decision(row.outcome, detection.labels if detection else ())
    return {"work_id": result["work_id"], "outcome": row.outcome}


#: Error codes that mean the object version is gone (deleted before it was judged or tagged).
GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})


def failed(result: Result, exc: PipelineError) -> Result:
    """The result of a step that ended for good, with the error's code.

    The outcome is ``failed``, except when the object itself is gone: deleted before it was
    judged (``deleted``), or overwritten in place by a newer upload, which its own event judges
    (``superseded``). Neither leaves anything visible to hide.
    """
    return {**result, "outcome": outcome_for(exc), "error": {"code": exc.error_code, "message": str(exc)[:2000]}}


def outcome_for(exc: PipelineError) -> str:
    """The terminal outcome for an error that ended a chain."""
    if isinstance(exc, ObjectGoneError):
        if exc.error_code == SUPERSEDED_CODE:
            return outcomes.SUPERSEDED
        if exc.error_code in GONE_CODES:
            return outcomes.DELETED
    return outcomes.FAILED


def check_bucket(rt: Runtime, bucket: str) -> None:
    """Refuse work for a bucket outside PIPELINE_ALLOWED_BUCKETS (a forged or misrouted message)."""
    if bucket not in rt.settings.effective_allowed_buckets:
        raise BucketNotAllowedError(f"bucket {bucket!r} is not in PIPELINE_ALLOWED_BUCKETS")


#: Review message types: blocked and tagged, or flagged but still visible (the tag could not be written).
REVIEW_BLOCKED = "moderation.blocked"
REVIEW_UNTAGGED = "moderation.flagged_untagged"


def review_message(result: Result) -> dict[str, Any]:
    """The JSON moderators receive for a flagged image."""
    detection = result.get("detection") or {}
    image = result["image"]
    blocked = result["outcome"] == outcomes.BLOCKED
    return {
        "type": REVIEW_BLOCKED if blocked else REVIEW_UNTAGGED,
        "outcome": result["outcome"],
        "error_code": (result.get("error") or {}).get("code"),
        "work_id": result["work_id"],
        "bucket": image["bucket"],
        "key": image["key"],
        "version_id": image.get("version_id"),
        "etag": image.get("etag"),
        "event_time": result.get("event_time"),
        "decided_at": datetime.now(timezone.utc).isoformat(),
        "detector": detection.get("detector"),
        "model_version": detection.get("model_version"),
        "labels": detection.get("labels", []),
    }


def _send_review(rt: Runtime, result: Result) -> None:
    body = json.dumps(review_message(result), sort_keys=True)
    with translated_aws_errors():
        rt.sqs.send_message(QueueUrl=rt.review_queue_url, MessageBody=body)


def _log_decision(result: Result, row: Any) -> None:
    image = result["image"]
    labels = [Label.from_dict(item).name for item in (result.get("detection") or {}).get("labels", [])]
    log.info(
        "decision %s s3://%s/%s version=%s labels=%s error=%s",
        row.outcome, image["bucket"], image["key"], image.get("version_id"), labels,
        (result.get("error") or {}).get("code"),
        extra={"bucket": image["bucket"], "key": image["key"], "version_id": image.get("version_id"),
               "outcome": row.outcome, "work_id": result["work_id"]},
    )
