"""NudeNet's classes in Rekognition's moderation taxonomy (v7): the one mapping table.

Every class of the bundled model is either mapped to a taxonomy label or listed in
:data:`IGNORED_CLASSES` with the reason; a test checks this against the model file's own class
list. ``ParentName`` and ``TaxonomyLevel`` come from :mod:`pipeline.taxonomy`, so a mapped label
always sits where Rekognition would put it. Like Rekognition, a label comes with its ancestors
(a level-3 label brings its level-2 and level-1 labels), each as confident as its most
confident descendant, and confidences are on Rekognition's 0-100 scale (model score x 100).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import taxonomy
from pipeline.detectors.base import Label

DETECTOR_NAME = "local"

#: NudeNet class -> Rekognition v7 label Name (README's table lists the same).
CLASS_LABELS: dict[str, str] = {
    "FEMALE_GENITALIA_EXPOSED": "Exposed Female Genitalia",
    "MALE_GENITALIA_EXPOSED": "Exposed Male Genitalia",
    "FEMALE_BREAST_EXPOSED": "Exposed Female Nipple",
    "BUTTOCKS_EXPOSED": "Exposed Buttocks or Anus",
    "ANUS_EXPOSED": "Exposed Buttocks or Anus",
    "MALE_BREAST_EXPOSED": "Exposed Male Nipple",
    "FEMALE_GENITALIA_COVERED": "Female Swimwear or Underwear",
    "FEMALE_BREAST_COVERED": "Female Swimwear or Underwear",
}

#: NudeNet classes deliberately not reported, and why.
IGNORED_CLASSES: dict[str, str] = {
    "FACE_FEMALE": "a face is not moderation content",
    "FACE_MALE": "a face is not moderation content",
    "FEET_EXPOSED": "feet are not in the taxonomy",
    "FEET_COVERED": "feet are not in the taxonomy",
    "ARMPITS_EXPOSED": "armpits are not in the taxonomy",
    "ARMPITS_COVERED": "armpits are not in the taxonomy",
    "BELLY_EXPOSED": "a bare belly is not in the taxonomy",
    "BELLY_COVERED": "ordinary clothing",
    "BUTTOCKS_COVERED": "ordinary clothing (trousers, skirts)",
    "ANUS_COVERED": "ordinary clothing",
}


@dataclass(frozen=True)
class Box:
    """One detection of the model: class, score (0-1) and box (x, y, width, height) in image pixels."""

    class_name: str
    score: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, object]:
        return {"class": self.class_name, "score": round(self.score, 4), "box": list(self.box)}


def labels_for(boxes: Iterable[Box], min_confidence: float) -> tuple[Label, ...]:
    """Rekognition-shaped labels, ancestors included, at or above ``min_confidence`` (0-100).

    ``min_confidence`` plays Rekognition's ``MinConfidence``: what is below it is not reported.
    Most confident first; ties in taxonomy order (higher level first), then by name.
    """
    confidence: dict[str, float] = {}
    for box in boxes:
        name = CLASS_LABELS.get(box.class_name)
        if name is None:
            continue
        for label_name in (name, *ancestors(name)):
            confidence[label_name] = max(confidence.get(label_name, 0.0), box.score * 100.0)
    kept = [(name, value) for name, value in confidence.items() if value >= min_confidence]
    kept.sort(key=lambda item: (-item[1], taxonomy.level(item[0]), item[0]))
    return tuple(_label(name, value) for name, value in kept)


def ancestors(name: str) -> list[str]:
    """The parent, grandparent, ... of a taxonomy label, nearest first."""
    found, current = [], taxonomy.PARENTS.get(name, "")
    while current:
        found.append(current)
        current = taxonomy.PARENTS.get(current, "")
    return found


def _label(name: str, confidence: float) -> Label:
    return Label(name, taxonomy.PARENTS[name], round(confidence, 3), taxonomy.level(name), DETECTOR_NAME)


__all__ = ["CLASS_LABELS", "DETECTOR_NAME", "IGNORED_CLASSES", "Box", "ancestors", "labels_for"]
