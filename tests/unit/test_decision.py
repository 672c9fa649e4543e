"""Decision rules and the moderation taxonomy behind ``block_categories`` (pure, no services)."""

from __future__ import annotations

import pytest

from pipeline import taxonomy
from pipeline.decision import BLOCKED, CLEAN, Policy, blocking_labels, decide
from pipeline.detectors.base import Label
from pipeline.settings import Settings


def label(name: str, parent: str = "", confidence: float = 99.0, level: int | None = None) -> Label:
    return Label(name, parent, confidence, level if level is not None else taxonomy.level(name), "rekognition")


# -- thresholds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(80.0, BLOCKED), (80.001, BLOCKED), (100.0, BLOCKED), (79.999, CLEAN), (0.0, CLEAN)],
)
def test_min_confidence_is_inclusive(confidence: float, expected: str) -> None:
    labels = [label("Weapons", "Violence", confidence)]
    assert decide(labels, Policy(min_confidence=80.0)) == expected


def test_no_labels_is_clean() -> None:
    assert decide([], Policy()) == CLEAN


def test_any_category_blocks_when_none_is_chosen() -> None:
    # Given: the default policy, as the seed: every label at or above MinConfidence blocks
    labels = [label("Gambling", confidence=85.0)]
    # When / Then
    assert decide(labels, Policy()) == BLOCKED
    assert blocking_labels(labels, Policy()) == labels


def test_blocking_labels_keeps_only_the_blocking_ones_in_order() -> None:
    # Given
    weak = label("Smoking", "Drugs & Tobacco Paraphernalia & Use", 60.0)
    strong_alcohol = label("Drinking", "Alcohol Use", 95.0)
    strong_explicit = label("Exposed Female Nipple", "Explicit Nudity", 90.0)
    strong_violence = label("Weapons", "Violence", 99.0)
    policy = Policy(min_confidence=80.0, block_categories=("Alcohol", "Violence"))
    # When
    blocking = blocking_labels([weak, strong_alcohol, strong_explicit, strong_violence], policy)
    # Then
    assert blocking == [strong_alcohol, strong_violence]


def test_decide_accepts_any_iterable() -> None:
    assert decide(iter([label("Explicit", confidence=90.0)]), Policy()) == BLOCKED


# -- block_categories: top-level categories, whatever level the label has -------------------


@pytest.mark.parametrize(
    ("name", "parent", "category"),
    [
        ("Explicit", "", "Explicit"),
        ("Explicit Nudity", "Explicit", "Explicit"),
        ("Exposed Female Nipple", "Explicit Nudity", "Explicit"),
        ("Alcohol", "", "Alcohol"),
        ("Alcohol Use", "Alcohol", "Alcohol"),
        ("Drinking", "Alcohol Use", "Alcohol"),
        ("Implied Nudity", "Non-Explicit Nudity", "Non-Explicit Nudity of Intimate parts and Kissing"),
        ("Air Crash", "Crashes", "Visually Disturbing"),
        ("Pills", "Products", "Drugs & Tobacco"),
        ("Middle Finger", "Rude Gestures", "Rude Gestures"),
    ],
)
def test_label_at_any_level_counts_under_its_top_level_category(name: str, parent: str, category: str) -> None:
    # Given
    labels = [label(name, parent)]
    others = tuple(c for c in taxonomy.TOP_LEVEL if c != category)
    # When / Then
    assert decide(labels, Policy(block_categories=(category,))) == BLOCKED
    assert decide(labels, Policy(block_categories=others)) == CLEAN


@pytest.mark.parametrize("spelling", ["explicit", "EXPLICIT", "Explicit", "eXpLiCiT"])
def test_category_names_are_case_insensitive(spelling: str) -> None:
    labels = [label("Exposed Female Nipple", "Explicit Nudity")]
    assert decide(labels, Policy(block_categories=(spelling,))) == BLOCKED


def test_narrowed_policy_leaves_other_categories_clean() -> None:
    # "Drinking" is Alcohol, not Explicit
    assert decide([label("Drinking", "Alcohol Use")], Policy(block_categories=("Explicit",))) == CLEAN


@pytest.mark.parametrize(
    ("name", "parent", "category"),
    [
        # A label newer than this taxonomy, under a known top-level category
        ("Brand New Label", "Gambling", "Gambling"),
        # ... under a known level-2 label: still walks up to the top
        ("Brand New Label", "Explicit Nudity", "Explicit"),
        # ... under an unknown parent: the parent is the best category there is
        ("Brand New Label", "Brand New Category", "Brand New Category"),
        # The hash list's demo label
        ("Known Bad Content (demo)", "Explicit", "Explicit"),
        # Unknown and top-level: itself
        ("Brand New Category", "", "Brand New Category"),
    ],
)
def test_unknown_label_falls_back_to_its_parent_name(name: str, parent: str, category: str) -> None:
    assert taxonomy.top_level(name, parent) == category
    assert decide([label(name, parent, level=0)], Policy(block_categories=(category,))) == BLOCKED


def test_policy_from_settings() -> None:
    settings = Settings(min_confidence=92.5, block_categories=("Explicit", "Violence"))
    assert Policy.from_settings(settings) == Policy(92.5, ("Explicit", "Violence"))


# -- taxonomy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("Explicit", 1),
        ("Hate Symbols", 1),
        ("Explicit Nudity", 2),
        ("Alcohol Use", 2),
        ("Middle Finger", 2),
        ("Exposed Female Nipple", 3),
        ("Drinking", 3),
        ("Air Crash", 3),
        ("Not A Label", 0),
        ("", 0),
        ("explicit", 0),  # names are exact, as Rekognition sends them
    ],
)
def test_level(name: str, level: int) -> None:
    assert taxonomy.level(name) == level


def test_top_level_categories_are_the_ten_of_version_7() -> None:
    assert taxonomy.TOP_LEVEL == (
        "Explicit",
        "Non-Explicit Nudity of Intimate parts and Kissing",
        "Swimwear or Underwear",
        "Violence",
        "Visually Disturbing",
        "Drugs & Tobacco",
        "Alcohol",
        "Rude Gestures",
        "Gambling",
        "Hate Symbols",
    )


@pytest.mark.parametrize(("name", "parent"), [(n, p) for n, p in taxonomy.PARENTS.items() if p])
def test_every_parent_is_itself_in_the_taxonomy_one_level_up(name: str, parent: str) -> None:
    assert parent in taxonomy.PARENTS
    assert taxonomy.level(name) == taxonomy.level(parent) + 1
    assert taxonomy.top_level(name) in taxonomy.TOP_LEVEL


def test_every_entry_has_a_level_between_one_and_three() -> None:
    assert {taxonomy.level(name) for name in taxonomy.PARENTS} == {1, 2, 3}
