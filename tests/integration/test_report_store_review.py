"""ReportStore's moderator-review methods, and how a decision holds against re-detection, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
import pytest

from pipeline.decision import Policy
from pipeline.events import ObjectEvent
from pipeline.report import migrate
from pipeline.report.schema import images
from pipeline.report.store import ImageRow, ReportStore, RowSelection, make_engine
from pipeline.review.actions import awaiting_review, newer_work_id, untagged_note
from tests.integration.test_report_store_requeue import LABELS, add_row, requeue

#: Below the policy's 80 % confidence: a failed row carrying only these labels is not flagged.
WEAK_LABELS = [{**LABELS[0], "Confidence": 40.0}]


@pytest.fixture
def store(db_store: ReportStore) -> ReportStore:
    """This module's tests run on SQLite and PostgreSQL (see conftest.db_store)."""
    return db_store


def failed_with(store: ReportStore, key: str, labels: list[dict]) -> ImageRow:
    row = add_row(store, key, "pending")
    return store.record_decision(row.work_id, outcome="failed", labels=labels, error_code="TagLimitExceeded")


def test_a_review_is_recorded_with_who_when_and_the_version(store: ReportStore) -> None:
    # Given
    blocked = add_row(store, "content/images/a.jpg", "blocked")
    # When
    row = store.record_review(blocked.work_id, decision="approved", reviewer="alice", note="a museum statue")
    # Then
    assert (row.review, row.reviewed_by) == ("approved", "alice")
    assert row.reviewed_at is not None and row.reviewed_at >= blocked.updated_at
    assert (row.outcome, row.labels, row.decided_at) == ("blocked", LABELS, blocked.decided_at)  # detection kept
    (record,) = store.review_history(blocked.work_id)
    assert (record.decision, record.reviewer, record.note) == ("approved", "alice", "a museum statue")
    assert (record.version_id, record.etag, record.decided_at) == ("v1", blocked.etag, row.reviewed_at)


def test_a_second_decision_is_kept_in_the_history_and_the_latest_wins(store: ReportStore) -> None:
    blocked = add_row(store, "content/images/a.jpg", "blocked")
    store.record_review(blocked.work_id, decision="approved", reviewer="alice")

    row = store.record_review(blocked.work_id, decision="rejected", reviewer="bob", note="on second look")

    assert (row.review, row.reviewed_by) == ("rejected", "bob")
    history = store.review_history(blocked.work_id)
    assert [(r.decision, r.reviewer, r.note) for r in history] == [("approved", "alice", None),
                                                                   ("rejected", "bob", "on second look")]
    assert history[0].decided_at <= history[1].decided_at == row.reviewed_at


def test_a_review_of_an_unknown_work_id_raises_and_records_nothing(store: ReportStore) -> None:
    with pytest.raises(KeyError):
        store.record_review("0" * 64, decision="approved", reviewer="alice")
    assert store.review_history("0" * 64) == []
    blocked = add_row(store, "content/images/a.jpg", "blocked")
    with pytest.raises(ValueError):
        store.record_review(blocked.work_id, decision="approved", reviewer="")
    with pytest.raises(ValueError):
        store.record_review(blocked.work_id, decision="maybe", reviewer="alice")
    assert store.review_history(blocked.work_id) == []


def test_awaiting_review_lists_flagged_undecided_rows_newest_first(store: ReportStore) -> None:
    # Given: two blocked rows, a failed row with blocking labels, one with weak labels, a clean one
    older = add_row(store, "content/images/older.jpg", "blocked")
    flagged_failed = failed_with(store, "content/images/ten-tags.jpg", LABELS)
    failed_with(store, "content/images/weak.jpg", WEAK_LABELS)
    add_row(store, "content/images/clean.jpg", "clean")
    add_row(store, "content/images/broken.jpg", "failed")  # failed with labels from add_row: flagged too
    newest = add_row(store, "content/images/newest.jpg", "blocked")
    decided = add_row(store, "content/images/decided.jpg", "blocked")
    store.record_review(decided.work_id, decision="rejected", reviewer="alice")
    # When
    listed = awaiting_review(store, Policy(), limit=10)
    # Then
    assert [row.key.removeprefix("content/images/") for row in listed] == [
        "newest.jpg", "broken.jpg", "ten-tags.jpg", "older.jpg"]
    assert [row.work_id for row in awaiting_review(store, Policy(), limit=2)] == [newest.work_id, listed[1].work_id]
    assert flagged_failed.work_id in {row.work_id for row in listed} and older.work_id == listed[-1].work_id


def test_awaiting_review_pages_past_rows_that_are_not_flagged(store: ReportStore, monkeypatch) -> None:
    from pipeline.review import actions

    monkeypatch.setattr(actions, "PAGE_SIZE", 2)
    flagged = add_row(store, "content/images/flagged.jpg", "blocked")
    for n in range(5):
        failed_with(store, f"content/images/weak-{n}.jpg", WEAK_LABELS)

    assert [row.work_id for row in awaiting_review(store, Policy(), limit=5)] == [flagged.work_id]


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_a_later_decision_for_a_reviewed_version_changes_nothing(store: ReportStore, decision: str) -> None:
    # Given: a moderator decided the blocked version
    blocked = add_row(store, "content/images/a.jpg", "blocked")
    reviewed = store.record_review(blocked.work_id, decision=decision, reviewer="alice")
    # When: a late task (a duplicate chain) records another decision for the same version
    row = store.record_decision(blocked.work_id, outcome="clean", labels=[], detector="rekognition")
    # Then
    assert row == reviewed == store.get(blocked.work_id)


@pytest.mark.parametrize("outcome", ["blocked", "failed"])
def test_requeue_never_moves_a_reviewed_row_back_to_pending(store: ReportStore, outcome: str) -> None:
    row = add_row(store, "content/images/a.jpg", outcome)
    reviewed = store.record_review(row.work_id, decision="approved", reviewer="alice")

    assert requeue(store, row, outcomes=("failed", "clean", "blocked")) is None
    assert store.get(row.work_id) == reviewed


def test_requeue_selection_leaves_reviewed_rows_out(store: ReportStore) -> None:
    kept = add_row(store, "content/images/kept.jpg", "failed")
    reviewed = add_row(store, "content/images/reviewed.jpg", "failed")
    store.record_review(reviewed.work_id, decision="rejected", reviewer="alice")
    selection = RowSelection(outcomes=("failed",))

    assert store.count_selected(selection) == 1
    assert [row.work_id for row in store.select_page(selection, limit=10)] == [kept.work_id]


def test_a_new_version_of_a_reviewed_key_is_judged_afresh(store: ReportStore) -> None:
    # Given: version v1 approved
    first = add_row(store, "content/images/a.jpg", "blocked", version_id="v1")
    store.record_review(first.work_id, decision="approved", reviewer="alice")
    # When: v2 of the same key arrives and is blocked
    second = add_row(store, "content/images/a.jpg", "blocked", version_id="v2")
    # Then: its own row, undecided by moderators, awaiting review
    assert second.work_id != first.work_id
    assert (second.outcome, second.review) == ("blocked", None)
    assert [row.work_id for row in awaiting_review(store, Policy(), limit=10)] == [second.work_id]


def test_migration_0003_keeps_existing_rows_and_downgrades_cleanly(db_url: str) -> None:
    # Given: a database at 0002 holding a blocked row
    migrate.upgrade(db_url, "0002")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO images (work_id, bucket, key, outcome, labels, attempts, received_at, updated_at) "
                "VALUES ('w1', 'b', 'content/images/a.jpg', 'blocked', '[]', 1, '2024-05-14 09:00:00', "
                "'2024-05-14 09:00:00')"))
        # When
        migrate.upgrade(db_url)
        store = ReportStore(engine)
        # Then: the row reads with no review, and can take one
        assert (store.get("w1").outcome, store.get("w1").review) == ("blocked", None)
        assert store.record_review("w1", decision="approved", reviewer="alice").review == "approved"
        # ... and back down to 0002: the columns and the history table are gone, the row stays
        migrate.downgrade(db_url, "0002")
        inspector = sa.inspect(engine)
        assert "reviews" not in inspector.get_table_names()
        assert {"review", "reviewed_by", "reviewed_at"}.isdisjoint(c["name"] for c in inspector.get_columns("images"))
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(images)).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_decision_without_a_tag_change_leaves_the_list_and_names_the_newer_row(store: ReportStore) -> None:
    # Given: a blocked version, a later row of the same key, and another key's row
    old = add_row(store, "content/images/a.jpg", "blocked", version_id="v1")
    newer = add_row(store, "content/images/a.jpg", "clean", version_id="v2")
    add_row(store, "content/images/b.jpg", "clean", version_id="v3")
    # When: recorded as actions.decide records a decision on bytes that are gone
    store.record_review(old.work_id, decision="approved", reviewer="alice",
                        note=untagged_note("the judged version was deleted (NoSuchVersion)", "statue"))
    # Then
    assert awaiting_review(store, Policy(), limit=10) == []
    (record,) = store.review_history(old.work_id)
    assert record.note == "[no tag changed: the judged version was deleted (NoSuchVersion)] statue"
    assert newer_work_id(store, old) == newer.work_id
    assert newer_work_id(store, store.get(newer.work_id)) is None
