"""Outcome ``superseded``: a newer upload to the same key was judged instead of this one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 00:00:00

Only the CHECK constraint on ``images.outcome`` changes. SQLite cannot alter a constraint, so
this runs in Alembic's batch mode there (copy the table, swap it in); PostgreSQL alters in place.
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD_OUTCOMES = ("pending", "clean", "blocked", "failed", "deleted")
NEW_OUTCOMES = (*OLD_OUTCOMES, "superseded")


def _replace_outcome_check(outcomes: Sequence[str]) -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint("ck_images_outcome", type_="check")
        batch.create_check_constraint("ck_images_outcome", sa.column("outcome").in_(outcomes))


def upgrade() -> None:
    """Allow ``superseded``."""
    _replace_outcome_check(NEW_OUTCOMES)


def downgrade() -> None:
    """Back to the five outcomes of 0001; ``superseded`` rows become ``failed`` (ObjectSuperseded)."""
    op.execute(
        sa.text("UPDATE images SET outcome = 'failed', error_code = COALESCE(error_code, 'ObjectSuperseded') "
                "WHERE outcome = 'superseded'")
    )
    _replace_outcome_check(OLD_OUTCOMES)
