"""Pure: decided rows -> the counts ``pipeline report`` shows (by outcome, by label, by day). No I/O.

Labels count images, not detections: an image with ``Explicit Nudity`` twice counts once for it.
Only labels at or above the confidence that blocks (PIPELINE_MIN_CONFIDENCE) are counted; the
store keeps every label a detector returned, down to its own floor. The category is the label's
top-level taxonomy category, whatever level the detector reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline import taxonomy
from pipeline.outcomes import OUTCOMES, TERMINAL

#: The outcomes of a day's row: only decided rows have a decided_at.
DAY_OUTCOMES = TERMINAL


@dataclass(frozen=True)
class Summary:
    """Everything ``pipeline report`` prints."""

    #: outcome -> rows, every outcome present.
    outcomes: dict[str, int]
    #: (category, label name) -> images, most frequent first.
    labels: list[tuple[str, str, int]]
    #: day (YYYY-MM-DD, UTC) -> outcome -> rows, days in order.
    days: dict[str, dict[str, int]]
    since: datetime | None = None
    until: datetime | None = None
    min_confidence: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def summarize(outcomes: Mapping[str, int], decisions: Iterable[tuple[datetime, str, list[dict[str, Any]]]], *,
              min_confidence: float, since: datetime | None = None, until: datetime | None = None) -> Summary:
    """Fold the store's outcome counts and streamed decisions into a :class:`Summary`."""
    labels: Counter[tuple[str, str]] = Counter()
    days: dict[str, Counter[str]] = {}
    for decided_at, outcome, row_labels in decisions:
        days.setdefault(decided_at.date().isoformat(), Counter())[outcome] += 1
        labels.update(image_labels(row_labels, min_confidence))
    ranked = sorted(labels.items(), key=lambda item: (-item[1], item[0]))
    return Summary(
        outcomes={name: int(outcomes.get(name, 0)) for name in OUTCOMES},
        labels=[(category, name, count) for (category, name), count in ranked],
        days={day: {name: counts.get(name, 0) for name in DAY_OUTCOMES} for day, counts in sorted(days.items())},
        since=since, until=until, min_confidence=min_confidence,
    )


def image_labels(labels: Iterable[Mapping[str, Any]], min_confidence: float) -> set[tuple[str, str]]:
    """The (top-level category, name) pairs of one image's labels at or above ``min_confidence``."""
    found = set()
    for label in labels:
        name = str(label.get("Name") or "")
        if not name or float(label.get("Confidence") or 0.0) < min_confidence:
            continue
        found.add((taxonomy.top_level(name, str(label.get("ParentName") or "")), name))
    return found


__all__ = ["DAY_OUTCOMES", "Summary", "image_labels", "summarize"]
