"""The bridge's duplicate, out-of-order, allow-list and backpressure rules, on real services.

moto sends no ``sequencer`` (real S3 does), so the out-of-order cases use hand-written bodies in
the shape of AWS's "Event message structure" page, sent through a real SQS queue on the moto
server; the broker is the test's own Redis, the report store a SQLite file.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.poller import Bridge
from pipeline import outcomes, provision
from pipeline.backlog import Backlog
from pipeline.report.schema import malformed_messages
from pipeline.report.store import ReportStore
from tests.integration.test_bridge import (  # noqa: F401  (fixtures)
    BUCKET,
    assert_deleted_from,
    detect_work_ids,
    enqueued,
    events_queues,
    make_bridge,
    notification,
    poll_until,
    receive,
    s3_record,
    send,
)

KEY = "content/images/avatar.jpg"
#: Three uploads to one unversioned key, in S3's order (sequencers grow; lengths may differ).
FIRST, SECOND, THIRD = "0055AED6DCD90281E5", "0055AED6DCD90281F0", "0055AED6DCD9029"


def upload(sequencer: str, etag: str) -> dict[str, Any]:
    """An ObjectCreated:Put record for the unversioned key (moto-like: no versionId)."""
    return s3_record(key=KEY, version_id=None, etag=etag, sequencer=sequencer)


def rows_by_etag(store: ReportStore) -> dict[str, Any]:
    return {row.etag: row for row in store.find(bucket=BUCKET)}


@pytest.fixture
def bridge_(make_bridge: Callable[..., Bridge]) -> Bridge:
    return make_bridge(allowed_buckets=(BUCKET,))


# -- duplicates and order ------------------------------------------------------------------------


def test_duplicate_deliveries_of_one_version_give_one_row_and_one_chain(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    body = notification(upload(FIRST, "aaa"))
    for _ in range(3):
        send(sqs, events_queues.events_url, body)

    poll_until(bridge_, messages=3)

    [row] = store.find(bucket=BUCKET)
    assert row.outcome == outcomes.PENDING
    assert detect_work_ids(redis_client) == [row.work_id]
    assert_deleted_from(sqs, events_queues.events_url)


def test_an_older_upload_delivered_after_a_newer_one_is_superseded_not_judged(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: the newer upload was delivered and judged (blocked) first
    send(sqs, events_queues.events_url, notification(upload(THIRD, "ccc")))
    poll_until(bridge_, messages=1)
    newer = rows_by_etag(store)["ccc"]
    store.record_decision(newer.work_id, outcome=outcomes.BLOCKED, labels=[{"Name": "Weapons", "Confidence": 99.0}])
    redis_client.flushall()

    # When: two older uploads to the key arrive late, in any order
    send(sqs, events_queues.events_url, notification(upload(SECOND, "bbb")))
    send(sqs, events_queues.events_url, notification(upload(FIRST, "aaa")))
    poll_until(bridge_, messages=3)

    # Then: both are recorded superseded, nothing is enqueued, and the newer decision stands
    rows = rows_by_etag(store)
    assert {etag: row.outcome for etag, row in rows.items()} == {
        "ccc": outcomes.BLOCKED, "bbb": outcomes.SUPERSEDED, "aaa": outcomes.SUPERSEDED}
    assert rows["ccc"].labels == [{"Name": "Weapons", "Confidence": 99.0}]
    assert enqueued(redis_client, "detect") == [] and enqueued(redis_client, "pipeline") == []
    assert bridge_.stats["superseded"] == 2


def test_uploads_in_order_are_each_judged(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    for sequencer, etag in ((FIRST, "aaa"), (SECOND, "bbb")):
        send(sqs, events_queues.events_url, notification(upload(sequencer, etag)))
        poll_until(bridge_, messages=1 if etag == "aaa" else 2)

    rows = rows_by_etag(store)
    assert sorted(detect_work_ids(redis_client)) == sorted(row.work_id for row in rows.values())
    assert bridge_.stats["superseded"] == 0


def test_a_delete_delivered_after_a_later_upload_leaves_the_later_decision(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore
) -> None:
    # Given: upload, delete, upload again; the second upload is judged before the delete arrives
    send(sqs, events_queues.events_url, notification(upload(FIRST, "aaa")))
    send(sqs, events_queues.events_url, notification(upload(THIRD, "ccc")))
    poll_until(bridge_, messages=2)
    store.record_decision(rows_by_etag(store)["ccc"].work_id, outcome=outcomes.CLEAN)

    # When: the delete, sequenced between the two uploads, is delivered last
    delete = s3_record("ObjectRemoved:Delete", key=KEY, version_id=None, etag=None, size=None, sequencer=SECOND)
    send(sqs, events_queues.events_url, notification(delete))
    poll_until(bridge_, messages=3)

    # Then: only the first upload's row is deleted
    assert {etag: row.outcome for etag, row in rows_by_etag(store).items()} == {
        "aaa": outcomes.DELETED, "ccc": outcomes.CLEAN}


def test_a_repeated_blocked_version_is_rechecked_every_time(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    send(sqs, events_queues.events_url, notification(s3_record()))
    poll_until(bridge_, messages=1)
    [row] = store.find(bucket=BUCKET)
    store.record_decision(row.work_id, outcome=outcomes.BLOCKED, labels=[{"Name": "Weapons", "Confidence": 99.0}])
    redis_client.flushall()

    for count in (2, 3):
        send(sqs, events_queues.events_url, notification(s3_record()))
        poll_until(bridge_, messages=count)

    rechecks = enqueued(redis_client, "pipeline")
    assert [task["task"] for task in rechecks] == ["pipeline.tag", "pipeline.tag"]
    assert all(task["args"][0]["recheck"] is True for task in rechecks)
    assert enqueued(redis_client, "detect") == []
    assert len(store.find(bucket=BUCKET)) == 1


# -- the bucket allow-list -------------------------------------------------------------------


def test_events_for_a_bucket_outside_the_allow_list_are_refused_recorded_and_dead_lettered(
    bridge_: Bridge, sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: a forged message naming another bucket, and one mixing both, ahead of a good one
    forged = notification(s3_record(bucket="someone-elses-bucket"))
    mixed = notification(s3_record(key="content/images/a.jpg"), s3_record(bucket="someone-elses-bucket"))
    for body in (forged, mixed, notification(s3_record())):
        send(sqs, events_queues.events_url, body)

    # When
    poll_until(bridge_, messages=3)

    # Then: no row, no task for the refused ones; each is recorded and in the DLQ unchanged
    [row] = store.find()
    assert row.bucket == BUCKET and row.key != "content/images/a.jpg"
    assert detect_work_ids(redis_client) == [row.work_id]
    with store.engine.connect() as conn:
        recorded = conn.execute(sa.select(malformed_messages)).all()
    assert sorted(r.body_sha256 for r in recorded) == sorted(hashlib.sha256(b.encode()).hexdigest() for b in (forged, mixed))
    assert {r.error_code for r in recorded} == {"BucketNotAllowed"}
    assert all("someone-elses-bucket" in r.reason for r in recorded)
    assert sorted(m["Body"] for m in receive(sqs, events_queues.dead_letter_url, 2)) == sorted([forged, mixed])
    assert bridge_.stats["refused"] == 2


# -- backpressure ------------------------------------------------------------------------------


def test_the_bridge_stops_receiving_above_the_high_water_mark_and_resumes_below_it(
    make_bridge: Callable[..., Bridge], pipeline_app: Any, sqs: Any, events_queues: provision.Queues,
    store: ReportStore, redis_client: Any,
) -> None:
    # Given: the detect queue already holds 3 tasks, the high-water mark is 3, and an event waits
    for i in range(3):
        send(sqs, events_queues.events_url, notification(s3_record(key=f"content/images/{i}.jpg", version_id=f"v{i}")))
    bridge_ = make_bridge(allowed_buckets=(BUCKET,), backlog=Backlog(pipeline_app, ("detect",)), high_water=3)
    poll_until(bridge_, messages=3)
    send(sqs, events_queues.events_url, notification(s3_record(key="content/images/late.jpg")))

    # When the bridge polls while the backlog is at the mark
    assert bridge_.poll_once() == 0

    # Then it did not receive: the message is still visible in SQS, no row was written
    assert bridge_.stats["paused"] == 1
    assert len(store.find()) == 3
    assert sqs.get_queue_attributes(QueueUrl=events_queues.events_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"

    # When a worker takes one task off the queue, the bridge receives again
    redis_client.rpop("detect")
    poll_until(bridge_, messages=4)
    assert len(store.find()) == 4
    assert len(enqueued(redis_client, "detect")) == 3


def test_sigterm_while_paused_stops_the_bridge(
    make_bridge: Callable[..., Bridge], pipeline_app: Any, redis_client: Any
) -> None:
    # Given: a backlog that never drains
    pipeline_app.send_task("pipeline.detect", args=({},), queue="detect")
    bridge_ = make_bridge(backlog=Backlog(pipeline_app, ("detect",)), high_water=1)
    # When: SIGTERM arrives while the bridge is paused (the handler runs on this, the main, thread)
    stopper = threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGTERM))
    stopper.start()
    bridge_.run()
    stopper.join()
    # Then: run() returned without ever receiving
    assert bridge_.stopping
    assert bridge_.stats["paused"] >= 1 and bridge_.stats["messages"] == 0
