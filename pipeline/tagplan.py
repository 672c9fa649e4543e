"""Pure: which tags an outcome, or a moderator's decision, calls for on the object version.

The block tag (PIPELINE_TAG_KEY=PIPELINE_TAG_VALUE) hides a blocked image. The optional status
tag (PIPELINE_STATUS_TAG_KEY) says ``clean``, ``blocked`` or ``failed`` on every decided object,
so a fail-closed bucket policy can serve only ``clean`` ones. The status tag is written only when
a slot is free (``TagChange.if_room``): without it the object stays unserved, the safe side.
"""

from __future__ import annotations

from pipeline import outcomes
from pipeline.review.decisions import APPROVED, REJECTED
from pipeline.settings import Settings
from pipeline.tagging import TagChange

#: Values of the fail-closed status tag.
STATUS_CLEAN = "clean"
STATUS_BLOCKED = "blocked"
STATUS_FAILED = "failed"


def for_outcome(settings: Settings, outcome: str | None) -> TagChange | None:
    """The tags a detection outcome calls for; None when it calls for none."""
    status = settings.status_tag_key
    if outcome == outcomes.BLOCKED:
        return TagChange(required={settings.tag_key: settings.tag_value},
                         if_room={status: STATUS_BLOCKED} if status else {})
    if status and outcome == outcomes.CLEAN:
        return TagChange(if_room={status: STATUS_CLEAN})
    if status and outcome == outcomes.FAILED:
        return TagChange(if_room={status: STATUS_FAILED})
    return None


def for_review(settings: Settings, decision: str) -> TagChange:
    """The tags a moderator's decision calls for: approved removes the block tag, rejected keeps it."""
    status = settings.status_tag_key
    if decision == APPROVED:
        return TagChange(remove=(settings.tag_key,), if_room={status: STATUS_CLEAN} if status else {})
    if decision == REJECTED:
        return TagChange(required={settings.tag_key: settings.tag_value},
                         if_room={status: STATUS_BLOCKED} if status else {})
    raise ValueError(f"decision must be {APPROVED} or {REJECTED}, not {decision!r}")
