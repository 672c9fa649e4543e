"""The sweeper on real services: the test's own Redis as broker, the report store on SQLite/PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline import outcomes, sweeper
from pipeline.report import migrate
from pipeline.report.schema import images
from pipeline.report.store import ReportStore
from tests.integration.test_bridge import detect_work_ids, enqueued
from tests.integration.test_report_store import event

STALE_AFTER = 600


@pytest.fixture
def store(db_store: ReportStore) -> ReportStore:
    """This module's tests run on SQLite and PostgreSQL (see conftest.db_store)."""
    return db_store


def pending_rows(store: ReportStore, count: int, *, age: float) -> list[Any]:
    """``count`` pending rows last touched ``age`` seconds ago (as if their tasks were lost)."""
    rows = [store.upsert_pending(event(version_id=f"v{i}-{age}"))[0] for i in range(count)]
    when = datetime.now(timezone.utc) - timedelta(seconds=age)
    with store.engine.begin() as conn:
        conn.execute(images.update().where(images.c.work_id.in_([r.work_id for r in rows])).values(updated_at=when))
    return rows


def test_sweep_re_enqueues_only_stale_pending_rows_and_reports_counts(
    store: ReportStore, pipeline_app: Any, redis_client: Any
) -> None:
    # Given: three lost rows, two live ones, one decided long ago
    lost = pending_rows(store, 3, age=STALE_AFTER + 60)
    pending_rows(store, 2, age=10)
    [decided] = pending_rows(store, 1, age=STALE_AFTER * 3)
    store.record_decision(decided.work_id, outcome=outcomes.CLEAN)

    # When
    report = sweeper.sweep(store, pipeline_app, stale_after=STALE_AFTER, batch=100)

    # Then: one full chain per lost row, nothing else
    assert (report.found, report.enqueued, report.left) == (3, 3, 0)
    assert STALE_AFTER + 50 < report.oldest_pending_age < STALE_AFTER + 120
    assert sorted(detect_work_ids(redis_client)) == sorted(row.work_id for row in lost)
    # A second run finds nothing: claiming refreshed the rows
    again = sweeper.sweep(store, pipeline_app, stale_after=STALE_AFTER, batch=100)
    assert (again.found, again.enqueued) == (0, 0)
    assert len(detect_work_ids(redis_client)) == 3


def test_sweep_enqueues_no_more_than_batch_or_backlog_room(store: ReportStore, pipeline_app: Any, redis_client: Any) -> None:
    pending_rows(store, 7, age=STALE_AFTER * 2)

    first = sweeper.sweep(store, pipeline_app, stale_after=STALE_AFTER, batch=5, room=2)
    second = sweeper.sweep(store, pipeline_app, stale_after=STALE_AFTER, batch=3, room=100)
    full = sweeper.sweep(store, pipeline_app, stale_after=STALE_AFTER, batch=3, room=-4)

    assert (first.found, first.enqueued, first.left) == (7, 2, 5)
    assert (second.found, second.enqueued, second.left) == (5, 3, 2)
    assert (full.found, full.enqueued, full.left) == (2, 0, 2)
    assert len(detect_work_ids(redis_client)) == 5


def test_sweep_task_runs_in_a_worker_and_respects_the_backlog(
    store: ReportStore, db_url: str, pipeline_app: Any, redis_client: Any
) -> None:
    # Given: the app's settings point at this store; 4 lost rows; 1 task already waiting; high water 3
    from pipeline import tasks

    settings = pipeline_app.pipeline_settings.replace(database_url=db_url, backlog_high_water=3, stale_after=STALE_AFTER)
    pipeline_app.pipeline_settings = settings
    pending_rows(store, 4, age=STALE_AFTER * 2)
    pipeline_app.send_task("pipeline.detect", args=({"work_id": "queued-already"},), queue="detect")

    # When the task runs (eagerly, in this process, on the current app: pipeline_app)
    report = tasks.sweep.apply().get()

    # Then: room for 2 only
    assert (report["found"], report["enqueued"], report["left"]) == (4, 2, 2)
    assert len(enqueued(redis_client, "detect")) == 3


def test_pipeline_sweep_command_prints_its_report(
    pipeline_env: dict[str, str], report_db_url: str, redis_client: Any
) -> None:
    migrate.upgrade(report_db_url)
    report_store = ReportStore.from_url(report_db_url)
    try:
        lost = pending_rows(report_store, 2, age=STALE_AFTER * 2)
    finally:
        report_store.dispose()

    done = subprocess.run([sys.executable, "-m", "pipeline", "sweep"], env=pipeline_env, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["found"], report["enqueued"], report["left"]) == (2, 2, 0)
    assert sorted(detect_work_ids(redis_client)) == sorted(row.work_id for row in lost)


def test_pipeline_sweep_with_the_broker_down_says_so_in_one_line(pipeline_env: dict[str, str]) -> None:
    from pipeline.local.processes import free_port

    env = {**pipeline_env, "PIPELINE_BROKER_URL": f"redis://:secret@127.0.0.1:{free_port()}/0"}

    done = subprocess.run([sys.executable, "-m", "pipeline", "sweep"], env=env, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 2
    assert done.stderr.startswith("Error: configuration error: PIPELINE_BROKER_URL=redis://:**@127.0.0.1:")
    assert "cannot reach the broker" in done.stderr and "secret" not in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
