"""Initial report schema: images and malformed_messages.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Written out in full rather than imported from ``schema.py``: a revision must keep creating the
schema as it was at this revision, whatever ``schema.py`` says later.
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OUTCOMES = ("pending", "clean", "blocked", "failed", "deleted")


def upgrade() -> None:
    """Create both tables and the images indexes."""
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("work_id", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("version_id", sa.String(1024), nullable=True),
        sa.Column("etag", sa.String(128), nullable=True),
        sa.Column("sequencer", sa.String(64), nullable=True),
        sa.Column("event_name", sa.String(64), nullable=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("detector", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("timings", sa.JSON, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("work_id", name="uq_images_work_id"),
        sa.CheckConstraint(sa.column("outcome").in_(OUTCOMES), name="ck_images_outcome"),
    )
    op.create_index("ix_images_outcome_updated_at", "images", ["outcome", "updated_at"])
    op.create_index("ix_images_bucket_key", "images", ["bucket", "key"])
    op.create_table(
        "malformed_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("body_size", sa.Integer, nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_malformed_messages"),
    )


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_table("malformed_messages")
    op.drop_index("ix_images_bucket_key", table_name="images")
    op.drop_index("ix_images_outcome_updated_at", table_name="images")
    op.drop_table("images")
