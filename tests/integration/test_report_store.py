"""The report store and its migrations, on a SQLite file and on PostgreSQL (see conftest.db_url)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pipeline.detectors.base import Label
from pipeline.errors import ConfigurationError, RetryableError
from pipeline.report import migrate
from pipeline.report.schema import metadata
from pipeline.report.store import MAX_ERROR_MESSAGE, ImageRow, ReportStore, make_engine

THREADS = 8


@dataclass(frozen=True)
class FakeEvent:
    """The attributes of pipeline.events.ObjectEvent that the store reads."""

    bucket: str = "uploads"
    key: str = "content/images/cat.jpg"
    kind: str = "created"
    event_name: str = "ObjectCreated:Put"
    event_time: str | None = "2024-05-01T12:34:56.789Z"
    version_id: str | None = "v1"
    size: int | None = 12345
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e"
    sequencer: str | None = "0055AED6DCD90281E5"
    work_id: str = ""

    def __post_init__(self) -> None:
        if not self.work_id:
            identity = f"{self.bucket}\0{self.key}\0{self.version_id}\0{self.etag}".encode()
            object.__setattr__(self, "work_id", hashlib.sha256(identity).hexdigest())


def event(**changes: object) -> FakeEvent:
    """A FakeEvent with some attributes changed; work_id follows the identity fields."""
    return replace(FakeEvent(), work_id="", **changes)  # type: ignore[arg-type]


LABELS = [
    {"Name": "Explicit Nudity", "ParentName": "", "Confidence": 98.125, "TaxonomyLevel": 1, "Detector": "rekognition"},
    {"Name": "Nudity", "ParentName": "Explicit Nudity", "Confidence": 97.5, "TaxonomyLevel": 2, "Detector": "rekognition"},
]


@pytest.fixture
def store(db_store: ReportStore) -> ReportStore:
    """A store on a freshly migrated database (SQLite and PostgreSQL, see conftest.db_store)."""
    return db_store


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- migrations ---------------------------------------------------------------------------


def test_upgrade_from_empty_to_head(db_url: str) -> None:
    # Given an empty database
    assert migrate.current_revision(db_url) is None

    # When
    migrate.upgrade(db_url)

    # Then
    assert migrate.current_revision(db_url) == migrate.head_revision() == "0003"
    assert {"images", "malformed_messages", "alembic_version"} <= table_names(db_url)


def test_ensure_current_fails_before_upgrade_and_passes_after(db_url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        migrate.ensure_current(db_url)
    assert str(info.value) == "report database at revision none, expected 0003: run `pipeline migrate`"

    migrate.upgrade(db_url)

    migrate.ensure_current(db_url)  # no exception


def test_downgrade_to_base_removes_the_tables(db_url: str) -> None:
    migrate.upgrade(db_url)

    migrate.downgrade(db_url, "base")

    assert migrate.current_revision(db_url) is None
    assert not {"images", "malformed_messages"} & table_names(db_url)
    with pytest.raises(ConfigurationError, match="at revision none"):
        migrate.ensure_current(db_url)


def test_migrations_create_exactly_schema_py(db_url: str) -> None:
    # A change to schema.py without a revision (or the reverse) shows up here.
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_sqlite_file_uses_wal_and_a_busy_timeout(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_in_memory_store_is_migrated_and_usable() -> None:
    report = ReportStore.from_url("sqlite://")
    try:
        migrate.ensure_current(report.engine)
        row, created = report.upsert_pending(event())
        assert created and report.get(row.work_id) == row
    finally:
        report.dispose()


def test_unreachable_database_raises_retryable_error() -> None:
    # Port 1 on localhost: nothing listens, the connection is refused at once.
    report = ReportStore(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"))
    with pytest.raises(RetryableError) as info:
        report.get("0" * 64)
    assert info.value.error_code == "DatabaseUnavailable"


# -- upsert_pending -----------------------------------------------------------------------


def test_upsert_pending_inserts_a_pending_row(store: ReportStore) -> None:
    given = event()

    row, created = store.upsert_pending(given)

    assert created is True
    assert isinstance(row, ImageRow)
    assert (row.work_id, row.bucket, row.key, row.version_id) == (given.work_id, "uploads", given.key, "v1")
    assert (row.etag, row.sequencer, row.event_name, row.size) == (given.etag, given.sequencer, "ObjectCreated:Put", 12345)
    assert row.event_time == datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=timezone.utc)
    assert (row.outcome, row.labels, row.attempts, row.decided_at, row.timings) == ("pending", [], 0, None, None)
    assert store.get(given.work_id) == row


def test_upsert_pending_is_idempotent(store: ReportStore) -> None:
    first, first_created = store.upsert_pending(event())

    second, second_created = store.upsert_pending(event())

    assert (first_created, second_created) == (True, False)
    assert second == first
    assert store.counts_by_outcome()["pending"] == 1


def test_upsert_pending_keeps_an_existing_decision(store: ReportStore) -> None:
    row, _ = store.upsert_pending(event())
    store.record_decision(row.work_id, outcome="clean")

    again, created = store.upsert_pending(event())

    assert created is False and again.outcome == "clean"


def test_concurrent_upserts_give_one_row(store: ReportStore) -> None:
    # Given THREADS callers released at the same instant with the same object version
    barrier = threading.Barrier(THREADS)
    results: list[tuple[ImageRow, bool]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            results.append(store.upsert_pending(event()))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    # When
    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then
    assert errors == []
    assert sorted(created for _, created in results) == [False] * (THREADS - 1) + [True]
    assert len({row.id for row, _ in results}) == 1
    assert len(store.find()) == 1


def test_distinct_versions_get_distinct_rows(store: ReportStore) -> None:
    store.upsert_pending(event(version_id="v1"))
    store.upsert_pending(event(version_id="v2"))

    assert sorted(row.version_id for row in store.find(bucket="uploads")) == ["v1", "v2"]


# -- record_decision / increment_attempts -------------------------------------------------


def test_record_decision_round_trips_values(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())
    timings = {"download": 0.125, "detect": 1.5, "tag": 0.03}

    row = store.record_decision(
        pending.work_id,
        outcome="blocked",
        labels=LABELS,
        detector="rekognition",
        model_version="7.0",
        timings=timings,
    )

    assert row == store.get(pending.work_id)
    assert (row.outcome, row.labels, row.timings) == ("blocked", LABELS, timings)
    assert (row.detector, row.model_version, row.error_code, row.error_message) == ("rekognition", "7.0", None, None)
    assert row.decided_at is not None and row.updated_at >= pending.updated_at
    assert row.received_at == pending.received_at


def test_record_decision_accepts_label_objects(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())
    labels = [Label.from_dict(item) for item in LABELS]

    row = store.record_decision(pending.work_id, outcome="blocked", labels=labels)

    assert row.labels == [label.to_dict() for label in labels]


def test_record_decision_stores_failures(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())

    row = store.record_decision(
        pending.work_id, outcome="failed", error_code="InvalidImageFormatException", error_message="x" * 5000
    )

    assert (row.outcome, row.error_code, row.labels) == ("failed", "InvalidImageFormatException", [])
    assert row.error_message == "x" * MAX_ERROR_MESSAGE
    assert store.get(pending.work_id).error_message == "x" * MAX_ERROR_MESSAGE


def test_record_decision_twice_gives_the_same_row(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())
    arguments = dict(outcome="blocked", labels=LABELS, detector="rekognition", model_version="7.0", timings={"detect": 1.0})

    first = store.record_decision(pending.work_id, **arguments)
    second = store.record_decision(pending.work_id, **arguments)

    assert second == first
    assert store.get(pending.work_id) == first


def test_record_decision_replaces_an_earlier_different_decision(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())
    failed = store.record_decision(pending.work_id, outcome="failed", error_code="ThrottlingException", error_message="slow")

    clean = store.record_decision(pending.work_id, outcome="clean", detector="rekognition")

    assert (clean.outcome, clean.error_code, clean.error_message) == ("clean", None, None)
    assert clean.decided_at >= failed.decided_at


def test_record_decision_for_unknown_work_id_raises_key_error(store: ReportStore) -> None:
    with pytest.raises(KeyError):
        store.record_decision("f" * 64, outcome="clean")


def test_record_decision_rejects_unknown_outcome(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())

    with pytest.raises(ValueError, match="outcome must be one of"):
        store.record_decision(pending.work_id, outcome="maybe")

    assert store.get(pending.work_id).outcome == "pending"


def test_increment_attempts_counts_up(store: ReportStore) -> None:
    pending, _ = store.upsert_pending(event())

    counts = [store.increment_attempts(pending.work_id) for _ in range(3)]

    assert counts == [1, 2, 3]
    assert store.get(pending.work_id).attempts == 3
    with pytest.raises(KeyError):
        store.increment_attempts("f" * 64)


# -- mark_deleted -------------------------------------------------------------------------


def test_mark_deleted_with_version_marks_only_that_version(store: ReportStore) -> None:
    v1, _ = store.upsert_pending(event(version_id="v1"))
    v2, _ = store.upsert_pending(event(version_id="v2"))
    other, _ = store.upsert_pending(event(key="content/images/dog.jpg"))

    assert store.mark_deleted("uploads", v1.key, "v1") == 1

    assert [store.get(r.work_id).outcome for r in (v1, v2, other)] == ["deleted", "pending", "pending"]


def test_mark_deleted_without_version_marks_every_version(store: ReportStore) -> None:
    v1, _ = store.upsert_pending(event(version_id="v1"))
    v2, _ = store.upsert_pending(event(version_id="v2"))
    store.record_decision(v2.work_id, outcome="blocked", labels=LABELS)
    other_bucket, _ = store.upsert_pending(event(bucket="elsewhere"))

    assert store.mark_deleted("uploads", v1.key) == 2

    assert [store.get(r.work_id).outcome for r in (v1, v2, other_bucket)] == ["deleted", "deleted", "pending"]
    assert store.get(v2.work_id).labels == LABELS  # the evidence stays
    assert store.mark_deleted("uploads", v1.key) == 0  # a repeated delete event changes nothing
    assert store.mark_deleted("uploads", "content/images/never-seen.jpg") == 0


def test_a_decision_arriving_after_the_delete_keeps_the_row_deleted(store: ReportStore) -> None:
    # Given: the object was deleted while its chain was running
    row, _ = store.upsert_pending(event(version_id="v1"))
    store.mark_deleted("uploads", row.key, "v1")
    # When: the chain finishes
    after = store.record_decision(row.work_id, outcome="failed", error_code="NoSuchVersion")
    # Then: still deleted, with the chain's evidence kept
    assert (after.outcome, after.error_code) == ("deleted", "NoSuchVersion")


# -- malformed messages -------------------------------------------------------------------


def test_record_malformed_stores_a_fingerprint_never_the_body(store: ReportStore) -> None:
    body = '{"Records": "not a list", "secret": "AKIA-DO-NOT-STORE"}'

    store.record_malformed("msg-1", "MalformedEvent", "Records is not a list", body)
    store.record_malformed("msg-2", "MalformedEvent", "not JSON", b"\xff\xfe binary")

    assert store.malformed_count() == 2
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM malformed_messages ORDER BY id"))]
    assert rows[0]["body_size"] == len(body.encode()) and rows[0]["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert rows[1]["body_size"] == 9 and rows[1]["body_sha256"] == hashlib.sha256(b"\xff\xfe binary").hexdigest()
    assert (rows[0]["message_id"], rows[0]["error_code"], rows[0]["reason"]) == ("msg-1", "MalformedEvent", "Records is not a list")
    assert not any("AKIA" in str(value) for row in rows for value in row.values())


# -- find / counts ------------------------------------------------------------------------


def _decided(store: ReportStore, outcome: str, **changes: object) -> ImageRow:
    pending, _ = store.upsert_pending(event(**changes))
    if outcome == "pending":
        return pending
    error_code = "NoSuchKey" if outcome == "failed" else None
    return store.record_decision(pending.work_id, outcome=outcome, error_code=error_code)


def test_find_filters(store: ReportStore) -> None:
    clean = _decided(store, "clean", key="content/images/a.jpg")
    blocked = _decided(store, "blocked", key="content/images/b.jpg")
    failed = _decided(store, "failed", key="content/other/c.jpg")
    elsewhere = _decided(store, "blocked", bucket="elsewhere", key="content/images/d.jpg")
    literal = _decided(store, "pending", key="content/100%_x.jpg")

    def ids(rows: list[ImageRow]) -> set[int]:
        return {row.id for row in rows}

    assert ids(store.find()) == ids([clean, blocked, failed, elsewhere, literal])
    assert ids(store.find(outcome="blocked")) == ids([blocked, elsewhere])
    assert ids(store.find(outcome="blocked", bucket="uploads")) == ids([blocked])
    assert ids(store.find(prefix="content/images/")) == ids([clean, blocked, elsewhere])
    assert ids(store.find(prefix="content/100%_")) == ids([literal])  # % and _ are literal
    assert ids(store.find(prefix="content/1%")) == set()
    assert ids(store.find(error_code="NoSuchKey")) == ids([failed])
    assert ids(store.find(outcome="clean", error_code="NoSuchKey")) == set()


def test_find_orders_newest_first_and_limits(store: ReportStore) -> None:
    rows = [_decided(store, "clean", key=f"content/images/{n}.jpg") for n in range(4)]

    found = store.find(limit=2)

    assert [row.id for row in found] == [rows[3].id, rows[2].id]


def test_find_by_time_window(store: ReportStore) -> None:
    before = _decided(store, "clean", key="content/images/before.jpg")
    middle = _decided(store, "clean", key="content/images/middle.jpg")
    after = _decided(store, "clean", key="content/images/after.jpg")

    assert before.updated_at < middle.updated_at < after.updated_at

    window = store.find(since=middle.updated_at, until=after.updated_at)

    assert [row.id for row in window] == [middle.id]  # since inclusive, until exclusive
    assert {row.id for row in store.find(since=before.updated_at)} == {before.id, middle.id, after.id}
    assert store.find(until=before.updated_at) == []
    # Another time zone names the same instant.
    plus_two = after.updated_at.astimezone(timezone(timedelta(hours=2)))
    assert after.id in {row.id for row in store.find(since=plus_two)}
    assert store.find(since=after.updated_at + timedelta(seconds=1)) == []


def test_counts_by_outcome(store: ReportStore) -> None:
    for n, outcome in enumerate(["clean", "clean", "blocked", "failed", "pending"]):
        _decided(store, outcome, key=f"content/images/{n}.jpg")

    counts = store.counts_by_outcome()

    assert counts == {"pending": 1, "clean": 2, "blocked": 1, "failed": 1, "deleted": 0, "superseded": 0}


# -- time zones ---------------------------------------------------------------------------


def test_datetimes_are_tz_aware_utc(store: ReportStore) -> None:
    # An event time with an offset is stored and returned as the same instant in UTC.
    given = event(event_time="2024-05-01T14:00:00+02:00")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)

    pending, _ = store.upsert_pending(given)
    decided = store.record_decision(pending.work_id, outcome="clean")
    row = store.get(pending.work_id)

    assert row.event_time == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    for value in (row.event_time, row.received_at, row.decided_at, row.updated_at, *[r.updated_at for r in store.find()]):
        assert value is not None and value.utcoffset() == timedelta(0)
    assert before <= row.received_at <= row.decided_at == decided.decided_at <= datetime.now(timezone.utc)
