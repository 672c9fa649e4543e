"""pipeline.requeue.selection (command-line filters -> RowSelection), batching and summaries: all pure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.report.store import RowSelection
from pipeline.requeue.dlq import MoveReport
from pipeline.requeue.rows import MAX_FAILURES_SHOWN, RequeueReport
from pipeline.requeue.selection import build_selection, parse_when
from pipeline.requeue.sending import MAX_BATCH_BYTES, Outgoing, batches

NOW = datetime(2024, 5, 14, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T09:30", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
        ("2024-05-01T09:30:15Z", datetime(2024, 5, 1, 9, 30, 15, tzinfo=timezone.utc)),
        ("2024-05-01 11:30:00+02:00", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
        ("90s", NOW - timedelta(seconds=90)),
        ("45m", NOW - timedelta(minutes=45)),
        ("2h", NOW - timedelta(hours=2)),
        (" 7d ", NOW - timedelta(days=7)),
        ("2W", NOW - timedelta(weeks=2)),
        ("0h", NOW),
    ],
)
def test_parse_when_reads_iso_dates_times_and_ages(text: str, expected: datetime) -> None:
    parsed = parse_when(text, NOW)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-2h", "2y", "2024-13-01", "", "1.5h"])
def test_parse_when_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 date/time"):
        parse_when(text, NOW)


def test_build_selection_defaults_until_to_now_and_keeps_filters() -> None:
    selection = build_selection(outcomes=("clean", "failed"), error_codes=("AccessDenied", "X", "AccessDenied"),
                                prefix="content/images/a/", bucket="b", since="2h", now=NOW)
    assert selection == RowSelection(outcomes=("failed", "clean"), bucket="b", prefix="content/images/a/",
                                     error_codes=("AccessDenied", "X"), since=NOW - timedelta(hours=2), until=NOW)


def test_build_selection_with_nothing_but_the_outcome() -> None:
    assert build_selection(outcomes=("failed",), now=NOW) == RowSelection(outcomes=("failed",), until=NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcomes": ("blocked",)}, "outcome must be failed or clean, not blocked"),
        ({"outcomes": ()}, "not nothing"),
        ({"outcomes": ("failed",), "since": "1h", "until": "2h"}, "must be before --until"),
        ({"outcomes": ("failed",), "since": "2024-05-14T12:00Z"}, "must be before --until"),
        ({"outcomes": ("failed",), "until": "soon"}, "'soon' is not an ISO-8601"),
    ],
)
def test_build_selection_refuses_bad_filters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_selection(now=NOW, **kwargs)


def test_batches_hold_at_most_ten_messages() -> None:
    messages = [Outgoing(str(i), "x") for i in range(23)]
    assert [[m.ref for m in batch] for batch in batches(messages)] == [
        [str(i) for i in range(10)], [str(i) for i in range(10, 20)], ["20", "21", "22"]]


def test_batches_keep_within_the_batch_size_limit_in_utf8_bytes() -> None:
    # Given: bodies of a third of the limit, counted in bytes ("é" is two)
    third = "é" * (MAX_BATCH_BYTES // 6)
    messages = [Outgoing(str(i), third) for i in range(7)]

    # When
    sizes = [len(batch) for batch in batches(messages)]

    # Then
    assert sizes == [3, 3, 1]
    assert list(batches([])) == []


def test_requeue_summary_for_a_dry_run_and_a_run_with_failures() -> None:
    dry = RequeueReport(selected=12, sent=11, skipped=1)
    assert dry.summary(dry_run=True) == [
        "would requeue 11 of 12 images",
        "skipped 1: key outside PIPELINE_PREFIX/PIPELINE_SUFFIXES (the bridge ignores it)",
    ]
    failed = {f"w{i}": "InternalError: try again" for i in range(MAX_FAILURES_SHOWN + 2)}
    run = RequeueReport(selected=30, sent=8, failed=failed)
    lines = run.summary(dry_run=False)
    assert lines[0] == "requeued 8 of 30 images"
    assert lines[1] == "not sent: w0: InternalError: try again"
    assert lines[-1] == "... and 2 more not sent"
    assert len(lines) == 1 + MAX_FAILURES_SHOWN + 1


def test_move_summary_and_completeness() -> None:
    assert MoveReport(depth=4).summary(dry_run=True) == [
        "would move 4 messages from the dead-letter queue (ApproximateNumberOfMessages)"]
    done = MoveReport(depth=4, received=4, sent=4, deleted=4)
    assert done.summary(dry_run=False) == ["moved 4 of 4 messages from the dead-letter queue to the events queue"]
    assert done.complete
    partial = MoveReport(depth=3, received=3, sent=2, deleted=1, failed={"m-1": "X: y"}, not_deleted={"m-2": "Z: w"})
    assert not partial.complete
    assert partial.summary(dry_run=False)[1:] == [
        "not sent, still in the dead-letter queue: m-1: X: y",
        "sent but not deleted, a later run moves it again: m-2: Z: w",
    ]


@pytest.mark.parametrize("text", ["99999999d", "999999999999w"])
def test_parse_when_refuses_an_age_before_any_date(text: str) -> None:
    with pytest.raises(ValueError, match="reaches back further than any date"):
        parse_when(text, NOW)
