"""The report store: what happened to every image, in SQLite or PostgreSQL.

The bridge writes a ``pending`` row when an event arrives; a worker records the decision; S3
deletes mark rows ``deleted``. Every write is safe to run twice (Celery's ``acks_late``), and
``upsert_pending`` is safe under concurrent calls from several processes.

Database failures that may pass (lost connection, a locked SQLite file) are raised as
:class:`~pipeline.errors.RetryableError`; anything else is a bug and propagates unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from pipeline.errors import ConfigurationError, RetryableError
from pipeline.events import sequencer_order
from pipeline.outcomes import FAILED
from pipeline.review.decisions import DECISIONS
from pipeline.report.schema import (
    DELETED,
    ERROR_CODE_LENGTH,
    OUTCOMES,
    PENDING,
    REVIEWER_LENGTH,
    SUPERSEDED,
    as_utc,
    images,
    malformed_messages,
    reviews,
)

#: Longest error message / malformed reason kept; the full text is in the worker's log.
MAX_ERROR_MESSAGE = 2000
#: How long a SQLite connection waits for another process's write lock before giving up, ms.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Outcomes a late decision never replaces: the object version is gone either way.
STICKY_OUTCOMES = (DELETED, SUPERSEDED)
#: Error code carried by the RetryableError raised when the database cannot be reached.
DATABASE_UNAVAILABLE = "DatabaseUnavailable"
#: Rows a streamed report query fetches at a time.
STREAM_BATCH = 1000
#: Keys per IN (...) query: well under SQLite's and PostgreSQL's bound-parameter limits.
KEYS_PER_QUERY = 500
#: Seconds a PostgreSQL connect waits for the server (libpq's connect_timeout).
CONNECT_TIMEOUT_SECONDS = 5

#: Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (see make_engine).
_SQLITE_IMMEDIATE = "pipeline_sqlite_immediate"


class ObjectEventLike(Protocol):
    """The attributes of :class:`pipeline.events.ObjectEvent` that the store reads."""

    bucket: str
    key: str
    event_name: str
    event_time: str | None
    version_id: str | None
    size: int | None
    etag: str | None
    sequencer: str | None
    work_id: str


@dataclass(frozen=True)
class ImageRow:
    """One ``images`` row; datetimes are aware UTC, ``labels`` a list of Rekognition-shaped dicts."""

    id: int
    work_id: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    event_name: str | None
    event_time: datetime | None
    size: int | None
    outcome: str
    labels: list[dict[str, Any]]
    detector: str | None
    model_version: str | None
    error_code: str | None
    error_message: str | None
    timings: dict[str, float] | None
    attempts: int
    received_at: datetime
    decided_at: datetime | None
    updated_at: datetime
    #: The latest moderator decision on this version (``approved``/``rejected``), who and when.
    review: str | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> "ImageRow":
        """Build from a result row's ``._mapping``."""
        values = {f.name: row[f.name] for f in fields(cls)}
        values["labels"] = list(values["labels"] or [])
        return cls(**values)


@dataclass(frozen=True)
class ReviewRecord:
    """One moderator decision from the ``reviews`` history."""

    id: int
    work_id: str
    decision: str
    reviewer: str
    note: str | None
    decided_at: datetime
    version_id: str | None
    etag: str | None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> "ReviewRecord":
        """Build from a result row's ``._mapping``."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RowSelection:
    """Which rows a bulk operation (``pipeline requeue``) reads: every filter given must match.

    ``prefix`` matches the start of ``key`` literally; ``since`` (inclusive) and ``until``
    (exclusive) bound ``updated_at``, which for a decided row is when it was decided.
    """

    outcomes: tuple[str, ...] = (FAILED,)
    bucket: str | None = None
    prefix: str | None = None
    #: Any of these error codes; empty means any (or none).
    error_codes: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


def is_memory_url(url: str | sa.URL) -> bool:
    """True for an in-memory SQLite URL (``sqlite://``, ``sqlite:///:memory:``)."""
    parsed = sa.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def make_engine(url: str | sa.URL) -> Engine:
    """An Engine for the report database, configured for several processes sharing it.

    SQLite files get WAL (readers never block the writer) and a busy timeout (writers wait for
    each other instead of failing). In-memory SQLite shares one connection (StaticPool), so a
    store and its migrations see the same database; it is meant for single-threaded unit tests.
    A URL that cannot work (unparsable, unknown dialect, driver missing) is a ConfigurationError
    naming PIPELINE_DATABASE_URL.
    """
    try:
        return _create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = " (install the `postgres` extra for PostgreSQL)" if "psycopg" in str(exc) else ""
        raise ConfigurationError(f"PIPELINE_DATABASE_URL is not usable: {exc}{hint}") from None


def _create_engine(url: str | sa.URL) -> Engine:
    backend = sa.make_url(url).get_backend_name()
    if backend != "sqlite":
        # pre_ping: workers live for days and PostgreSQL connections get cut. A server that does not
        # answer fails the connect after CONNECT_TIMEOUT_SECONDS instead of holding the caller.
        timeout = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if backend == "postgresql" else {}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=timeout)
    memory = is_memory_url(url)
    if memory:
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url)
    _configure_sqlite(engine, wal=not memory)
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """Set pragmas on connect and take over transaction control from the sqlite3 module.

    sqlite3 on its own begins transactions late (just before the first write) and never for DDL,
    which breaks read-then-write atomicity and transactional migrations. SQLAlchemy's documented
    recipe: switch the driver to autocommit and emit BEGIN ourselves; writes ask for
    BEGIN IMMEDIATE so they take the write lock first and wait on ``busy_timeout`` rather than
    failing with "database is locked" when upgrading a read lock.
    """

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_SQLITE_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_event_time(value: str | datetime | None) -> datetime | None:
    """S3's ISO-8601 ``eventTime`` (``2024-05-01T12:00:00.123Z``) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(value))


def _truncate(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def _label_dicts(labels: Iterable[Any]) -> list[dict[str, Any]]:
    """Accept label dicts or :class:`~pipeline.detectors.base.Label` objects; store dicts."""
    return [dict(item.to_dict() if hasattr(item, "to_dict") else item) for item in labels]


def _insert(dialect_name: str) -> Any:
    """The dialect's INSERT construct, which knows ON CONFLICT."""
    if dialect_name == "postgresql":
        return postgresql.insert
    if dialect_name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"report store supports sqlite and postgresql, not {dialect_name}")


class ReportStore:
    """Reads and writes the report tables through one Engine (migrated to head beforehand)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = _insert(engine.dialect.name)

    @classmethod
    def from_url(cls, url: str) -> "ReportStore":
        """A store for ``url``. An in-memory database is born empty, so it is migrated here."""
        engine = make_engine(url)
        if is_memory_url(url):
            from pipeline.report.migrate import upgrade  # migrate imports this module

            upgrade(engine)
        return cls(engine)

    def dispose(self) -> None:
        """Close pooled connections (call in tests and on shutdown)."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection in a write transaction; database outages become RetryableError."""
        with self._translate_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{_SQLITE_IMMEDIATE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads; database outages become RetryableError."""
        with self._translate_errors(), self.engine.connect() as conn:
            yield conn

    @staticmethod
    @contextmanager
    def _translate_errors() -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            # Lost connections, refused connections, a lock held past busy_timeout: all may pass.
            raise RetryableError(f"report database unavailable: {exc.orig}", code=DATABASE_UNAVAILABLE) from exc

    # -- images ---------------------------------------------------------------------------

    def upsert_pending(self, event: ObjectEventLike) -> tuple[ImageRow, bool]:
        """Insert a ``pending`` row for ``event`` unless its ``work_id`` exists; return (row, created).

        ON CONFLICT DO NOTHING makes concurrent calls for one object version safe: exactly one
        inserts, the others see ``created=False`` and the existing row (whatever its outcome).
        """
        now = _now()
        statement = (
            self._insert(images)
            .values(
                work_id=event.work_id,
                bucket=event.bucket,
                key=event.key,
                version_id=event.version_id,
                etag=event.etag,
                sequencer=event.sequencer,
                event_name=event.event_name,
                event_time=_parse_event_time(event.event_time),
                size=event.size,
                outcome=PENDING,
                labels=[],
                attempts=0,
                received_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["work_id"])
            # RETURNING yields a row only when this call inserted. Not rowcount: on PostgreSQL
            # SQLAlchemy adds RETURNING for the new primary key itself and then reports -1.
            .returning(images.c.id)
        )
        with self._write() as conn:
            created = conn.execute(statement).first() is not None
            row = self._select_one(conn, event.work_id)
        assert row is not None  # inserted or already there, inside the same transaction
        return row, created

    def get(self, work_id: str) -> ImageRow | None:
        """The row for ``work_id``, or None."""
        with self._read() as conn:
            return self._select_one(conn, work_id)

    def record_decision(
        self,
        work_id: str,
        *,
        outcome: str,
        labels: Iterable[Any] = (),
        detector: str | None = None,
        model_version: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> ImageRow:
        """Store the outcome for ``work_id`` and return the row. Raises KeyError if unknown.

        Idempotent: repeating the same decision leaves the row as it is (``decided_at`` keeps the
        first time), so a task delivered twice changes nothing. A row whose object was deleted
        (or overwritten by a newer upload) while it was being judged stays ``deleted``
        (``superseded``); the labels and error are still kept. A row a moderator has decided is
        returned unchanged: their decision on this version wins over any later re-detection.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        decision = {
            "outcome": outcome,
            "labels": _label_dicts(labels),
            "detector": detector,
            "model_version": model_version,
            "error_code": _truncate(error_code, ERROR_CODE_LENGTH),
            "error_message": _truncate(error_message, MAX_ERROR_MESSAGE),
            "timings": None if timings is None else {name: float(v) for name, v in timings.items()},
        }
        with self._write() as conn:
            current = self._select_one(conn, work_id, for_update=True)
            if current is None:
                raise KeyError(work_id)
            if current.review is not None:
                return current
            if current.outcome in STICKY_OUTCOMES:
                decision["outcome"] = current.outcome
            if _same_decision(current, decision) and current.decided_at is not None:
                return current
            now = _now()
            conn.execute(
                images.update()
                .where(images.c.work_id == work_id)
                .values(**decision, decided_at=now, updated_at=now)
            )
            row = self._select_one(conn, work_id)
        assert row is not None
        return row

    def increment_attempts(self, work_id: str) -> int:
        """Add one to ``attempts`` and return the new count. Raises KeyError if unknown."""
        statement = (
            images.update()
            .where(images.c.work_id == work_id)
            .values(attempts=images.c.attempts + 1, updated_at=_now())
            .returning(images.c.attempts)
        )
        with self._write() as conn:
            attempts = conn.execute(statement).scalar_one_or_none()
        if attempts is None:
            raise KeyError(work_id)
        return int(attempts)

    def mark_deleted(self, bucket: str, key: str, version_id: str | None = None, *, sequencer: str | None = None) -> int:
        """Mark rows of a deleted object ``deleted``; return how many rows changed.

        With ``version_id`` only that version, else every row of the key. A delete that carries a
        ``sequencer`` (real S3 does) spares rows of later uploads to the key: a delete delivered
        after a newer upload must not hide the newer decision. Rows without a sequencer (moto
        sends none) cannot be ordered and are marked. Rows already ``deleted`` are left alone,
        so a repeated delete event returns 0.
        """
        condition = sa.and_(images.c.bucket == bucket, images.c.key == key, images.c.outcome != DELETED)
        if version_id is not None:
            condition = sa.and_(condition, images.c.version_id == version_id)
        with self._write() as conn:
            rows = conn.execute(sa.select(images.c.id, images.c.sequencer).where(condition)).all()
            ids = [row.id for row in rows if not _is_later(row.sequencer, sequencer)]
            if not ids:
                return 0
            statement = images.update().where(images.c.id.in_(ids)).values(outcome=DELETED, updated_at=_now())
            return conn.execute(statement).rowcount

    def newer_upload_exists(self, bucket: str, key: str, sequencer: str | None) -> bool:
        """True when a row for a later upload to this unversioned key exists (by S3's sequencer)."""
        if sequencer is None:
            return False
        condition = sa.and_(images.c.bucket == bucket, images.c.key == key, images.c.version_id.is_(None),
                            images.c.sequencer.is_not(None))
        with self._read() as conn:
            others = conn.execute(sa.select(images.c.sequencer).where(condition)).scalars().all()
        return any(_is_later(other, sequencer) for other in others)

    # -- liveness: attempts and the sweeper -----------------------------------------------

    def start_attempt(self, work_id: str) -> ImageRow | None:
        """A task is about to judge ``work_id``: count the attempt and refresh ``updated_at``.

        Returns the row when it is still ``pending``; None when it is decided already (a second
        chain for the same work, e.g. re-enqueued by the sweeper while the first was running) or
        unknown, so the caller can skip the detector call.
        """
        statement = (
            images.update()
            .where(images.c.work_id == work_id, images.c.outcome == PENDING)
            .values(attempts=images.c.attempts + 1, updated_at=_now())
            .returning(*images.c)
        )
        with self._write() as conn:
            row = conn.execute(statement).first()
        return None if row is None else ImageRow.from_mapping(row._mapping)

    def claim_stale(self, older_than: datetime, limit: int) -> list[ImageRow]:
        """Claim up to ``limit`` pending rows not updated since ``older_than``, oldest first.

        Claiming refreshes ``updated_at``, in one UPDATE that re-checks the condition, so two
        sweepers running at once never both claim a row, and a row claimed now is not claimed
        again before another ``stale_after`` has passed.
        """
        if limit <= 0:
            return []
        stale = sa.and_(images.c.outcome == PENDING, images.c.updated_at < as_utc(older_than))
        oldest = sa.select(images.c.id).where(stale).order_by(images.c.updated_at, images.c.id).limit(limit)
        statement = (
            images.update()
            .where(images.c.id.in_(oldest.scalar_subquery()), stale)
            .values(updated_at=_now())
            .returning(*images.c)
        )
        with self._write() as conn:
            rows = [ImageRow.from_mapping(row._mapping) for row in conn.execute(statement)]
        return sorted(rows, key=lambda row: row.id)

    def count_stale(self, older_than: datetime) -> int:
        """Pending rows not updated since ``older_than``."""
        statement = sa.select(sa.func.count()).where(images.c.outcome == PENDING,
                                                     images.c.updated_at < as_utc(older_than))
        with self._read() as conn:
            return int(conn.execute(statement).scalar_one())

    def pending_summary(self) -> tuple[int, datetime | None]:
        """(number of pending rows, the oldest pending ``updated_at`` or None)."""
        statement = sa.select(sa.func.count(), sa.func.min(images.c.updated_at)).where(images.c.outcome == PENDING)
        with self._read() as conn:
            count, oldest = conn.execute(statement).one()
        return int(count), None if oldest is None else as_utc(_parse_db_time(oldest))

    def find(
        self,
        outcome: str | None = None,
        bucket: str | None = None,
        prefix: str | None = None,
        error_code: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[ImageRow]:
        """Rows matching every filter given, most recently updated first.

        ``prefix`` matches the start of ``key`` literally (``%`` and ``_`` are not wildcards);
        ``since`` (inclusive) and ``until`` (exclusive) bound ``updated_at``.
        """
        statement = sa.select(images).where(*_find_conditions(outcome, bucket, prefix, error_code, since, until))
        statement = statement.order_by(images.c.updated_at.desc(), images.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [ImageRow.from_mapping(row._mapping) for row in conn.execute(statement)]

    def counts_by_outcome(self, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
        """Number of rows per outcome; every outcome is present, with 0 when there are none.

        ``since`` (inclusive) and ``until`` (exclusive) bound ``decided_at``: with either, only rows
        decided in that window count (pending rows have not been decided).
        """
        statement = (sa.select(images.c.outcome, sa.func.count()).where(*_decided_between(since, until))
                     .group_by(images.c.outcome))
        with self._read() as conn:
            counts = {outcome: int(n) for outcome, n in conn.execute(statement)}
        return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}

    # -- requeue --------------------------------------------------------------------------

    def count_selected(self, selection: RowSelection) -> int:
        """How many rows ``selection`` matches."""
        statement = sa.select(sa.func.count()).select_from(images).where(*_selection_conditions(selection))
        with self._read() as conn:
            return int(conn.execute(statement).scalar_one())

    def select_page(self, selection: RowSelection, *, after_id: int = 0, limit: int) -> list[ImageRow]:
        """Up to ``limit`` rows ``selection`` matches with ``id`` above ``after_id``, in ``id`` order.

        Keyset paging on the primary key: the next page starts after the last id seen, so rows
        that change state meanwhile (a requeued row turning pending) neither shift nor repeat pages.
        """
        statement = (
            sa.select(images)
            .where(images.c.id > after_id, *_selection_conditions(selection))
            .order_by(images.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [ImageRow.from_mapping(row._mapping) for row in conn.execute(statement)]

    def requeue(
        self, work_id: str, *, bucket: str, key: str, version_id: str | None, outcomes: Sequence[str] = (FAILED,)
    ) -> ImageRow | None:
        """Move the row back to ``pending`` if it is still in one of ``outcomes``; return it, else None.

        One conditional UPDATE, so of several concurrent calls for a row exactly one gets it back
        and the others see None: a requeue is never run twice at once. The row must also be the
        object version named (a message cannot requeue another row under a forged work_id).
        The previous decision is cleared (a pending row has none); ``attempts`` keeps counting
        detection attempts, so a requeued image shows every try it has had. A row a moderator
        has decided is never moved back (None).
        """
        now = _now()
        statement = (
            images.update()
            .where(
                images.c.work_id == work_id,
                images.c.bucket == bucket,
                images.c.key == key,
                images.c.version_id.is_not_distinct_from(version_id),
                images.c.outcome.in_(list(outcomes)),
                images.c.review.is_(None),  # a moderator's decision is never judged again
            )
            .values(
                outcome=PENDING, labels=[], detector=None, model_version=None, error_code=None,
                error_message=None, timings=None, decided_at=None, updated_at=now,
            )
            .returning(*images.c)
        )
        with self._write() as conn:
            row = conn.execute(statement).first()
        return None if row is None else ImageRow.from_mapping(row._mapping)

    # -- report -----------------------------------------------------------------------------

    def iter_decisions(self, since: datetime | None = None, until: datetime | None = None,
                       *, batch: int = STREAM_BATCH) -> Iterator[tuple[datetime, str, list[dict[str, Any]]]]:
        """(decided_at, outcome, labels) of every decided row, streamed ``batch`` rows at a time.

        Labels are aggregated by the caller: SQLite's json_each and PostgreSQL's
        json_array_elements differ, while reading the column is the same everywhere.
        """
        statement = (sa.select(images.c.decided_at, images.c.outcome, images.c.labels)
                     .where(images.c.decided_at.is_not(None), *_decided_between(since, until))
                     .order_by(images.c.id).execution_options(yield_per=batch))
        with self._read() as conn:
            for decided_at, outcome, labels in conn.execute(statement):
                yield as_utc(decided_at), outcome, list(labels or [])

    # -- backfill -------------------------------------------------------------------------

    def rows_for_keys(self, bucket: str, keys: Sequence[str]) -> list[ImageRow]:
        """Every row of these keys of ``bucket`` (any version, any outcome), in ``id`` order."""
        rows: list[ImageRow] = []
        with self._read() as conn:
            for start in range(0, len(keys), KEYS_PER_QUERY):
                chunk = list(keys[start:start + KEYS_PER_QUERY])
                statement = sa.select(images).where(images.c.bucket == bucket, images.c.key.in_(chunk))
                rows += [ImageRow.from_mapping(row._mapping) for row in conn.execute(statement.order_by(images.c.id))]
        return rows

    # -- moderator review -----------------------------------------------------------------

    def unreviewed(self, outcomes: Sequence[str], *, offset: int = 0, limit: int) -> list[ImageRow]:
        """Rows in ``outcomes`` no moderator has decided, most recently updated first."""
        statement = (
            sa.select(images)
            .where(images.c.outcome.in_(list(outcomes)), images.c.review.is_(None))
            .order_by(images.c.updated_at.desc(), images.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        with self._read() as conn:
            return [ImageRow.from_mapping(row._mapping) for row in conn.execute(statement)]

    def record_review(self, work_id: str, *, decision: str, reviewer: str, note: str | None = None) -> ImageRow:
        """Append a moderator decision to the history and make it the row's latest; raises KeyError if unknown.

        Both writes are one transaction. The version acted on (version id, ETag) is copied from
        the row, so the history names the bytes that were judged.
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if not reviewer:
            raise ValueError("a review needs a reviewer")
        now = _now()
        with self._write() as conn:
            current = self._select_one(conn, work_id, for_update=True)
            if current is None:
                raise KeyError(work_id)
            conn.execute(reviews.insert().values(
                work_id=work_id, decision=decision, reviewer=_truncate(reviewer, REVIEWER_LENGTH), note=note,
                decided_at=now, version_id=current.version_id, etag=current.etag,
            ))
            conn.execute(
                images.update().where(images.c.work_id == work_id)
                .values(review=decision, reviewed_by=_truncate(reviewer, REVIEWER_LENGTH), reviewed_at=now)
            )
            row = self._select_one(conn, work_id)
        assert row is not None
        return row

    def review_history(self, work_id: str) -> list[ReviewRecord]:
        """Every moderator decision on ``work_id``, oldest first."""
        statement = sa.select(reviews).where(reviews.c.work_id == work_id).order_by(reviews.c.id)
        with self._read() as conn:
            return [ReviewRecord.from_mapping(row._mapping) for row in conn.execute(statement)]

    # -- malformed messages ---------------------------------------------------------------

    def record_malformed(self, message_id: str | None, error_code: str | None, reason: str | None, body: bytes | str) -> None:
        """Record that an SQS message could not be parsed: its size and sha256, never its body."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        statement = malformed_messages.insert().values(
            message_id=message_id,
            received_at=_now(),
            error_code=_truncate(error_code, ERROR_CODE_LENGTH),
            reason=_truncate(reason, MAX_ERROR_MESSAGE),
            body_size=len(data),
            body_sha256=hashlib.sha256(data).hexdigest(),
        )
        with self._write() as conn:
            conn.execute(statement)

    def malformed_count(self) -> int:
        """How many malformed messages have been recorded."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(malformed_messages)).scalar_one())

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _select_one(conn: Connection, work_id: str, *, for_update: bool = False) -> ImageRow | None:
        statement = sa.select(images).where(images.c.work_id == work_id)
        if for_update:
            # PostgreSQL: lock the row so two workers cannot interleave read-compare-write;
            # SQLite ignores it (BEGIN IMMEDIATE already holds the database write lock).
            statement = statement.with_for_update()
        row = conn.execute(statement).first()
        return None if row is None else ImageRow.from_mapping(row._mapping)


def _is_later(sequencer: str | None, than: str | None) -> bool:
    """True when S3 sequencer ``sequencer`` orders after ``than``; False when either is unknown."""
    if sequencer is None or than is None:
        return False
    try:
        return sequencer_order(sequencer) > sequencer_order(than)
    except ValueError:  # not a sequencer (a hand-edited row): cannot order it
        return False


def _parse_db_time(value: datetime | str) -> datetime:
    """MIN() over a SQLite text column returns text, not the column type's datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _same_decision(row: ImageRow, decision: Mapping[str, Any]) -> bool:
    """True if ``row`` already holds exactly ``decision``."""
    return all(getattr(row, name) == value for name, value in decision.items())


def _find_conditions(
    outcome: str | None,
    bucket: str | None,
    prefix: str | None,
    error_code: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for :meth:`ReportStore.find`; an argument left as None adds none."""
    conditions: list[sa.ColumnElement[bool]] = []
    if outcome is not None:
        conditions.append(images.c.outcome == outcome)
    if bucket is not None:
        conditions.append(images.c.bucket == bucket)
    if prefix:
        conditions.append(images.c.key.startswith(prefix, autoescape=True))
    if error_code is not None:
        conditions.append(images.c.error_code == error_code)
    if since is not None:
        conditions.append(images.c.updated_at >= as_utc(since))
    if until is not None:
        conditions.append(images.c.updated_at < as_utc(until))
    return conditions


def _decided_between(since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses bounding ``decided_at``: ``since`` inclusive, ``until`` exclusive."""
    conditions: list[sa.ColumnElement[bool]] = []
    if since is not None:
        conditions.append(images.c.decided_at >= as_utc(since))
    if until is not None:
        conditions.append(images.c.decided_at < as_utc(until))
    return conditions


def _selection_conditions(selection: RowSelection) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for a :class:`RowSelection`."""
    conditions = _find_conditions(None, selection.bucket, selection.prefix, None, selection.since, selection.until)
    conditions.append(images.c.outcome.in_(list(selection.outcomes)))
    conditions.append(images.c.review.is_(None))  # a moderator's decision is never judged again
    if selection.error_codes:
        conditions.append(images.c.error_code.in_(list(selection.error_codes)))
    return conditions


__all__ = ["ImageRow", "ReportStore", "ReviewRecord", "RowSelection", "is_memory_url", "make_engine"]
