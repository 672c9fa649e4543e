"""The local model's mapping onto Rekognition's taxonomy, and raw model outputs -> labels -> decision."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline import outcomes, taxonomy
from pipeline.decision import Policy, decide
from pipeline.detectors.base import Label
from pipeline.detectors.local_labels import CLASS_LABELS, IGNORED_CLASSES, Box, ancestors, labels_for
from pipeline.detectors.local_model import (
    INPUT_SIZE,
    class_names_from_metadata,
    decode_output,
    default_threads,
    letterbox,
    non_max_suppression,
)
from pipeline.errors import ConfigurationError

#: nudenet 3.4.2's class order (its ``__labels``; the model file's metadata says the same, see the
#: integration test that reads it).
NUDENET_CLASSES = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)
ANCHORS = 2100  #: 40x40 + 20x20 + 10x10 anchors for a 320x320 input (strides 8, 16, 32)


# --- the table -----------------------------------------------------------------------------------


def test_every_class_is_mapped_or_ignored_never_both() -> None:
    assert set(CLASS_LABELS) | set(IGNORED_CLASSES) == set(NUDENET_CLASSES)
    assert set(CLASS_LABELS) & set(IGNORED_CLASSES) == set()


@pytest.mark.parametrize("class_name", sorted(CLASS_LABELS))
def test_every_mapped_class_names_a_taxonomy_entry(class_name: str) -> None:
    name = CLASS_LABELS[class_name]
    assert name in taxonomy.PARENTS
    assert taxonomy.level(name) in (2, 3)


def test_ignored_classes_say_why() -> None:
    assert all(reason.strip() for reason in IGNORED_CLASSES.values())
    assert {"FACE_FEMALE", "FACE_MALE", "FEET_EXPOSED", "FEET_COVERED"} <= set(IGNORED_CLASSES)


def test_ancestors_walk_up_to_the_top_level() -> None:
    assert ancestors("Exposed Female Nipple") == ["Explicit Nudity", "Explicit"]
    assert ancestors("Female Swimwear or Underwear") == ["Swimwear or Underwear"]
    assert ancestors("Explicit") == []


# --- boxes -> labels -----------------------------------------------------------------------------


def test_a_level_3_label_comes_with_its_ancestors_like_rekognition() -> None:
    labels = labels_for([Box("FEMALE_BREAST_EXPOSED", 0.91, (10, 10, 50, 50))], min_confidence=50)
    assert labels == (
        Label("Explicit", "", 91.0, 1, "local"),
        Label("Explicit Nudity", "Explicit", 91.0, 2, "local"),
        Label("Exposed Female Nipple", "Explicit Nudity", 91.0, 3, "local"),
    )


def test_one_label_per_name_at_its_best_box_and_parents_at_their_best_child() -> None:
    boxes = [
        Box("BUTTOCKS_EXPOSED", 0.62, (0, 0, 9, 9)),
        Box("ANUS_EXPOSED", 0.84, (1, 1, 9, 9)),  # same taxonomy name as BUTTOCKS_EXPOSED
        Box("MALE_GENITALIA_EXPOSED", 0.70, (5, 5, 9, 9)),
    ]
    labels = {label.name: label.confidence for label in labels_for(boxes, min_confidence=0)}
    assert labels == {
        "Exposed Buttocks or Anus": 84.0,
        "Exposed Male Genitalia": 70.0,
        "Explicit Nudity": 84.0,
        "Explicit": 84.0,
    }


def test_ignored_classes_and_labels_under_min_confidence_are_not_reported() -> None:
    boxes = [Box("FACE_FEMALE", 0.99, (0, 0, 9, 9)), Box("FEET_EXPOSED", 0.95, (0, 0, 9, 9)),
             Box("FEMALE_BREAST_COVERED", 0.79, (0, 0, 9, 9))]
    assert labels_for(boxes, min_confidence=80) == ()
    assert [label.name for label in labels_for(boxes, min_confidence=79)] == [
        "Swimwear or Underwear", "Female Swimwear or Underwear"]


# --- raw model output (the documented shape) -> boxes -> labels -> decision -----------------------


def raw_output(*anchors: tuple[int, tuple[float, float, float, float], str, float]) -> np.ndarray:
    """An ``output0`` of shape [1, 4 + 18, 2100] with the given anchors set (others all zero)."""
    output = np.zeros((1, 4 + len(NUDENET_CLASSES), ANCHORS), dtype=np.float32)
    for index, box, class_name, score in anchors:
        output[0, :4, index] = box
        output[0, 4 + NUDENET_CLASSES.index(class_name), index] = score
    return output


def test_an_explicit_detection_blocks_and_a_face_does_not() -> None:
    # Given: the model saw a face (ignored) and exposed genitalia at 0.88, in a 640x480 image (scale 0.5)
    output = raw_output((7, (100, 60, 40, 40), "FACE_FEMALE", 0.97), (1500, (160, 200, 60, 80), "FEMALE_GENITALIA_EXPOSED", 0.88))
    # When
    boxes = decode_output(output, NUDENET_CLASSES, 0.5, (640, 480))
    labels = labels_for(boxes, min_confidence=80)
    # Then
    assert [(b.class_name, round(b.score, 2), b.box) for b in boxes] == [
        ("FACE_FEMALE", 0.97, (160, 80, 80, 80)),
        ("FEMALE_GENITALIA_EXPOSED", 0.88, (260, 320, 120, 160)),
    ]
    assert [(l.name, l.parent_name, l.taxonomy_level, l.confidence) for l in labels] == [
        ("Explicit", "", 1, pytest.approx(88.0)),
        ("Explicit Nudity", "Explicit", 2, pytest.approx(88.0)),
        ("Exposed Female Genitalia", "Explicit Nudity", 3, pytest.approx(88.0)),
    ]
    assert decide(labels, Policy()) == outcomes.BLOCKED
    assert decide(labels, Policy(block_categories=("Violence",))) == outcomes.CLEAN


def test_weak_and_ignored_detections_leave_the_image_clean() -> None:
    output = raw_output((3, (50, 50, 20, 20), "FEMALE_BREAST_EXPOSED", 0.41), (9, (80, 80, 30, 30), "FEET_EXPOSED", 0.93))
    labels = labels_for(decode_output(output, NUDENET_CLASSES, 1.0, (320, 320)), min_confidence=80)
    assert labels == ()
    assert decide(labels, Policy()) == outcomes.CLEAN


def test_anchors_under_the_score_threshold_are_dropped() -> None:
    output = raw_output((3, (50, 50, 20, 20), "FEMALE_BREAST_EXPOSED", 0.24))
    assert decode_output(output, NUDENET_CLASSES, 1.0, (320, 320)) == []


def test_overlapping_boxes_keep_only_the_best_across_classes() -> None:
    # Two anchors on the same spot (the model's usual duplicate), one nearby of another class, one apart
    output = raw_output(
        (10, (100, 100, 50, 50), "FEMALE_BREAST_EXPOSED", 0.90),
        (11, (102, 101, 50, 50), "FEMALE_BREAST_EXPOSED", 0.86),
        (12, (101, 100, 50, 48), "FEMALE_BREAST_COVERED", 0.55),
        (13, (250, 250, 40, 40), "FEMALE_BREAST_EXPOSED", 0.80),
    )
    boxes = decode_output(output, NUDENET_CLASSES, 1.0, (320, 320))
    assert [(b.class_name, round(b.score, 2)) for b in boxes] == [("FEMALE_BREAST_EXPOSED", 0.9), ("FEMALE_BREAST_EXPOSED", 0.8)]


def test_boxes_are_clipped_to_the_image() -> None:
    output = raw_output((0, (10, 300, 60, 60), "BUTTOCKS_EXPOSED", 0.9))
    (box,) = decode_output(output, NUDENET_CLASSES, 1.0, (320, 310))
    assert box.box == (0, 270, 40, 40)


def test_an_output_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="22 values per anchor, expected 12"):
        decode_output(raw_output(), NUDENET_CLASSES[:8], 1.0, (320, 320))


def test_nms_keeps_disjoint_boxes_in_score_order() -> None:
    corners = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 10, 10]], dtype=np.float32)
    assert non_max_suppression(corners, np.array([0.5, 0.9, 0.6]), 0.45) == [1, 2]


# --- pre-processing and threads ------------------------------------------------------------------


def test_letterbox_keeps_aspect_pads_black_right_and_bottom_and_feeds_rgb() -> None:
    # Given: a pure red 640x480 picture
    blob, scale = letterbox(Image.new("RGB", (640, 480), (255, 0, 0)))
    # Then: [1, 3, 320, 320] float32, red in channel 0, the bottom 80 rows black
    assert blob.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and blob.dtype == np.float32
    assert scale == 0.5
    assert blob[0, :, :240, :].mean(axis=(1, 2)).tolist() == [1.0, 0.0, 0.0]
    assert float(blob[0, :, 240:, :].max()) == 0.0


def test_letterbox_of_a_grey_or_palette_image_still_has_three_channels() -> None:
    blob, scale = letterbox(Image.new("L", (100, 400), 128))
    assert blob.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and scale == 0.8
    assert blob[0, :, :, :80].mean(axis=(1, 2)) == pytest.approx([128 / 255] * 3)


@pytest.mark.parametrize(
    ("processes", "cpus", "expected"),
    [(None, 2, 2), (1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 8, 4), (3, 8, 2), (8, 8, 1), (1, 1, 1)],
)
def test_default_threads_share_the_cpus_among_worker_processes(processes: int | None, cpus: int, expected: int) -> None:
    threads = default_threads(processes, cpus)
    assert threads == expected
    assert threads * (processes or 1) <= max(cpus, processes or 1)


def test_class_names_come_from_the_model_metadata() -> None:
    assert class_names_from_metadata({"names": "{0: 'A', 1: 'B'}"}) == ("A", "B")
    with pytest.raises(ConfigurationError, match="no usable class names"):
        class_names_from_metadata({})


# --- the worker's pool size, recorded before the pool forks ----------------------------------------


class FakeWorker:
    """What worker_init's sender (Celery's WorkController) has that the handler reads."""

    def __init__(self, concurrency: Any) -> None:
        self.concurrency = concurrency


@pytest.mark.parametrize(("concurrency", "expected"), [(3, 3), (1, 1), ("auto", "cpus"), (None, None)])
def test_worker_init_records_the_pool_size(monkeypatch: pytest.MonkeyPatch, concurrency: Any, expected: Any) -> None:
    from celery import signals

    from pipeline import runtime
    from pipeline.detectors.local_model import usable_cpus

    # Given: no pool size known yet
    monkeypatch.setattr(runtime, "worker_processes", None)
    # When: Celery's worker sends worker_init with its resolved concurrency
    signals.worker_init.send(sender=FakeWorker(concurrency))
    # Then
    assert runtime.worker_processes == (usable_cpus() if expected == "cpus" else expected)
