"""Report store: SQLAlchemy tables, Alembic migrations, review queue."""
