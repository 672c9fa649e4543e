"""Pure: the decisions a moderator can take, and which rows await one."""

from __future__ import annotations

from typing import Any

from pipeline import decision, outcomes
from pipeline.detectors.base import Label

#: The moderator lets the image be served: the block tag is removed.
APPROVED = "approved"
#: The moderator confirms the block: the block tag stays (or is written again).
REJECTED = "rejected"
DECISIONS = (APPROVED, REJECTED)
#: Outcomes a flagged row can have: blocked, or failed after detection found blocking labels.
FLAGGED_OUTCOMES = (outcomes.BLOCKED, outcomes.FAILED)


def is_flagged_row(row: Any, policy: decision.Policy) -> bool:
    """True for a blocked row, or a failed one whose stored labels block (``steps.is_flagged`` for rows)."""
    if row.outcome == outcomes.BLOCKED:
        return True
    if row.outcome != outcomes.FAILED or not row.labels:
        return False
    labels = [Label.from_dict(item) for item in row.labels]
    return decision.decide(labels, policy) == outcomes.BLOCKED
