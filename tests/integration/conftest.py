"""Database fixtures: every ``db_url`` test runs against a SQLite file and a real PostgreSQL.

PostgreSQL: one uniquely named database per test session, created through the ``test`` database
(trust auth on 127.0.0.1) and dropped at the end; each test starts with it empty. A server that
cannot be reached skips those tests locally and fails the run in CI (``CI=true``), so a broken CI
service never passes silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from pipeline.report import migrate
from pipeline.report.store import ReportStore
from tests.conftest import service_missing

#: Where the machine's PostgreSQL lives; PIPELINE_TEST_POSTGRES_URL overrides it.
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Don't hang the whole run on a firewalled port.
CONNECT_TIMEOUT_SECONDS = 5


def _admin_url() -> sa.URL:
    return sa.make_url(os.environ.get("PIPELINE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the session."""
    admin_url = _admin_url()
    admin = sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    name = f"pipeline_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_missing(f"PostgreSQL not reachable at {admin_url.render_as_string(hide_password=True)}: {exc.orig}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE: a test that leaked a connection must not leave the database behind.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _empty_database(url: str) -> None:
    """Drop every table (ours and alembic_version), whatever state a test left behind."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            reflected = sa.MetaData()
            reflected.reflect(conn)
            reflected.drop_all(conn)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty report database URL: a temp SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'report.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    _empty_database(url)
    yield url
    _empty_database(url)


@pytest.fixture
def db_store(db_url: str) -> Iterator[ReportStore]:
    """A ReportStore on ``db_url`` (SQLite file and PostgreSQL), migrated to head."""
    migrate.upgrade(db_url)
    report = ReportStore.from_url(db_url)
    yield report
    report.dispose()
