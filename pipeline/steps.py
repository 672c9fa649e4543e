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

from pipeline import decision, outcomes
from pipeline.awserrors import translated_aws_errors
from pipeline.detectors.base import Detection, ImageRef, Label
from pipeline.errors import PipelineError
from pipeline.runtime import Runtime
from pipeline.tagging import ensure_tag

log = logging.getLogger(__name__)

Result = dict[str, Any]


def detect(rt: Runtime, work: Result) -> Result:
    """Run the configured detector(s) and decide; raises PipelineError on failure."""
    detection = rt.detector.detect(ImageRef.from_dict(work["image"]))
    outcome = decision.decide(detection.labels, rt.policy)
    timings = {**work.get("timings", {}), "detect_ms": round(detection.elapsed_ms, 3)}
    if detection.waited_ms is not None:
        timings["ratelimit_wait_ms"] = round(detection.waited_ms, 3)
        log.debug("detect %s waited %.1f ms for the shared rate limit", work["work_id"], detection.waited_ms)
    return {**work, "outcome": outcome, "detection": detection.to_dict(), "timings": timings}


def tag(rt: Runtime, result: Result) -> Result:
    """Make sure a blocked image carries the block tag (merge-safe); others pass through."""
    if result.get("outcome") != outcomes.BLOCKED:
        return result
    started = time.perf_counter()
    tags = ensure_tag(rt.s3, ImageRef.from_dict(result["image"]), rt.settings.tag_key, rt.settings.tag_value)
    timings = {**result.get("timings", {}), "tag_ms": round((time.perf_counter() - started) * 1000, 3)}
    return {**result, "tags": tags.tags, "tag_changed": tags.changed, "timings": timings}


def report(rt: Runtime, result: Result) -> Result:
    """Record the decision; flagged images also go to the review queue (first, so none is lost).

    Flagged means blocked, or failed after detection found blocking labels (the block tag could
    not be written, e.g. ten owner tags): that image is still visible, so moderators must see it.
    A re-check of a stored blocked decision (a duplicate delivery) changes nothing when the tag
    is in place: the row, its first decision time and the moderators' message stand.
    """
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
    return {"work_id": result["work_id"], "outcome": row.outcome}


def failed(result: Result, exc: PipelineError) -> Result:
    """The result of a step that ended for good: outcome failed with the error's code."""
    return {**result, "outcome": outcomes.FAILED, "error": {"code": exc.error_code, "message": str(exc)[:2000]}}


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
