"""Pure decision rules: labels in, outcome out.

As the seed does, an image is blocked when any label at or above MinConfidence comes back;
``block_categories`` narrows this to chosen top-level categories. Every label is kept either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import taxonomy
from pipeline.detectors.base import Label
from pipeline.outcomes import BLOCKED, CLEAN
from pipeline.settings import Settings



@dataclass(frozen=True)
class Policy:
    """When labels block an image."""

    min_confidence: float = 80.0
    #: Top-level categories that block; empty: all of them.
    block_categories: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policy":
        return cls(settings.min_confidence, settings.block_categories)


def blocking_labels(labels: Iterable[Label], policy: Policy) -> list[Label]:
    """The labels that, under ``policy``, make the image blocked."""
    wanted = {c.casefold() for c in policy.block_categories}
    return [
        label
        for label in labels
        if label.confidence >= policy.min_confidence
        and (not wanted or taxonomy.top_level(label.name, label.parent_name).casefold() in wanted)
    ]


def decide(labels: Iterable[Label], policy: Policy) -> str:
    """``blocked`` when any label blocks, else ``clean``."""
    return BLOCKED if blocking_labels(labels, policy) else CLEAN
