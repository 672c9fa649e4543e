"""Alembic environment for the report database.

Called two ways:

* from :mod:`pipeline.report.migrate`, which passes an open connection in
  ``config.attributes["connection"]`` (so in-memory SQLite and callers' transactions work);
* from the ``alembic`` command (``alembic -c pipeline/report/alembic.ini upgrade head``), where
  the URL comes from ``-x url=...``, else ``config.attributes["url"]``, else ``sqlalchemy.url``
  in the ini, else PIPELINE_DATABASE_URL through :class:`pipeline.settings.Settings`.

Offline (``--sql``) mode is not supported: the pipeline always migrates a live database.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.report.schema import metadata
from pipeline.report.store import make_engine

config = context.config


def _url() -> str:
    """The database URL for a command-line run (see the module docstring for the order)."""
    url = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from pipeline.settings import Settings  # only settings.py reads the environment

    return Settings.from_env().database_url


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode lets later revisions copy-and-move tables.
        render_as_batch=sqlite,
        # make_engine emits BEGIN itself on SQLite, so DDL there rolls back like PostgreSQL's.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the connection we were given, or one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the report database is migrated online only; drop --sql")
run_migrations_online()
