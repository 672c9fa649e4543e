"""Bring the report database to the schema this code expects, and check that it is there.

The Alembic environment lives inside the package (``pipeline/report/migrations``), so an installed
pipeline can migrate without a checkout: ``pipeline migrate`` calls :func:`upgrade`; the bridge
and workers call :func:`ensure_current` at start-up and refuse to run against an old schema.
``alembic -c pipeline/report/alembic.ini ...`` works too, for writing new revisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import ConfigurationError
from pipeline.report.store import make_engine

#: The Alembic script directory shipped as package data.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key under which env.py finds the connection to migrate (see migrations/env.py).
CONNECTION_ATTRIBUTE = "connection"


def _config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged scripts; no ini file, so logging is left alone."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes[CONNECTION_ATTRIBUTE] = connection
    return config


@contextmanager
def _connect(url: str | Engine, *, transaction: bool) -> Iterator[Connection]:
    """A connection to ``url`` (or from an Engine, which the caller keeps and disposes)."""
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with _open(engine) as conn:
            if transaction:
                # One transaction for the whole run: PostgreSQL and SQLite both roll back DDL.
                with conn.begin():
                    yield conn
            else:
                yield conn
    finally:
        if engine is not url:
            engine.dispose()


def _open(engine: Engine) -> Connection:
    """A connection; a database that cannot be reached at start-up is reported naming the variable."""
    try:
        return engine.connect()
    except sa.exc.OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(f"PIPELINE_DATABASE_URL={where}: cannot open the report database: {exc.orig}") from None


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    with _connect(url, transaction=True) as conn:
        command.upgrade(_config(conn), revision)


def downgrade(url: str | Engine, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (default: ``base``, an empty database)."""
    with _connect(url, transaction=True) as conn:
        command.downgrade(_config(conn), revision)


def current_revision(url: str | Engine) -> str | None:
    """The revision the database is at, or None if it has never been migrated."""
    with _connect(url, transaction=False) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision this code ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found in " + str(MIGRATIONS_DIR)
    return head


def ensure_current(url: str | Engine) -> None:
    """Raise ConfigurationError unless the database is at :func:`head_revision`."""
    current, expected = current_revision(url), head_revision()
    if current != expected:
        raise ConfigurationError(
            f"report database at revision {current or 'none'}, expected {expected}: run `pipeline migrate`"
        )


__all__ = ["current_revision", "downgrade", "ensure_current", "head_revision", "upgrade"]
