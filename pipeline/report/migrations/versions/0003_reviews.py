"""Moderator review: the ``reviews`` history table and the latest decision on ``images``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 21:00:00

Adding nullable columns needs no table copy on SQLite; dropping them does (batch mode).
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create ``reviews``; add ``review``, ``reviewed_by``, ``reviewed_at`` to ``images``."""
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("work_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.String(1024), nullable=True),
        sa.Column("etag", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_work_id", "reviews", ["work_id"])
    op.add_column("images", sa.Column("review", sa.String(16), nullable=True))
    op.add_column("images", sa.Column("reviewed_by", sa.String(128), nullable=True))
    op.add_column("images", sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop what ``upgrade`` added (the review history is lost)."""
    with op.batch_alter_table("images") as batch:
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewed_by")
        batch.drop_column("review")
    op.drop_index("ix_reviews_work_id", table_name="reviews")
    op.drop_table("reviews")
