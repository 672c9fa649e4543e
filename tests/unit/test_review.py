"""The pure parts of moderator review: which rows are flagged, which tags a decision or outcome calls
for, and the `pipeline review` command's formatting and bad input (no services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pipeline import tagplan
from pipeline.cli import cli
from pipeline.commands.review import format_age, resolve_reviewer, table_lines
from pipeline.decision import Policy
from pipeline.review.actions import age_seconds, as_dict
from pipeline.review.decisions import is_flagged_row
from pipeline.settings import Settings
from pipeline.tagging import TagChange

NOW = datetime(2024, 5, 14, 12, 0, tzinfo=timezone.utc)
STRONG = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 91.0, "TaxonomyLevel": 2}]
WEAK = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 50.0, "TaxonomyLevel": 2}]


@dataclass
class Row:
    """The ImageRow attributes review reads."""

    outcome: str
    labels: list[dict[str, Any]] = field(default_factory=list)
    work_id: str = "a" * 64
    bucket: str = "uploads"
    key: str = "content/images/cat.jpg"
    version_id: str | None = "v1"
    error_code: str | None = None
    decided_at: datetime | None = NOW - timedelta(minutes=90)
    updated_at: datetime = NOW - timedelta(minutes=90)


@pytest.mark.parametrize(
    ("row", "flagged"),
    [
        (Row("blocked", STRONG), True),
        (Row("blocked"), True),  # blocked is flagged whatever the labels say now
        (Row("failed", STRONG, error_code="TagLimitExceeded"), True),
        (Row("failed", WEAK), False),
        (Row("failed"), False),  # failed before detection: nothing to review
        (Row("clean", STRONG), False),
        (Row("pending"), False),
        (Row("deleted", STRONG), False),
    ],
)
def test_flagged_rows_are_blocked_or_failed_with_blocking_labels(row: Row, flagged: bool) -> None:
    assert is_flagged_row(row, Policy()) is flagged


def test_flagged_failed_rows_follow_the_block_categories() -> None:
    row = Row("failed", STRONG)
    assert is_flagged_row(row, Policy(block_categories=("Explicit",))) is False
    assert is_flagged_row(row, Policy(block_categories=("Violence",))) is True


def test_outcome_tags_without_the_status_tag() -> None:
    settings = Settings()
    assert tagplan.for_outcome(settings, "blocked") == TagChange(required={"BlockedContent": "true"})
    for outcome in ("clean", "failed", "deleted", "superseded", None):
        assert tagplan.for_outcome(settings, outcome) is None


def test_outcome_tags_with_the_status_tag() -> None:
    settings = Settings(status_tag_key="ModerationStatus", tag_key="Hidden", tag_value="yes")
    assert tagplan.for_outcome(settings, "blocked") == TagChange(required={"Hidden": "yes"},
                                                                  if_room={"ModerationStatus": "blocked"})
    assert tagplan.for_outcome(settings, "clean") == TagChange(if_room={"ModerationStatus": "clean"})
    assert tagplan.for_outcome(settings, "failed") == TagChange(if_room={"ModerationStatus": "failed"})
    assert tagplan.for_outcome(settings, "deleted") is None


def test_review_tags() -> None:
    plain, status = Settings(), Settings(status_tag_key="ModerationStatus")
    assert tagplan.for_review(plain, "approved") == TagChange(remove=("BlockedContent",))
    assert tagplan.for_review(status, "approved") == TagChange(remove=("BlockedContent",),
                                                               if_room={"ModerationStatus": "clean"})
    assert tagplan.for_review(plain, "rejected") == TagChange(required={"BlockedContent": "true"})
    assert tagplan.for_review(status, "rejected") == TagChange(required={"BlockedContent": "true"},
                                                               if_room={"ModerationStatus": "blocked"})
    with pytest.raises(ValueError):
        tagplan.for_review(plain, "maybe")


def test_list_item_json_and_age() -> None:
    row = Row("failed", STRONG, error_code="TagLimitExceeded")
    assert as_dict(row, NOW) == {
        "work_id": "a" * 64, "url": "s3://uploads/content/images/cat.jpg", "version_id": "v1", "outcome": "failed",
        "error_code": "TagLimitExceeded", "labels": ["Weapons"], "decided_at": "2024-05-14T10:30:00+00:00",
        "age_seconds": 5400.0,
    }
    assert age_seconds(Row("blocked", decided_at=None, updated_at=NOW - timedelta(seconds=7)), NOW) == 7.0


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.9, "59s"), (60, "1m"), (5400, "1h"), (90000, "1d")])
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def test_table_lines() -> None:
    item = as_dict(Row("blocked", STRONG), NOW)
    header, line, footer = table_lines([item])
    assert header.split() == ["work_id", "age", "outcome", "version", "labels", "url"]
    assert line.split() == ["a" * 64, "1h", "blocked", "v1", "Weapons", "s3://uploads/content/images/cat.jpg"]
    assert footer == "1 awaiting review"
    assert table_lines([]) == ["nothing awaits review"]


def test_reviewer_is_given_or_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_reviewer("  alice ") == "alice"
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    assert resolve_reviewer(None) == "carol"
    with pytest.raises(click.BadParameter):
        resolve_reviewer("  ")

    def no_user() -> str:
        raise OSError("no login name")

    monkeypatch.setattr("getpass.getuser", no_user)
    with pytest.raises(click.UsageError, match="give --by"):
        resolve_reviewer(None)


@pytest.mark.parametrize("args", [["review", "approve", "w", "--by", ""], ["review", "list", "--limit", "0"],
                                  ["review", "list", "--format", "csv"], ["review", "reject"]])
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Error" in result.output and "Traceback" not in result.output
