"""The bridge on real services: a moto server for SQS (and S3), the test's own Redis as broker, a SQLite file.

What the bridge enqueued is read straight from Redis: kombu's Redis transport keeps each Celery
queue as a list named after it ("detect", "pipeline") of JSON envelopes whose ``body`` is the
base64 of ``[args, kwargs, embed]`` (Celery's task protocol 2; the chain's later steps are in
``embed["chain"]``, last step first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

import bridge.poller
from bridge.poller import Bridge
from pipeline import provision
from pipeline.app import DETECT_TASK, REPORT_TASK, TAG_TASK, create_app
from pipeline.events import KeyFilter
from pipeline.local.processes import Child, free_port, python_module
from pipeline.report.schema import DELETED, PENDING, malformed_messages
from pipeline.report.store import ImageRow, ReportStore
from pipeline.settings import DEFAULT_STALE_AFTER, Settings
from tests.eventdata import load_event

#: Events-queue visibility timeout in these tests, so a message left undeleted comes back quickly.
VISIBILITY_TIMEOUT_SECONDS = 1
#: The in-process bridge's long poll: short, so every test stays fast.
POLL_WAIT_SECONDS = 1
#: Longest a test waits for something another process does.
WAIT_SECONDS = 20.0
#: How soon after SIGTERM a long-polling bridge must have exited (its poll would last 20 s).
STOP_WITHIN_SECONDS = 5.0

BUCKET = "amzn-s3-demo-bucket"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"
VERSION_ID = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
SEQUENCER = "0055AED6DCD90281E5"
EVENT_TIME = "2024-05-14T09:26:01.812Z"
#: As S3 sends it (form-style URL encoding) and as the pipeline must store it.
ENCODED_KEY, DECODED_KEY = "content/images/red+flower+%C3%A9t%C3%A9.jpg", "content/images/red flower été.jpg"


# -- payloads, written from AWS's "Event message structure" page ----------------------------


def s3_record(
    event_name: str = "ObjectCreated:Put",
    key: str = ENCODED_KEY,
    *,
    version_id: str | None = VERSION_ID,
    etag: str | None = ETAG,
    size: int | None = 1024,
    sequencer: str = SEQUENCER,
    event_time: str = EVENT_TIME,
    bucket: str = BUCKET,
) -> dict[str, Any]:
    """One record of an S3 event notification; ``key`` URL-encoded as S3 sends it, optional fields left out when None."""
    obj: dict[str, Any] = {"key": key}
    optional = {"size": size, "eTag": etag, "versionId": version_id, "sequencer": sequencer}
    obj.update({name: value for name, value in optional.items() if value is not None})
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time,
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "moderation-pipeline-jpg",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def notification(*records: dict[str, Any]) -> str:
    """An S3 event notification body as S3 sends it straight to SQS."""
    return json.dumps({"Records": list(records)})


# -- reading the services back --------------------------------------------------------------


def enqueued(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    """The task messages waiting in Celery queue ``queue``, oldest first, decoded."""
    tasks = []
    for raw in reversed(redis_client.lrange(queue, 0, -1)):  # kombu LPUSHes and BRPOPs: the tail is oldest
        envelope = json.loads(raw)
        assert envelope["properties"]["body_encoding"] == "base64"
        args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
        tasks.append({
            "task": envelope["headers"]["task"],
            "args": args,
            "kwargs": kwargs,
            "then": [step["task"] for step in reversed(embed.get("chain") or [])],
        })
    return tasks


def detect_work_ids(redis_client: Any) -> list[str]:
    """work_ids of the detect tasks waiting, asserting each is the head of a full detect -> tag -> report chain."""
    tasks = enqueued(redis_client, "detect")
    for task in tasks:
        assert task["task"] == DETECT_TASK
        assert task["then"] == [TAG_TASK, REPORT_TASK]
    # Only the chain's head is a message; tag and report ride inside it.
    assert enqueued(redis_client, "pipeline") == []
    return [task["args"][0]["work_id"] for task in tasks]


def queue_counts(sqs: Any, url: str) -> dict[str, int]:
    """SQS's counts for ``url``: visible, in flight (received, not deleted) and delayed messages."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {"visible": int(attributes[names[0]]), "in_flight": int(attributes[names[1]]), "delayed": int(attributes[names[2]])}


def assert_deleted_from(sqs: Any, url: str) -> None:
    """Nothing is left in ``url``, in flight or not, and nothing comes back once the visibility timeout is over."""
    assert queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=VISIBILITY_TIMEOUT_SECONDS + 1)
    assert response.get("Messages", []) == []


def receive(sqs: Any, url: str, count: int, *, timeout: float = WAIT_SECONDS) -> list[dict[str, Any]]:
    """Receive ``count`` messages from ``url`` (with their receive counts); fails if fewer arrive in time."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       AttributeNames=["ApproximateReceiveCount"])
        messages.extend(response.get("Messages", []))
    assert len(messages) == count, f"expected {count} messages from {url}, got {len(messages)}"
    return messages


def send(sqs: Any, url: str, body: str) -> str:
    """Send ``body`` to ``url``; returns the MessageId."""
    return sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]


def poll_until(bridge_: Bridge, messages: int, *, timeout: float = WAIT_SECONDS) -> None:
    """Poll until the bridge has received ``messages`` messages in all."""
    deadline = time.monotonic() + timeout
    while bridge_.stats["messages"] < messages and time.monotonic() < deadline:
        bridge_.poll_once()
    assert bridge_.stats["messages"] == messages, bridge_.stats


def wait_for(predicate: Callable[[], Any], what: str, *, timeout: float = WAIT_SECONDS) -> Any:
    """The first truthy value of ``predicate()``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def only_row(store: ReportStore) -> ImageRow:
    rows = store.find()
    assert len(rows) == 1, rows
    return rows[0]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def events_queues(sqs: Any, queues: provision.Queues) -> provision.Queues:
    """The test's queues, the events queue with a VISIBILITY_TIMEOUT_SECONDS visibility timeout."""
    sqs.set_queue_attributes(QueueUrl=queues.events_url, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS)})
    return queues


@pytest.fixture
def make_bridge(sqs: Any, events_queues: provision.Queues, store: ReportStore, pipeline_app: Any) -> Callable[..., Bridge]:
    """``make(app=pipeline_app, stale_after=...)``: an in-process Bridge on the test's queues and store."""

    def make(app: Any = pipeline_app, *, stale_after: float = DEFAULT_STALE_AFTER, **options: Any) -> Bridge:
        return Bridge(
            sqs=sqs,
            queue_url=events_queues.events_url,
            dead_letter_url=events_queues.dead_letter_url,
            store=store,
            app=app,
            key_filter=KeyFilter(),
            stale_after=stale_after,
            wait_time_seconds=POLL_WAIT_SECONDS,
            **options,
        )

    return make


@pytest.fixture
def no_error_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's pause after a failed hand-off, cut to nothing so failure tests stay fast."""
    monkeypatch.setattr(bridge.poller, "ERROR_PAUSE_SECONDS", 0.0)


# -- cases ----------------------------------------------------------------------------------


def test_object_created_writes_pending_row_enqueues_chain_and_deletes_message(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given
    send(sqs, events_queues.events_url, notification(s3_record()))
    bridge_ = make_bridge()

    # When
    received = bridge_.poll_once()

    # Then
    assert received == 1
    row = only_row(store)
    assert (row.bucket, row.key, row.version_id, row.etag, row.sequencer) == (BUCKET, DECODED_KEY, VERSION_ID, ETAG, SEQUENCER)
    assert (row.outcome, row.event_name, row.size) == (PENDING, "ObjectCreated:Put", 1024)
    assert row.event_time == datetime(2024, 5, 14, 9, 26, 1, 812000, tzinfo=timezone.utc)
    [task] = enqueued(redis_client, "detect")
    assert task["task"] == DETECT_TASK
    assert task["then"] == [TAG_TASK, REPORT_TASK]
    assert task["args"][0]["work_id"] == row.work_id
    assert task["args"][0]["image"] == {"bucket": BUCKET, "key": DECODED_KEY, "version_id": VERSION_ID, "etag": ETAG}
    assert task["args"][0]["event_time"] == "2024-05-14T09:26:01.812000+00:00"
    assert enqueued(redis_client, "pipeline") == []
    assert bridge_.stats == {"messages": 1, "events": 1, "enqueued": 1, "malformed": 0, "refused": 0, "superseded": 0, "paused": 0}
    assert_deleted_from(sqs, events_queues.events_url)


def test_same_body_delivered_twice_gives_one_row_and_one_task(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: S3 delivers at least once, so one event can arrive as two messages
    body = notification(s3_record())
    send(sqs, events_queues.events_url, body)
    send(sqs, events_queues.events_url, body)
    bridge_ = make_bridge()

    # When
    poll_until(bridge_, messages=2)

    # Then: the second finds a young pending row, whose chain is in flight, and adds nothing
    row = only_row(store)
    assert detect_work_ids(redis_client) == [row.work_id]
    assert bridge_.stats["enqueued"] == 1
    assert_deleted_from(sqs, events_queues.events_url)


def test_message_whose_delete_was_lost_comes_back_with_one_row_and_a_harmless_second_chain(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: the first delivery is handed off but its delete fails (a receipt handle SQS does not know)
    send(sqs, events_queues.events_url, notification(s3_record()))
    bridge_ = make_bridge()
    [first] = receive(sqs, events_queues.events_url, 1)
    assert bridge_.handle({**first, "ReceiptHandle": "not-a-receipt-handle"}) is False

    # When: SQS delivers the same message again after its visibility timeout
    [again] = receive(sqs, events_queues.events_url, 1)
    handled = bridge_.handle(again)

    # Then: one row; a redelivery cannot tell a lost delete from a lost enqueue, so it enqueues the
    # chain again (every step is idempotent on the work id: the cost is one more detection)
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert handled is True
    row = only_row(store)
    assert detect_work_ids(redis_client) == [row.work_id, row.work_id]
    assert_deleted_from(sqs, events_queues.events_url)


def test_several_records_in_one_message_give_one_row_each(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: one versioned and two unversioned uploads in a single notification
    body = notification(
        s3_record("ObjectCreated:Put", "content/images/one.jpg", version_id="v1.one", sequencer="0066437A29B3B6F01A"),
        s3_record("ObjectCreated:CompleteMultipartUpload", "content/images/two.png", version_id=None,
                  etag="4af981f98d22a0b9979da24b259e5e42-6", sequencer="0066437A2A1C8E2B3C"),
        s3_record("ObjectCreated:Copy", "content/images/three.jpeg", version_id=None, sequencer="0066437A2A9F00AA11"),
    )
    send(sqs, events_queues.events_url, body)
    bridge_ = make_bridge()

    # When
    assert bridge_.poll_once() == 1

    # Then
    rows = {row.key: row for row in store.find()}
    assert sorted(rows) == ["content/images/one.jpg", "content/images/three.jpeg", "content/images/two.png"]
    assert rows["content/images/one.jpg"].version_id == "v1.one"
    assert rows["content/images/two.png"].etag == "4af981f98d22a0b9979da24b259e5e42-6"
    assert {row.outcome for row in rows.values()} == {PENDING}
    assert sorted(detect_work_ids(redis_client)) == sorted(row.work_id for row in rows.values())
    assert bridge_.stats == {"messages": 1, "events": 3, "enqueued": 3, "malformed": 0, "refused": 0, "superseded": 0, "paused": 0}
    assert_deleted_from(sqs, events_queues.events_url)


@pytest.mark.parametrize("event", ["s3_test_event", "s3_object_tagging_put"])
def test_events_that_are_no_work_are_deleted_without_row_or_task(
    event: str, make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    redis_client: Any,
) -> None:
    # Given: S3's test event on configuring notifications, or the pipeline's own PutObjectTagging
    send(sqs, events_queues.events_url, load_event(event))
    bridge_ = make_bridge()

    # When
    assert bridge_.poll_once() == 1

    # Then
    assert store.find() == []
    assert store.malformed_count() == 0
    assert enqueued(redis_client, "detect") == [] and enqueued(redis_client, "pipeline") == []
    assert bridge_.stats == {"messages": 1, "events": 0, "enqueued": 0, "malformed": 0, "refused": 0, "superseded": 0, "paused": 0}
    assert_deleted_from(sqs, events_queues.events_url)
    assert queue_counts(sqs, events_queues.dead_letter_url)["visible"] == 0


def test_malformed_bodies_are_recorded_and_dead_lettered_and_the_batch_goes_on(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: two malformed bodies ahead of a good one, all in one batch
    malformed = {
        "not JSON": "this is not JSON {password=hunter2",
        "a JSON array": '["Records"]',
        "a record without a key": load_event("malformed_missing_key"),
    }
    ids = {send(sqs, events_queues.events_url, body): body for body in malformed.values()}
    send(sqs, events_queues.events_url, notification(s3_record()))
    bridge_ = make_bridge()

    # When
    received = bridge_.poll_once()

    # Then: one batch held all four, and the good message behind the bad ones was handled
    assert received == 4
    assert bridge_.stats == {"messages": 4, "events": 1, "enqueued": 1, "malformed": 3, "refused": 0, "superseded": 0, "paused": 0}
    assert detect_work_ids(redis_client) == [only_row(store).work_id]
    # Recorded by size and digest only: the table has no column that could hold a body
    with store.engine.connect() as conn:
        recorded = {row.message_id: row for row in conn.execute(sa.select(malformed_messages))}
    assert set(malformed_messages.c.keys()) == {"id", "message_id", "received_at", "error_code", "reason", "body_size", "body_sha256"}
    assert set(recorded) == set(ids)
    for message_id, body in ids.items():
        data = body.encode("utf-8")
        assert recorded[message_id].body_size == len(data)
        assert recorded[message_id].body_sha256 == hashlib.sha256(data).hexdigest()
        assert recorded[message_id].error_code == "MalformedEvent"
        assert recorded[message_id].reason
    assert "hunter2" not in recorded[next(i for i, b in ids.items() if b == malformed["not JSON"])].reason
    # Moved to the dead-letter queue unchanged, and gone from the events queue
    dead = receive(sqs, events_queues.dead_letter_url, len(malformed))
    assert sorted(message["Body"] for message in dead) == sorted(malformed.values())
    assert_deleted_from(sqs, events_queues.events_url)


def test_object_removed_marks_row_deleted(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore, redis_client: Any
) -> None:
    # Given: a version the pipeline has seen
    send(sqs, events_queues.events_url, notification(s3_record()))
    bridge_ = make_bridge()
    assert bridge_.poll_once() == 1
    redis_client.flushall()

    # When: that version is deleted for good (DELETE with versionId: ObjectRemoved:Delete, no size or ETag)
    removed = s3_record("ObjectRemoved:Delete", version_id=VERSION_ID, etag=None, size=None, sequencer="0055AED6DCD90281E6")
    send(sqs, events_queues.events_url, notification(removed))
    poll_until(bridge_, messages=2)

    # Then
    row = only_row(store)
    assert (row.key, row.version_id, row.outcome) == (DECODED_KEY, VERSION_ID, DELETED)
    assert enqueued(redis_client, "detect") == [] and enqueued(redis_client, "pipeline") == []
    assert bridge_.stats["enqueued"] == 1
    assert_deleted_from(sqs, events_queues.events_url)


def test_broker_down_keeps_message_and_row_then_redelivery_enqueues(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    spawn_redis: Callable[..., str], no_error_pause: None,
) -> None:
    # Given: a broker on a port nothing listens on, with reconnect retries off so publishing fails fast
    port = free_port()
    app = create_app(Settings(broker_url=f"redis://127.0.0.1:{port}/0"))
    app.conf.update(
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_transport_options={**app.conf.broker_transport_options, "socket_connect_timeout": 1},
    )
    # The default stale_after (600 s) is far longer than the events queue's visibility timeout: the
    # redelivery must be recognised as one (ApproximateReceiveCount 2), not mistaken for work in flight.
    bridge_ = make_bridge(app)
    send(sqs, events_queues.events_url, notification(s3_record()))
    [message] = receive(sqs, events_queues.events_url, 1)

    try:
        # When
        handled = bridge_.handle(message)

        # Then: the work is on disk, the message is still SQS's
        assert handled is False
        row = only_row(store)
        assert row.outcome == PENDING
        assert queue_counts(sqs, events_queues.events_url)["in_flight"] == 1

        # When: the broker is back and SQS delivers the message again
        broker = spawn_redis(port)
        [again] = receive(sqs, events_queues.events_url, 1)
        assert (again["MessageId"], again["Attributes"]["ApproximateReceiveCount"]) == (message["MessageId"], "2")
        handled_again = bridge_.handle(again)
    finally:
        app.close()

    # Then
    assert handled_again is True
    assert only_row(store).work_id == row.work_id
    revived = redis.Redis.from_url(broker)
    try:
        assert detect_work_ids(revived) == [row.work_id]
    finally:
        revived.close()
    assert bridge_.stats["enqueued"] == 1
    assert_deleted_from(sqs, events_queues.events_url)


def test_bridge_process_handles_an_upload_and_exits_0_on_sigterm_while_polling(
    pipeline_env: dict[str, str], sqs: Any, s3: Any, queues: provision.Queues, store: ReportStore,
    redis_client: Any, tmp_path: Path,
) -> None:
    # Given: a bucket notifying the events queue, as `pipeline setup` configures it
    bucket = f"uploads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    provision.allow_bucket_to_send(sqs, queues, bucket)
    provision.ensure_notifications(s3, Settings().replace(bucket=bucket), queues.events_arn)
    # ... and `pipeline bridge` running as a real process
    log_path = tmp_path / "bridge.log"
    child = Child("bridge", python_module("pipeline", "bridge"), {**pipeline_env, "PIPELINE_BUCKET": bucket},
                  log_path).start()
    try:
        # When: an image is uploaded (a key S3 must URL-encode)
        key = "content/images/summer photo+1.jpg"
        put = s3.put_object(Bucket=bucket, Key=key, Body=b"\xff\xd8\xff\xe0 not really a jpeg")

        # Then: the bridge writes its row (moto's notification carries no versionId) and enqueues its chain
        [row] = wait_for(lambda: store.find(bucket=bucket), "the bridge's row")
        assert (row.key, row.etag, row.outcome) == (key, put["ETag"].strip('"'), PENDING)
        assert wait_for(lambda: detect_work_ids(redis_client), "the detect task") == [row.work_id]
        wait_for(lambda: queue_counts(sqs, queues.events_url) == {"visible": 0, "in_flight": 0, "delayed": 0},
                 "the bridge to delete the message")
        time.sleep(1.0)  # back in its 20 s long poll
        assert child.alive(), log_path.read_text()

        # When: SIGTERM while it long-polls
        stopping_at = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        returncode = child.proc.wait(STOP_WITHIN_SECONDS)

        # Then
        assert returncode == 0, log_path.read_text()
        assert time.monotonic() - stopping_at < STOP_WITHIN_SECONDS
        assert "bridge stopped" in log_path.read_text()
    finally:
        child.stop()


def handoff_counts() -> dict[str, float]:
    """This process's bridge lag observations and hand-offs by source, from the default registry."""
    from prometheus_client import REGISTRY

    counts = {source: REGISTRY.get_sample_value("pipeline_bridge_handoffs_total", {"source": source}) or 0.0
              for source in ("s3", "backfill", "requeue")}
    return {**counts, "lag": REGISTRY.get_sample_value("pipeline_bridge_lag_seconds_count") or 0.0}


def test_only_live_s3_events_feed_the_lag_and_every_handoff_is_counted_by_source(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore
) -> None:
    # Given: a live upload, a backfill record of an object from 2021, and a requeue request for the upload
    from pipeline.backfill.listing import Listed
    from pipeline.backfill.message import build_body
    from pipeline.requeue.envelope import build_message

    bridge_ = make_bridge()
    old = Listed(key="content/images/old.jpg", etag=ETAG, size=10, last_modified=datetime(2021, 1, 1, tzinfo=timezone.utc))
    before = handoff_counts()
    # When
    send(sqs, events_queues.events_url, notification(s3_record()))
    send(sqs, events_queues.events_url, build_body(BUCKET, old))
    poll_until(bridge_, 2)
    [upload] = store.rows_for_keys(BUCKET, [DECODED_KEY])
    send(sqs, events_queues.events_url, build_message(upload, reason="test"))
    poll_until(bridge_, 3)
    # Then: one lag observation (the live upload); one hand-off of each source
    after = handoff_counts()
    assert {name: after[name] - before[name] for name in after} == {"s3": 1.0, "backfill": 1.0, "requeue": 1.0, "lag": 1.0}
