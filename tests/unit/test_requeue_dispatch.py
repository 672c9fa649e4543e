"""bridge.dispatch.plan_requeue (pure): what a requeue request enqueues, by claim and redelivery."""

from __future__ import annotations

import pytest
from celery import Celery

from bridge.dispatch import plan_requeue
from pipeline.app import DETECT_TASK, REPORT_TASK, TAG_TASK, create_app
from pipeline.settings import Settings
from tests.unit.test_dispatch import Row, expected_work, task_names


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app(Settings())


def test_a_claimed_row_gets_the_full_chain(app: Celery) -> None:
    row = Row("pending")
    work = plan_requeue(app, row, claimed=True, redelivered=False)
    assert task_names(work) == [DETECT_TASK, TAG_TASK, REPORT_TASK]
    assert work.tasks[0].args == (expected_work(row),)


def test_a_redelivery_that_finds_its_row_pending_enqueues_again(app: Celery) -> None:
    # The first delivery may have claimed the row and then failed to reach the broker.
    work = plan_requeue(app, Row("pending"), claimed=False, redelivered=True)
    assert task_names(work) == [DETECT_TASK, TAG_TASK, REPORT_TASK]


@pytest.mark.parametrize(
    ("outcome", "redelivered"),
    [("pending", False), ("failed", False), ("failed", True), ("clean", True), ("blocked", True), ("deleted", True)],
)
def test_an_unclaimed_row_gets_nothing(app: Celery, outcome: str, redelivered: bool) -> None:
    assert plan_requeue(app, Row(outcome), claimed=False, redelivered=redelivered) is None
