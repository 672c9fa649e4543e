"""The reporting database's tables, as SQLAlchemy Core.

One ``images`` row per object *version* (``work_id``), moving from ``pending`` to a terminal
outcome; one ``malformed_messages`` row per SQS body the bridge could not parse. The shape is
created by the Alembic revisions in ``migrations/versions`` (never ``create_all`` at run time):
a change here needs a new revision there.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

# Every value ``images.outcome`` may take; the database enforces it with a CHECK constraint.
from pipeline.outcomes import DELETED, OUTCOMES, PENDING, SUPERSEDED

#: Lengths shared by the tables and the store (which truncates rather than fail a report write).
WORK_ID_LENGTH = 64
ERROR_CODE_LENGTH = 128
#: S3 allows version ids of up to 1024 bytes.
VERSION_ID_LENGTH = 1024
#: Longest moderator name kept (``--by``).
REVIEWER_LENGTH = 128

#: Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores UTC and always returns aware UTC datetimes.

    SQLite has no time-zone type: SQLAlchemy writes the wall-clock digits and drops the offset,
    so values are converted to UTC before writing (which also keeps SQLite's text comparisons in
    ``find(since=...)`` correct) and tagged as UTC after reading. Naive input is taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one is assumed to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sha256 hex of (bucket, key, version/etag): one object version, the pipeline's identity.
    sa.Column("work_id", sa.String(WORK_ID_LENGTH), nullable=False, unique=True),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("version_id", sa.String(VERSION_ID_LENGTH), nullable=True),
    sa.Column("etag", sa.String(128), nullable=True),
    sa.Column("sequencer", sa.String(64), nullable=True),
    sa.Column("event_name", sa.String(64), nullable=True),
    sa.Column("event_time", UTCDateTime(), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    # Rekognition-shaped label dicts (Name, ParentName, Confidence, TaxonomyLevel, Detector).
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("detector", sa.String(128), nullable=True),
    sa.Column("model_version", sa.String(128), nullable=True),
    sa.Column("error_code", sa.String(ERROR_CODE_LENGTH), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    # none_as_null: "no timings" is SQL NULL, not the JSON value null.
    sa.Column("timings", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The latest moderator decision on this version (``approved``/``rejected``); history in ``reviews``.
    sa.Column("review", sa.String(16), nullable=True),
    sa.Column("reviewed_by", sa.String(REVIEWER_LENGTH), nullable=True),
    sa.Column("reviewed_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint(sa.column("outcome").in_(OUTCOMES), name="outcome"),
    # The review listing: "blocked/failed, most recent first".
    sa.Index("ix_images_outcome_updated_at", "outcome", "updated_at"),
    # S3 deletes arrive as (bucket, key[, version]).
    sa.Index("ix_images_bucket_key", "bucket", "key"),
)

#: Every moderator decision, oldest first; the latest per ``work_id`` is copied onto ``images``.
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("work_id", sa.String(WORK_ID_LENGTH), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reviewer", sa.String(REVIEWER_LENGTH), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=False),
    # The version acted on, so the history says which bytes were judged.
    sa.Column("version_id", sa.String(VERSION_ID_LENGTH), nullable=True),
    sa.Column("etag", sa.String(128), nullable=True),
    sa.Index("ix_reviews_work_id", "work_id"),
)

malformed_messages = sa.Table(
    "malformed_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("error_code", sa.String(ERROR_CODE_LENGTH), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    # Only a fingerprint of the body: it may hold secrets, and the body itself is in the DLQ.
    sa.Column("body_size", sa.Integer, nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
)

__all__ = ["DELETED", "OUTCOMES", "PENDING", "SUPERSEDED", "UTCDateTime", "as_utc", "images", "malformed_messages", "metadata", "reviews"]
