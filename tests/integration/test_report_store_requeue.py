"""ReportStore's requeue methods (requeue, count_selected, select_page) on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.events import ObjectEvent
from pipeline.report.schema import images
from pipeline.report.store import ImageRow, ReportStore, RowSelection

THREADS = 8
T0 = datetime(2024, 5, 14, 9, 0, tzinfo=timezone.utc)
LABELS = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 88.5, "TaxonomyLevel": 2, "Detector": "rekognition"}]


@pytest.fixture
def store(db_store: ReportStore) -> ReportStore:
    """This module's tests run on SQLite and PostgreSQL (see conftest.db_store)."""
    return db_store


def add_row(store: ReportStore, key: str, outcome: str = "failed", *, bucket: str = "uploads",
            version_id: str | None = "v1", error_code: str | None = "InternalServerError",
            updated_at: datetime | None = None) -> ImageRow:
    """A row decided as ``outcome``; ``updated_at`` set exactly when given."""
    event = ObjectEvent(bucket, key, "created", "ObjectCreated:Put", "2024-05-14T08:59:00Z", version_id=version_id,
                        etag="d41d8cd98f00b204e9800998ecf8427e", sequencer="0055AED6DCD90281E5")
    row, _ = store.upsert_pending(event)
    if outcome != "pending":
        row = store.record_decision(row.work_id, outcome=outcome, labels=LABELS, detector="rekognition",
                                    model_version="7.0", error_code=error_code if outcome == "failed" else None,
                                    error_message="boom" if outcome == "failed" else None, timings={"detect_ms": 3.5})
    if updated_at is not None:
        with store.engine.begin() as conn:
            conn.execute(images.update().where(images.c.work_id == row.work_id).values(updated_at=updated_at))
        row = store.get(row.work_id)
    return row


def requeue(store: ReportStore, row: ImageRow, **kwargs) -> ImageRow | None:
    return store.requeue(row.work_id, bucket=row.bucket, key=row.key, version_id=row.version_id, **kwargs)


def test_requeue_moves_a_failed_row_back_to_pending_and_clears_its_decision(store: ReportStore) -> None:
    # Given
    failed = add_row(store, "content/images/a.jpg")
    assert (failed.outcome, failed.error_code, failed.attempts) == ("failed", "InternalServerError", 0)

    # When
    row = requeue(store, failed)

    # Then
    assert row is not None and row == store.get(failed.work_id)
    assert (row.outcome, row.error_code, row.error_message, row.labels) == ("pending", None, None, [])
    assert (row.detector, row.model_version, row.timings, row.decided_at) == (None, None, None, None)
    assert row.attempts == failed.attempts  # it counts detection attempts; the next detect adds one
    assert row.updated_at > failed.updated_at
    # The object's identity and history stay as they were
    assert (row.id, row.bucket, row.key, row.version_id, row.etag, row.received_at) == (
        failed.id, failed.bucket, failed.key, failed.version_id, failed.etag, failed.received_at)


def test_a_requeued_row_takes_its_new_decision(store: ReportStore) -> None:
    row = requeue(store, add_row(store, "content/images/a.jpg"))
    decided = store.record_decision(row.work_id, outcome="clean", detector="rekognition", model_version="7.0")
    assert (decided.outcome, decided.error_code) == ("clean", None)
    assert decided.decided_at is not None


def test_requeue_twice_claims_the_row_once(store: ReportStore) -> None:
    failed = add_row(store, "content/images/a.jpg")
    assert requeue(store, failed) is not None
    assert requeue(store, failed) is None
    assert store.get(failed.work_id).outcome == "pending"


@pytest.mark.parametrize("outcome", ["clean", "blocked", "deleted", "pending"])
def test_requeue_of_failed_rows_leaves_other_outcomes_alone(store: ReportStore, outcome: str) -> None:
    row = add_row(store, "content/images/a.jpg", outcome)
    assert requeue(store, row) is None
    assert store.get(row.work_id) == row


def test_requeue_takes_clean_rows_only_when_asked(store: ReportStore) -> None:
    clean = add_row(store, "content/images/a.jpg", "clean")
    assert requeue(store, clean, outcomes=("failed",)) is None
    assert requeue(store, clean, outcomes=("failed", "clean")).outcome == "pending"


def test_requeue_needs_the_row_s_own_object_version(store: ReportStore) -> None:
    # Given: a versioned and an unversioned row
    versioned = add_row(store, "content/images/a.jpg")
    unversioned = add_row(store, "content/images/b.jpg", version_id=None)

    # Then: another bucket, key or version under the same work_id moves nothing
    for wrong in ({"bucket": "other"}, {"key": "content/images/x.jpg"}, {"version_id": "v2"}, {"version_id": None}):
        args = {"bucket": versioned.bucket, "key": versioned.key, "version_id": versioned.version_id, **wrong}
        assert store.requeue(versioned.work_id, **args) is None
    assert store.requeue(unversioned.work_id, bucket="uploads", key=unversioned.key, version_id="v1") is None
    assert store.requeue("0" * 64, bucket="uploads", key=versioned.key, version_id="v1") is None
    assert {store.get(r.work_id).outcome for r in (versioned, unversioned)} == {"failed"}
    # ... and the right one does, a null version matching a null version
    assert requeue(store, unversioned).outcome == "pending"


def test_concurrent_requeues_claim_the_row_exactly_once(store: ReportStore) -> None:
    # Given
    failed = add_row(store, "content/images/a.jpg")
    barrier = threading.Barrier(THREADS)
    claimed: list[ImageRow | None] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            claimed.append(requeue(store, failed))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # When
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then
    assert errors == []
    assert len([row for row in claimed if row is not None]) == 1
    assert store.get(failed.work_id).outcome == "pending"


def test_select_page_filters(store: ReportStore) -> None:
    # Given
    a = add_row(store, "content/images/a.jpg", error_code="AccessDeniedException", updated_at=T0)
    b = add_row(store, "content/images/b.jpg", error_code="InternalServerError", updated_at=T0 + timedelta(hours=1))
    c = add_row(store, "content/images/x/c.jpg", error_code="InternalServerError", updated_at=T0 + timedelta(hours=2))
    d = add_row(store, "content/images/d.jpg", bucket="other", updated_at=T0 + timedelta(hours=3))
    literal = add_row(store, "content/100%_x.jpg", updated_at=T0)
    clean = add_row(store, "content/images/e.jpg", "clean", updated_at=T0)
    add_row(store, "content/images/f.jpg", "blocked", updated_at=T0)

    def ids(selection: RowSelection) -> list[int]:
        rows = store.select_page(selection, limit=100)
        assert store.count_selected(selection) == len(rows)
        return [row.id for row in rows]

    # Then
    assert ids(RowSelection()) == [a.id, b.id, c.id, d.id, literal.id]
    assert ids(RowSelection(outcomes=("failed", "clean"))) == [a.id, b.id, c.id, d.id, literal.id, clean.id]
    assert ids(RowSelection(error_codes=("InternalServerError",))) == [b.id, c.id, d.id, literal.id]
    assert ids(RowSelection(error_codes=("AccessDeniedException", "NoSuchKey"))) == [a.id]
    assert ids(RowSelection(prefix="content/images/x/")) == [c.id]
    assert ids(RowSelection(prefix="content/100%_")) == [literal.id]
    assert ids(RowSelection(prefix="content/1%")) == []
    assert ids(RowSelection(bucket="other")) == [d.id]
    assert ids(RowSelection(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))) == [b.id, c.id]
    assert ids(RowSelection(until=T0 + timedelta(minutes=1))) == [a.id, literal.id]


def test_select_page_pages_by_id_while_rows_change(store: ReportStore) -> None:
    # Given
    rows = [add_row(store, f"content/images/{n}.jpg") for n in range(7)]
    selection = RowSelection()

    # When: each page is requeued before the next one is read (as the bridge does meanwhile)
    seen: list[int] = []
    after = 0
    while page := store.select_page(selection, after_id=after, limit=3):
        seen += [row.id for row in page]
        for row in page:
            requeue(store, row)
        after = page[-1].id

    # Then: every row once, in order
    assert seen == [row.id for row in rows]
    assert store.count_selected(selection) == 0
