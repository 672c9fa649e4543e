"""The store's ordering, liveness and sweeper methods, on SQLite and PostgreSQL (conftest.db_url)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from pipeline import outcomes
from pipeline.report import migrate
from pipeline.report.schema import images
from pipeline.report.store import ReportStore
from tests.integration.test_report_store import event

OLD_SEQ = "0055AED6DCD90281E5"
NEW_SEQ = "0055AED6DCD90281E6"
#: Shorter but later once right-padded: AWS compares sequencers after padding with zeros.
SHORT_LATER_SEQ = "0055AED6DCD9029"


@pytest.fixture
def store(db_store: ReportStore) -> ReportStore:
    """This module's tests run on SQLite and PostgreSQL (see conftest.db_store)."""
    return db_store


def unversioned(sequencer: str | None, etag: str) -> object:
    return event(version_id=None, sequencer=sequencer, etag=etag)


def backdate(store: ReportStore, work_id: str, seconds: float) -> None:
    when = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    with store.engine.begin() as conn:
        conn.execute(images.update().where(images.c.work_id == work_id).values(updated_at=when))


# -- ordering within one key ----------------------------------------------------------------


def test_migration_0002_allows_superseded_and_downgrade_turns_it_into_failed(db_url: str) -> None:
    migrate.upgrade(db_url)
    report = ReportStore.from_url(db_url)
    try:
        row, _ = report.upsert_pending(event())
        report.record_decision(row.work_id, outcome=outcomes.SUPERSEDED)
    finally:
        report.dispose()

    migrate.downgrade(db_url, "0001")

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT outcome, error_code FROM images")).all() == [("failed", "ObjectSuperseded")]
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()


def test_newer_upload_exists_compares_padded_sequencers(store: ReportStore) -> None:
    store.upsert_pending(unversioned(SHORT_LATER_SEQ, "bbb"))

    assert store.newer_upload_exists("uploads", "content/images/cat.jpg", OLD_SEQ) is True
    assert store.newer_upload_exists("uploads", "content/images/cat.jpg", "0055AED6DCD9029F") is False
    assert store.newer_upload_exists("uploads", "content/images/other.jpg", OLD_SEQ) is False
    assert store.newer_upload_exists("uploads", "content/images/cat.jpg", None) is False


def test_newer_upload_exists_ignores_versioned_rows(store: ReportStore) -> None:
    store.upsert_pending(event(version_id="v9", sequencer=NEW_SEQ))

    assert store.newer_upload_exists("uploads", "content/images/cat.jpg", OLD_SEQ) is False


def test_a_late_delete_spares_the_rows_of_later_uploads(store: ReportStore) -> None:
    # Given a first upload, a delete, and a second upload; the delete is delivered last
    first, _ = store.upsert_pending(unversioned(OLD_SEQ, "aaa"))
    second, _ = store.upsert_pending(unversioned("0055AED6DCD90281F0", "bbb"))
    store.record_decision(second.work_id, outcome=outcomes.CLEAN)

    # When the delete (sequenced between the two uploads) arrives
    marked = store.mark_deleted("uploads", "content/images/cat.jpg", None, sequencer="0055AED6DCD90281E9")

    # Then only the first upload's row is deleted
    assert marked == 1
    assert store.get(first.work_id).outcome == outcomes.DELETED
    assert store.get(second.work_id).outcome == outcomes.CLEAN


def test_a_delete_without_sequencer_marks_every_row_of_the_key(store: ReportStore) -> None:
    first, _ = store.upsert_pending(unversioned(None, "aaa"))
    second, _ = store.upsert_pending(unversioned(NEW_SEQ, "bbb"))

    assert store.mark_deleted("uploads", "content/images/cat.jpg", None) == 2
    assert {store.get(first.work_id).outcome, store.get(second.work_id).outcome} == {outcomes.DELETED}


def test_superseded_and_deleted_are_not_replaced_by_a_late_decision(store: ReportStore) -> None:
    row, _ = store.upsert_pending(event())
    store.record_decision(row.work_id, outcome=outcomes.SUPERSEDED)

    late = store.record_decision(row.work_id, outcome=outcomes.BLOCKED, labels=[{"Name": "Nudity", "Confidence": 99}])

    assert late.outcome == outcomes.SUPERSEDED
    assert [label["Name"] for label in late.labels] == ["Nudity"]


# -- liveness: attempts and the sweeper --------------------------------------------------------


def test_start_attempt_counts_and_refreshes_a_pending_row(store: ReportStore) -> None:
    row, _ = store.upsert_pending(event())
    backdate(store, row.work_id, 3600)

    started = store.start_attempt(row.work_id)

    assert started is not None and started.attempts == 1
    assert datetime.now(timezone.utc) - started.updated_at < timedelta(minutes=5)


def test_start_attempt_returns_none_for_decided_or_unknown_rows(store: ReportStore) -> None:
    row, _ = store.upsert_pending(event())
    store.record_decision(row.work_id, outcome=outcomes.CLEAN)

    assert store.start_attempt(row.work_id) is None
    assert store.start_attempt("0" * 64) is None
    assert store.get(row.work_id).attempts == 0


def test_claim_stale_takes_only_old_pending_rows_oldest_first(store: ReportStore) -> None:
    # Given three old pending rows, a fresh one, and an old decided one
    old = [store.upsert_pending(event(version_id=f"v{i}"))[0] for i in range(3)]
    for age, row in zip((300, 200, 100), old):
        backdate(store, row.work_id, age)
    fresh, _ = store.upsert_pending(event(version_id="fresh"))
    decided, _ = store.upsert_pending(event(version_id="decided"))
    store.record_decision(decided.work_id, outcome=outcomes.CLEAN)
    backdate(store, decided.work_id, 500)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=50)

    # When the sweeper claims two, then claims again
    first = store.claim_stale(cutoff, limit=2)
    second = store.claim_stale(cutoff, limit=10)
    third = store.claim_stale(cutoff, limit=10)

    # Then the two oldest come first, the third next, and nothing is claimed twice
    assert {row.work_id for row in first} == {old[0].work_id, old[1].work_id}
    assert [row.work_id for row in second] == [old[2].work_id]
    assert third == []
    assert fresh.work_id not in {row.work_id for row in first + second}
    assert store.pending_summary()[0] == 4


def test_concurrent_claims_never_claim_a_row_twice(store: ReportStore) -> None:
    rows = [store.upsert_pending(event(version_id=f"v{i}"))[0] for i in range(40)]
    for row in rows:
        backdate(store, row.work_id, 1000)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=60)
    claimed: list[str] = []
    lock = threading.Lock()

    def sweep() -> None:
        while batch := store.claim_stale(cutoff, limit=3):
            with lock:
                claimed.extend(row.work_id for row in batch)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(claimed) == sorted(row.work_id for row in rows)


def test_pending_summary_reports_count_and_oldest(store: ReportStore) -> None:
    assert store.pending_summary() == (0, None)
    row, _ = store.upsert_pending(event())
    store.upsert_pending(event(version_id="v2"))
    backdate(store, row.work_id, 7200)

    count, oldest = store.pending_summary()

    assert count == 2
    assert timedelta(seconds=7100) < datetime.now(timezone.utc) - oldest < timedelta(seconds=7300)
