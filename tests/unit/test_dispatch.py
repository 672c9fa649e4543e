"""bridge.dispatch.plan (pure: report row -> Celery chain) and the Celery app's configuration."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery

from bridge.dispatch import build_chain, build_recheck, plan, work_for
from pipeline.app import DETECT_TASK, REPORT_TASK, TAG_TASK, create_app
from pipeline.settings import Settings

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
EVENT_TIME = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
STALE_AFTER = 600
LABELS = [
    {"Name": "Exposed Female Nipple", "ParentName": "Explicit Nudity", "Confidence": 97.5, "TaxonomyLevel": 3,
     "Detector": "rekognition"},
]


@dataclass
class Row:
    """The ImageRow attributes dispatch reads."""

    outcome: str
    updated_at: datetime | None = NOW
    work_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    bucket: str = "uploads"
    key: str = "content/images/cat.jpg"
    version_id: str | None = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e"
    event_time: datetime | None = EVENT_TIME
    detector: str | None = None
    model_version: str | None = None
    labels: list[dict[str, Any]] = field(default_factory=list)
    review: str | None = None


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app(Settings())


def expected_work(row: Row) -> dict[str, Any]:
    return {
        "work_id": row.work_id,
        "image": {"bucket": row.bucket, "key": row.key, "version_id": row.version_id, "etag": row.etag},
        "event_time": "2024-05-01T12:00:00.123000+00:00",
    }


def task_names(signature: Any) -> list[str]:
    return [task.task for task in signature.tasks]


# -- work payload --------------------------------------------------------------------------


def test_work_payload_holds_identifiers_only_and_is_json() -> None:
    row = Row("pending")
    work = work_for(row)
    assert work == expected_work(row)
    assert json.loads(json.dumps(work)) == work


def test_work_payload_of_an_unversioned_object_without_event_time() -> None:
    row = Row("pending", version_id=None, event_time=None)
    assert work_for(row)["image"]["version_id"] is None
    assert work_for(row)["event_time"] is None


# -- plan ------------------------------------------------------------------------------------


def test_new_pending_row_gets_the_full_chain(app: Celery) -> None:
    # Given: the bridge just inserted the row
    row = Row("pending", updated_at=NOW)
    # When
    signature = plan(app, row, created=True, stale_after=STALE_AFTER, now=NOW)
    # Then
    assert signature is not None
    assert task_names(signature) == [DETECT_TASK, TAG_TASK, REPORT_TASK] == ["pipeline.detect", "pipeline.tag", "pipeline.report"]
    detect, tag, report = signature.tasks
    assert detect.args == (expected_work(row),)
    assert tag.args == () and report.args == ()


@pytest.mark.parametrize("age", [timedelta(0), timedelta(seconds=1), timedelta(seconds=STALE_AFTER - 1)])
def test_duplicate_event_for_a_young_pending_row_enqueues_nothing(app: Celery, age: timedelta) -> None:
    # Given: an earlier delivery enqueued the chain and it is still in flight
    row = Row("pending", updated_at=NOW - age)
    # When / Then
    assert plan(app, row, created=False, stale_after=STALE_AFTER, now=NOW) is None


def test_redelivered_message_for_a_young_pending_row_enqueues_the_chain(app: Celery) -> None:
    # Given: the first hand-off wrote the row but may never have reached the broker
    row = Row("pending", updated_at=NOW - timedelta(seconds=1))
    # When
    signature = plan(app, row, created=False, redelivered=True, stale_after=STALE_AFTER, now=NOW)
    # Then
    assert signature is not None and task_names(signature) == [DETECT_TASK, TAG_TASK, REPORT_TASK]


@pytest.mark.parametrize("outcome", ["clean", "failed", "deleted"])
def test_redelivery_of_a_decided_row_still_enqueues_nothing(app: Celery, outcome: str) -> None:
    assert plan(app, Row(outcome), created=False, redelivered=True, stale_after=STALE_AFTER, now=NOW) is None


@pytest.mark.parametrize(
    "updated_at",
    [NOW - timedelta(seconds=STALE_AFTER), NOW - timedelta(hours=5), None],
    ids=["exactly-stale", "hours-old", "never-updated"],
)
def test_stale_pending_row_gets_the_full_chain_again(app: Celery, updated_at: datetime | None) -> None:
    # Given: the earlier enqueue may have been lost with Redis or a crashed bridge
    row = Row("pending", updated_at=updated_at)
    # When
    signature = plan(app, row, created=False, stale_after=STALE_AFTER, now=NOW)
    # Then
    assert signature is not None
    assert task_names(signature) == [DETECT_TASK, TAG_TASK, REPORT_TASK]
    assert signature.tasks[0].args == (expected_work(row),)


def test_plan_uses_the_current_time_by_default(app: Celery) -> None:
    fresh = Row("pending", updated_at=datetime.now(timezone.utc))
    old = Row("pending", updated_at=datetime.now(timezone.utc) - timedelta(days=1))
    assert plan(app, fresh, created=False, stale_after=STALE_AFTER) is None
    assert plan(app, old, created=False, stale_after=STALE_AFTER) is not None


@pytest.mark.parametrize("created", [True, False])
def test_blocked_row_is_rechecked_from_the_stored_labels(app: Celery, created: bool) -> None:
    # Given: a duplicate delivery for an image already judged blocked
    row = Row("blocked", detector="rekognition", model_version="7.0", labels=LABELS)
    # When
    signature = plan(app, row, created=created, stale_after=STALE_AFTER, now=NOW)
    # Then: no new detection; the tag is checked again on S3, marked as a re-check for report
    assert signature is not None
    assert task_names(signature) == [TAG_TASK, REPORT_TASK]
    tag, report = signature.tasks
    assert tag.args == (
        {
            **expected_work(row),
            "outcome": "blocked",
            "detection": {"detector": "rekognition", "model_version": "7.0", "labels": LABELS},
            "timings": {},
            "recheck": True,
        },
    )
    assert report.args == ()
    assert json.loads(json.dumps(tag.args[0])) == tag.args[0]


def test_recheck_of_a_row_without_detector_details(app: Celery) -> None:
    row = Row("blocked", detector=None, model_version=None, labels=[])
    (tag_args,) = build_recheck(app, row).tasks[0].args
    assert tag_args["detection"] == {"detector": "", "model_version": "", "labels": []}


@pytest.mark.parametrize("outcome", ["clean", "failed", "deleted"])
@pytest.mark.parametrize("created", [True, False])
def test_decided_rows_need_nothing(app: Celery, outcome: str, created: bool) -> None:
    row = Row(outcome, updated_at=NOW - timedelta(days=30))
    assert plan(app, row, created=created, stale_after=STALE_AFTER, now=NOW) is None


@pytest.mark.parametrize("redelivered", [False, True])
def test_a_duplicate_event_for_an_approved_version_enqueues_nothing(app: Celery, redelivered: bool) -> None:
    # The moderator's decision wins: a recheck would put the block tag back.
    row = Row(outcome="blocked", labels=LABELS, review="approved")
    assert plan(app, row, created=False, stale_after=STALE_AFTER, redelivered=redelivered, now=NOW) is None


def test_a_duplicate_event_for_a_rejected_version_rechecks_its_block_tag(app: Celery) -> None:
    row = Row(outcome="blocked", labels=LABELS, review="rejected")
    work = plan(app, row, created=False, stale_after=STALE_AFTER, now=NOW)
    assert [task.name for task in work.tasks] == [TAG_TASK, REPORT_TASK]


def test_build_chain_links_the_three_tasks(app: Celery) -> None:
    row = Row("pending")
    signature = build_chain(app, row)
    assert [task.app for task in signature.tasks] == [app, app, app]


# -- the Celery app --------------------------------------------------------------------------


def test_app_accepts_json_only(app: Celery) -> None:
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_app_acknowledges_late_and_gives_back_on_worker_loss(app: Celery) -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


@pytest.mark.parametrize(
    ("task", "queue"),
    [(DETECT_TASK, "detect"), (TAG_TASK, "pipeline"), (REPORT_TASK, "pipeline")],
)
def test_app_routes_detection_to_its_own_queue(app: Celery, task: str, queue: str) -> None:
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_app_routes_follow_the_settings() -> None:
    app = create_app(Settings(detect_queue="gpu-detect", default_queue="light"))
    assert app.amqp.router.route({}, DETECT_TASK)["queue"].name == "gpu-detect"
    assert app.amqp.router.route({}, TAG_TASK)["queue"].name == "light"
    assert app.amqp.router.route({}, REPORT_TASK)["queue"].name == "light"
    assert app.conf.task_default_queue == "light"


def test_app_carries_its_settings_and_broker() -> None:
    settings = Settings(broker_url="redis://cache.internal:6380/3", visibility_timeout=7200)
    app = create_app(settings)
    assert app.pipeline_settings is settings
    assert app.conf.broker_url == "redis://cache.internal:6380/3"
    assert app.conf.broker_transport_options == {"visibility_timeout": 7200}
