"""merge_tag / remove_tag: the pure half of merge-safe tagging (no services)."""

from __future__ import annotations

import pytest

from pipeline.errors import PermanentError, TagLimitError
from pipeline.tagging import MAX_TAGS, TagChange, merge_tag, plan_tags, remove_tag

KEY = "BlockedContent"


def tags(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs]


def owner_tags(count: int) -> list[dict[str, str]]:
    return tags(*((f"owner-{i}", f"value-{i}") for i in range(count)))


def test_max_tags_is_s3s_limit() -> None:
    assert MAX_TAGS == 10


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], tags((KEY, "true"))),
        (tags(("team", "photos")), tags(("team", "photos"), (KEY, "true"))),
        (
            tags(("z", "1"), ("a", "2"), ("m", "3")),
            tags(("z", "1"), ("a", "2"), ("m", "3"), (KEY, "true")),
        ),
    ],
    ids=["no-tags", "one-owner-tag", "owner-order-kept"],
)
def test_merge_adds_the_tag_after_every_existing_one_in_order(existing, expected) -> None:
    # When
    merged = merge_tag(existing, KEY, "true")
    # Then
    assert merged == expected


def test_merge_does_not_mutate_its_input() -> None:
    existing = tags(("team", "photos"))
    merge_tag(existing, KEY, "true")
    assert existing == tags(("team", "photos"))


@pytest.mark.parametrize(
    "existing",
    [tags((KEY, "true")), tags(("team", "photos"), (KEY, "true"), ("z", "9"))],
    ids=["only-ours", "among-others"],
)
def test_merge_returns_none_when_the_tag_is_already_there(existing) -> None:
    assert merge_tag(existing, KEY, "true") is None


def test_merge_updates_our_key_in_place_when_its_value_differs() -> None:
    # Given: someone (or an older config) set our key to another value
    existing = tags(("team", "photos"), (KEY, "false"), ("z", "9"))
    # When
    merged = merge_tag(existing, KEY, "true")
    # Then: same position, new value, nothing else touched
    assert merged == tags(("team", "photos"), (KEY, "true"), ("z", "9"))


def test_merge_fills_the_tenth_slot() -> None:
    # Given: 9 owner tags
    existing = owner_tags(MAX_TAGS - 1)
    # When
    merged = merge_tag(existing, KEY, "true")
    # Then
    assert merged is not None
    assert len(merged) == MAX_TAGS
    assert merged[:-1] == existing
    assert merged[-1] == {"Key": KEY, "Value": "true"}


def test_merge_refuses_an_eleventh_tag_rather_than_drop_one() -> None:
    # Given: 10 owner tags, none of them ours
    existing = owner_tags(MAX_TAGS)
    # When
    with pytest.raises(TagLimitError) as caught:
        merge_tag(existing, KEY, "true")
    # Then
    error = caught.value
    assert isinstance(error, PermanentError)
    assert error.error_code == "TagLimitExceeded"
    assert str(error) == (
        "object already has 10 tags; adding BlockedContent would exceed S3's limit of 10"
    )
    assert existing == owner_tags(MAX_TAGS)


def test_merge_updates_our_key_even_with_ten_tags() -> None:
    # Given: 10 tags, one of them our key with another value: no new slot needed
    existing = owner_tags(MAX_TAGS - 1) + tags((KEY, "false"))
    # When
    merged = merge_tag(existing, KEY, "true")
    # Then
    assert merged == owner_tags(MAX_TAGS - 1) + tags((KEY, "true"))


def test_merge_with_ten_tags_including_ours_already_set_is_a_no_op() -> None:
    assert merge_tag(owner_tags(MAX_TAGS - 1) + tags((KEY, "true")), KEY, "true") is None


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (tags((KEY, "true")), []),
        (tags(("a", "1"), (KEY, "true"), ("b", "2")), tags(("a", "1"), ("b", "2"))),
        # Whatever the value: the key is ours.
        (tags((KEY, "false"), ("a", "1")), tags(("a", "1"))),
    ],
    ids=["only-ours", "between-others", "other-value"],
)
def test_remove_drops_only_our_key_keeping_order(existing, expected) -> None:
    assert remove_tag(existing, KEY) == expected


@pytest.mark.parametrize("existing", [[], tags(("a", "1"), ("blockedcontent", "true"))], ids=["empty", "other-case"])
def test_remove_returns_none_when_our_key_is_absent(existing) -> None:
    # S3 tag keys are case-sensitive: "blockedcontent" is someone else's tag.
    assert remove_tag(existing, KEY) is None


# -- plan_tags: several keys in one PutObjectTagging ----------------------------------------------

STATUS = "ModerationStatus"


def test_plan_sets_required_and_optional_keys_after_the_owners_tags() -> None:
    change = TagChange(required={KEY: "true"}, if_room={STATUS: "blocked"})

    planned, dropped = plan_tags(tags(("team", "photos")), change)

    assert planned == tags(("team", "photos"), (KEY, "true"), (STATUS, "blocked"))
    assert dropped == ()


def test_plan_updates_a_value_in_place_and_removes_first() -> None:
    existing = tags((KEY, "true"), ("team", "photos"), (STATUS, "blocked"))

    planned, dropped = plan_tags(existing, TagChange(remove=(KEY,), if_room={STATUS: "clean"}))

    assert planned == tags(("team", "photos"), (STATUS, "clean"))
    assert dropped == ()


def test_plan_of_nothing_to_change_is_none() -> None:
    existing = tags(("team", "photos"), (KEY, "true"), (STATUS, "blocked"))
    assert plan_tags(existing, TagChange(required={KEY: "true"}, if_room={STATUS: "blocked"})) == (None, ())
    assert plan_tags(existing, TagChange(remove=("absent",))) == (None, ())


def test_plan_drops_an_optional_key_without_a_free_slot_but_keeps_the_required_one() -> None:
    planned, dropped = plan_tags(owner_tags(9), TagChange(required={KEY: "true"}, if_room={STATUS: "blocked"}))

    assert planned == owner_tags(9) + tags((KEY, "true"))
    assert dropped == (STATUS,)
    assert plan_tags(owner_tags(10), TagChange(if_room={STATUS: "clean"})) == (None, (STATUS,))


def test_plan_raises_when_a_required_key_has_no_slot() -> None:
    with pytest.raises(TagLimitError):
        plan_tags(owner_tags(10), TagChange(required={KEY: "true"}))


def test_a_removal_frees_the_slot_an_optional_key_needs() -> None:
    existing = owner_tags(9) + tags((KEY, "true"))

    planned, dropped = plan_tags(existing, TagChange(remove=(KEY,), if_room={STATUS: "clean"}))

    assert planned == owner_tags(9) + tags((STATUS, "clean"))
    assert dropped == ()
