"""`pipeline requeue` on real services: a moto server for SQS, a SQLite report store, the test's own Redis.

Rows are put in the store as the pipeline leaves them (pending, then decided); what the command
sends is read back from the moto events queue, and what the bridge enqueues from Redis (see
tests/integration/test_bridge.py for how Celery's messages are decoded).

SendMessageBatch partial failures cannot be provoked on moto for valid entries, so
:class:`FlakySQS` wraps the real moto client and fails chosen entries the way SQS does: the
entry is not sent and comes back under ``Failed`` with its ``Code`` and ``SenderFault``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

import bridge.poller
from bridge.poller import Bridge
from pipeline import provision
from pipeline.app import create_app
from pipeline.events import KeyFilter, ObjectEvent
from pipeline.local.processes import free_port
from pipeline.report.schema import images
from pipeline.report.store import ImageRow, ReportStore, RowSelection
from pipeline.requeue import build_message, parse_message
from pipeline.requeue import sending
from pipeline.requeue.dlq import move_dead_letters
from pipeline.requeue.rows import requeue_rows
from pipeline.settings import Settings
from tests.integration.test_bridge import (  # noqa: F401  (events_queues, make_bridge: fixtures)
    WAIT_SECONDS,
    assert_deleted_from,
    detect_work_ids,
    enqueued,
    events_queues,
    make_bridge,
    notification,
    poll_until,
    queue_counts,
    receive,
    s3_record,
    send,
)

BUCKET = "uploads"
T0 = datetime(2024, 5, 14, 9, 0, tzinfo=timezone.utc)
#: Tells the requeue under test from the rows' own times (all before it).
LATER = T0 + timedelta(days=1)
COMMAND_TIMEOUT_SECONDS = 60


# -- helpers --------------------------------------------------------------------------------


def add_row(store: ReportStore, key: str, outcome: str = "failed", *, error_code: str = "InternalServerError",
            updated_at: datetime = T0, bucket: str = BUCKET, version_id: str | None = "v1") -> ImageRow:
    """A row as the pipeline leaves it: pending from the bridge, then decided; ``updated_at`` set exactly."""
    event = ObjectEvent(bucket, key, "created", "ObjectCreated:Put", "2024-05-14T08:59:00Z", version_id=version_id,
                        etag="d41d8cd98f00b204e9800998ecf8427e", sequencer="0055AED6DCD90281E5")
    row, _ = store.upsert_pending(event)
    if outcome != "pending":
        store.record_decision(row.work_id, outcome=outcome, detector="rekognition", model_version="7.0",
                              error_code=error_code if outcome == "failed" else None)
    with store.engine.begin() as conn:
        conn.execute(images.update().where(images.c.work_id == row.work_id).values(updated_at=updated_at))
    return store.get(row.work_id)


def drain(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    """Receive (with their attributes) and delete ``count`` messages from ``url``; fails if fewer arrive or more are left."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(messages) < count and time.monotonic() < deadline:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       MessageAttributeNames=["All"])
        messages += response.get("Messages", [])
    assert len(messages) == count, f"expected {count} messages from {url}, got {len(messages)}"
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert queue_counts(sqs, url)["visible"] == 0
    return messages


def requeued_ids(sqs: Any, url: str, count: int) -> list[str]:
    """work_ids of the ``count`` requeue messages on ``url``, sorted (each parsed as the bridge does)."""
    return sorted(parse_message(message["Body"]).work_id for message in drain(sqs, url, count))


def sorted_ids(*rows: ImageRow) -> list[str]:
    return sorted(row.work_id for row in rows)


class FlakySQS:
    """The moto SQS client whose SendMessageBatch fails chosen entries as SQS does (see module docstring).

    ``failures`` maps a body substring (a work_id) to the failures its entry meets, one per call,
    in order; ``copy_to`` also sends every accepted body to another queue (a bridge dead-lettering
    a malformed message at once).
    """

    def __init__(self, sqs: Any, failures: dict[str, list[dict[str, Any]]] | None = None,
                 copy_to: str | None = None) -> None:
        self._sqs = sqs
        self.failures = {marker: list(planned) for marker, planned in (failures or {}).items()}
        self.copy_to = copy_to
        self.batch_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.batch_calls += 1
        accepted, failed = [], []
        for entry in Entries:
            failure = self._next_failure(entry["MessageBody"])
            (failed if failure else accepted).append({"Id": entry["Id"], **failure} if failure else entry)
        response = self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=accepted) if accepted else {}
        if self.copy_to:
            for entry in accepted:
                self._sqs.send_message(QueueUrl=self.copy_to, MessageBody=entry["MessageBody"])
        return {"Successful": response.get("Successful", []), "Failed": response.get("Failed", []) + failed}

    def _next_failure(self, body: str) -> dict[str, Any] | None:
        for marker, planned in self.failures.items():
            if marker in body and planned:
                return planned.pop(0)
        return None


#: What SQS answers for an entry it failed on its side, and for one it blames on the sender.
SERVICE_FAULT = {"SenderFault": False, "Code": "InternalError", "Message": "We encountered an internal error."}
SENDER_FAULT = {"SenderFault": True, "Code": "InvalidMessageContents", "Message": "Invalid characters found."}


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """No back-off between send retries, nor after a failed bridge hand-off: failure tests stay fast."""
    monkeypatch.setattr(sending, "RETRY_PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(bridge.poller, "ERROR_PAUSE_SECONDS", 0.0)


def run_requeue(sqs: Any, queues: provision.Queues, store: ReportStore, selection: RowSelection, **kwargs: Any):
    return requeue_rows(store, sqs, queues.events_url, selection, key_filter=KeyFilter(), reason="test", **kwargs)


# -- selecting and sending ------------------------------------------------------------------


def test_dry_run_sends_nothing_and_counts_what_it_would_send(
    sqs: Any, events_queues: provision.Queues, store: ReportStore
) -> None:
    # Given: three failed rows, one outside the bridge's key filter, and a clean one
    failed = [add_row(store, f"content/images/{n}.jpg") for n in range(3)]
    add_row(store, "other/outside.jpg")
    add_row(store, "content/images/clean.jpg", "clean")

    # When
    report = run_requeue(sqs, events_queues, store, RowSelection(until=LATER), dry_run=True)

    # Then
    assert (report.selected, report.sent, report.skipped, report.failed) == (4, 3, 1, {})
    assert [row.work_id for row in report.sample] == [row.work_id for row in failed]
    assert report.summary(dry_run=True)[0] == (
        f"  failed  InternalServerError            s3://{BUCKET}/content/images/0.jpg version=v1")
    assert report.summary(dry_run=True)[3:] == [
        "would requeue 3 of 4 images",
        "skipped 1: key outside PIPELINE_PREFIX/PIPELINE_SUFFIXES (the bridge ignores it)",
    ]
    assert queue_counts(sqs, events_queues.events_url) == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert {store.get(row.work_id).outcome for row in failed} == {"failed"}


@pytest.mark.parametrize("chosen", ["error_code", "prefix", "window", "clean_too"])
def test_requeue_sends_one_message_per_selected_row_and_only_those(
    chosen: str, sqs: Any, events_queues: provision.Queues, store: ReportStore
) -> None:
    # Given
    denied = add_row(store, "content/images/a.jpg", error_code="AccessDeniedException", updated_at=T0)
    early = add_row(store, "content/images/b.jpg", updated_at=T0 - timedelta(hours=3))
    user7 = add_row(store, "content/images/user 7/c.jpg", updated_at=T0 + timedelta(hours=1))
    clean = add_row(store, "content/images/d.jpg", "clean", updated_at=T0)
    add_row(store, "content/images/e.jpg", "blocked", updated_at=T0)
    selection, expected = {
        "error_code": (RowSelection(error_codes=("InternalServerError",), until=LATER), [early, user7]),
        "prefix": (RowSelection(prefix="content/images/user 7/", until=LATER), [user7]),
        "window": (RowSelection(since=T0 - timedelta(hours=1), until=T0 + timedelta(minutes=30)), [denied]),
        "clean_too": (RowSelection(outcomes=("failed", "clean"), until=LATER), [denied, early, user7, clean]),
    }[chosen]

    # When
    report = run_requeue(sqs, events_queues, store, selection)

    # Then
    assert (report.selected, report.sent, report.failed) == (len(expected), len(expected), {})
    assert requeued_ids(sqs, events_queues.events_url, len(expected)) == sorted_ids(*expected)
    # The rows themselves are the bridge's to change
    assert store.get(user7.work_id).outcome == "failed"


def test_limit_and_small_pages_send_each_row_once(sqs: Any, events_queues: provision.Queues, store: ReportStore) -> None:
    # Given
    rows = [add_row(store, f"content/images/{n:02}.jpg") for n in range(23)]
    pages: list[int] = []

    # When
    report = run_requeue(sqs, events_queues, store, RowSelection(until=LATER), limit=17, page_size=4,
                         progress=pages.append)

    # Then: the 17 oldest rows, read four at a time
    assert (report.selected, report.sent) == (17, 17)
    assert pages == [4, 4, 4, 4, 1]
    assert requeued_ids(sqs, events_queues.events_url, 17) == sorted_ids(*rows[:17])


def test_partial_batch_failures_are_retried_and_what_stays_unsent_is_reported(
    sqs: Any, events_queues: provision.Queues, store: ReportStore, no_pauses: None
) -> None:
    # Given: 12 rows (two batches); SQS fails one entry once, one on every try, and one as the sender's fault
    rows = [add_row(store, f"content/images/{n:02}.jpg") for n in range(12)]
    once, always, sender = rows[1], rows[5], rows[11]
    flaky = FlakySQS(sqs, {once.work_id: [SERVICE_FAULT], always.work_id: [SERVICE_FAULT] * sending.SEND_ATTEMPTS,
                           sender.work_id: [SENDER_FAULT]})

    # When
    report = run_requeue(flaky, events_queues, store, RowSelection(until=LATER))

    # Then
    assert (report.selected, report.sent) == (12, 10)
    assert report.failed == {
        always.work_id: f"InternalError: We encountered an internal error. (after {sending.SEND_ATTEMPTS} tries)",
        sender.work_id: "InvalidMessageContents: Invalid characters found.",
    }
    # first batch: 1 + 3 retries (the last for `always` alone); second batch: one call, no retry of a sender fault
    assert flaky.batch_calls == sending.SEND_ATTEMPTS + 1
    assert requeued_ids(sqs, events_queues.events_url, 10) == sorted_ids(*(r for r in rows if r not in (always, sender)))


# -- the bridge -----------------------------------------------------------------------------


def test_bridge_turns_a_requeue_message_into_a_pending_row_and_one_chain(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    redis_client: Any,
) -> None:
    # Given: a failed row and its requeue message
    failed = add_row(store, "content/images/a.jpg", error_code="AccessDeniedException")
    send(sqs, events_queues.events_url, build_message(failed, reason="role fixed"))
    bridge_ = make_bridge()

    # When
    assert bridge_.poll_once() == 1

    # Then
    row = store.get(failed.work_id)
    assert (row.outcome, row.error_code, row.attempts) == ("pending", None, failed.attempts)
    assert detect_work_ids(redis_client) == [failed.work_id]
    [task] = enqueued(redis_client, "detect")
    assert task["args"][0]["image"] == {"bucket": BUCKET, "key": "content/images/a.jpg", "version_id": "v1",
                                        "etag": "d41d8cd98f00b204e9800998ecf8427e"}
    assert bridge_.stats == {"messages": 1, "events": 1, "enqueued": 1, "malformed": 0, "refused": 0, "superseded": 0, "paused": 0}
    assert_deleted_from(sqs, events_queues.events_url)


def test_a_duplicate_requeue_message_adds_nothing(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    redis_client: Any,
) -> None:
    # Given: the same request twice (SQS delivers at least once; or two runs of the command)
    failed = add_row(store, "content/images/a.jpg")
    body = build_message(failed)
    send(sqs, events_queues.events_url, body)
    send(sqs, events_queues.events_url, body)
    bridge_ = make_bridge()

    # When
    poll_until(bridge_, messages=2)

    # Then: one chain; the second finds the row pending and leaves it
    assert detect_work_ids(redis_client) == [failed.work_id]
    assert store.get(failed.work_id).outcome == "pending"
    assert_deleted_from(sqs, events_queues.events_url)

    # When: the row is decided again, and one more requeue of it arrives
    store.record_decision(failed.work_id, outcome="clean", detector="rekognition", model_version="7.0")
    send(sqs, events_queues.events_url, body)
    bridge_.poll_once()

    # Then
    assert (store.get(failed.work_id).outcome, len(detect_work_ids(redis_client))) == ("clean", 1)
    assert bridge_.stats["enqueued"] == 1


@pytest.mark.parametrize("case", ["unknown", "clean", "deleted", "forged_key", "outside_filter"])
def test_requeue_messages_that_must_not_run_are_deleted_without_work(
    case: str, make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    redis_client: Any,
) -> None:
    # Given
    failed = add_row(store, "content/images/a.jpg")
    clean = add_row(store, "content/images/b.jpg", "clean")
    deleted = add_row(store, "content/images/c.jpg")
    store.mark_deleted(BUCKET, deleted.key)
    outside = add_row(store, "elsewhere/d.jpg")
    body = {
        "unknown": lambda: build_message(_with(failed, work_id="f" * 64)),
        "clean": lambda: build_message(clean),  # asks for failed only
        "deleted": lambda: build_message(deleted),
        "forged_key": lambda: build_message(_with(failed, key="content/images/b.jpg")),
        "outside_filter": lambda: build_message(outside),
    }[case]()
    before = {row.work_id: row for row in store.find()}
    send(sqs, events_queues.events_url, body)
    bridge_ = make_bridge()

    # When
    assert bridge_.poll_once() == 1

    # Then
    assert {row.work_id: row for row in store.find()} == before
    assert enqueued(redis_client, "detect") == [] and enqueued(redis_client, "pipeline") == []
    assert (bridge_.stats["enqueued"], bridge_.stats["malformed"]) == (0, 0)
    assert_deleted_from(sqs, events_queues.events_url)
    assert queue_counts(sqs, events_queues.dead_letter_url)["visible"] == 0


def _with(row: ImageRow, **changes: Any) -> ImageRow:
    return replace(row, **changes)


def test_a_malformed_requeue_message_is_dead_lettered(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore
) -> None:
    body = json.dumps({"pipeline": "requeue", "version": 1, "work_id": "not-a-work-id"})
    send(sqs, events_queues.events_url, body)
    bridge_ = make_bridge()

    assert bridge_.poll_once() == 1

    assert (bridge_.stats["malformed"], store.malformed_count()) == (1, 1)
    [dead] = drain(sqs, events_queues.dead_letter_url, 1)
    assert dead["Body"] == body


def test_a_requeue_whose_enqueue_failed_runs_on_redelivery(
    make_bridge: Callable[..., Bridge], sqs: Any, events_queues: provision.Queues, store: ReportStore,
    spawn_redis: Callable[..., str], no_pauses: None,
) -> None:
    # Given: a broker nobody listens on yet, publishing without reconnect retries
    port = free_port()
    app = create_app(Settings(broker_url=f"redis://127.0.0.1:{port}/0"))
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0,
                    broker_transport_options={**app.conf.broker_transport_options, "socket_connect_timeout": 1})
    failed = add_row(store, "content/images/a.jpg")
    send(sqs, events_queues.events_url, build_message(failed))
    bridge_ = make_bridge(app)
    try:
        # When: the bridge claims the row, then cannot enqueue
        [message] = receive(sqs, events_queues.events_url, 1)
        assert bridge_.handle(message) is False
        assert store.get(failed.work_id).outcome == "pending"

        # When: the broker is back and SQS delivers the message again
        broker = spawn_redis(port)
        [again] = receive(sqs, events_queues.events_url, 1)
        assert again["Attributes"]["ApproximateReceiveCount"] == "2"
        assert bridge_.handle(again) is True
    finally:
        app.close()

    # Then: the row, pending since the first delivery, gets its chain
    revived = redis.Redis.from_url(broker)
    try:
        assert detect_work_ids(revived) == [failed.work_id]
    finally:
        revived.close()
    assert store.get(failed.work_id).outcome == "pending"
    assert_deleted_from(sqs, events_queues.events_url)


# -- the dead-letter queue ------------------------------------------------------------------


def dead_letters(count: int) -> list[str]:
    """Bodies as they reach a dead-letter queue: S3 notifications (redriven) and a malformed one."""
    bodies = [notification(s3_record(key=f"content/images/{n}.jpg", version_id=f"v{n}")) for n in range(count - 1)]
    return bodies + ["{not json at all: été"]


def test_move_keeps_every_message_and_deletes_only_sent_ones(
    sqs: Any, events_queues: provision.Queues, no_pauses: None
) -> None:
    # Given: 12 dead letters, one with a message attribute; SQS refuses two of them on every try
    bodies = dead_letters(12)
    for body in bodies[1:]:
        send(sqs, events_queues.dead_letter_url, body)
    sqs.send_message(QueueUrl=events_queues.dead_letter_url, MessageBody=bodies[0],
                     MessageAttributes={"origin": {"DataType": "String", "StringValue": "redrive"}})
    refused = ["content/images/3.jpg", "content/images/7.jpg"]
    flaky = FlakySQS(sqs, {key: [SENDER_FAULT] for key in refused})

    # When
    report = move_dead_letters(flaky, events_queues.dead_letter_url, events_queues.events_url)

    # Then: count in = count out
    assert (report.depth, report.received, report.sent, report.deleted, report.not_deleted) == (12, 12, 10, 10, {})
    assert len(report.failed) == 2
    moved = drain(sqs, events_queues.events_url, 10)
    assert sorted(m["Body"] for m in moved) == sorted(b for b in bodies if not any(k in b for k in refused))
    [with_attribute] = [m for m in moved if m["Body"] == bodies[0]]
    assert with_attribute["MessageAttributes"]["origin"]["StringValue"] == "redrive"
    left = queue_counts(sqs, events_queues.dead_letter_url)
    assert left["visible"] + left["in_flight"] == 2  # the refused ones, hidden until their visibility timeout


def test_move_stops_after_the_depth_it_started_with(
    sqs: Any, events_queues: provision.Queues
) -> None:
    # Given: three dead letters, and a bridge that dead-letters each again as soon as it arrives
    for body in dead_letters(3):
        send(sqs, events_queues.dead_letter_url, body)
    bouncing = FlakySQS(sqs, copy_to=events_queues.dead_letter_url)

    # When
    report = move_dead_letters(bouncing, events_queues.dead_letter_url, events_queues.events_url)

    # Then: three moved, not round and round
    assert (report.depth, report.received, report.sent, report.deleted) == (3, 3, 3, 3)
    assert queue_counts(sqs, events_queues.events_url)["visible"] == 3
    assert queue_counts(sqs, events_queues.dead_letter_url)["visible"] == 3


def test_move_of_an_empty_dead_letter_queue_moves_nothing(sqs: Any, events_queues: provision.Queues) -> None:
    report = move_dead_letters(sqs, events_queues.dead_letter_url, events_queues.events_url, limit=5)
    assert (report.depth, report.received, report.sent) == (0, 0, 0)


def test_move_with_a_limit(sqs: Any, events_queues: provision.Queues) -> None:
    for body in dead_letters(4):
        send(sqs, events_queues.dead_letter_url, body)

    report = move_dead_letters(sqs, events_queues.dead_letter_url, events_queues.events_url, limit=3)

    assert (report.received, report.sent, report.deleted) == (3, 3, 3)
    assert len(drain(sqs, events_queues.events_url, 3)) == 3
    assert queue_counts(sqs, events_queues.dead_letter_url) == {"visible": 1, "in_flight": 0, "delayed": 0}


# -- the command ----------------------------------------------------------------------------


def run_pipeline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS)


def test_command_dry_run_then_requeue_by_error_code(
    pipeline_env: dict[str, str], sqs: Any, queues: provision.Queues, store: ReportStore
) -> None:
    # Given
    throttled = [add_row(store, f"content/images/{n}.jpg", error_code="ThrottlingException") for n in range(2)]
    add_row(store, "content/images/denied.jpg", error_code="AccessDeniedException")

    # When
    dry = run_pipeline(pipeline_env, "requeue", "--error-code", "ThrottlingException", "--dry-run")

    # Then
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"  failed  ThrottlingException            s3://{BUCKET}/content/images/0.jpg version=v1",
        f"  failed  ThrottlingException            s3://{BUCKET}/content/images/1.jpg version=v1",
        "would requeue 2 of 2 images",
    ]
    assert queue_counts(sqs, queues.events_url)["visible"] == 0

    # When
    done = run_pipeline(pipeline_env, "requeue", "--error-code", "ThrottlingException", "--reason", "quota raised")

    # Then
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["requeued 2 of 2 images"]
    messages = drain(sqs, queues.events_url, 2)
    assert sorted(parse_message(m["Body"]).work_id for m in messages) == sorted_ids(*throttled)
    assert {parse_message(m["Body"]).reason for m in messages} == {"quota raised"}


def test_command_moves_the_dead_letter_queue_and_counts_it_in_a_dry_run(
    pipeline_env: dict[str, str], sqs: Any, queues: provision.Queues
) -> None:
    # Given
    for body in dead_letters(3):
        send(sqs, queues.dead_letter_url, body)

    # When
    dry = run_pipeline(pipeline_env, "requeue", "--from-dlq", "--dry-run")

    # Then: counted, not received
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["would move 3 messages from the dead-letter queue (ApproximateNumberOfMessages)"]
    assert queue_counts(sqs, queues.dead_letter_url) == {"visible": 3, "in_flight": 0, "delayed": 0}

    # When
    done = run_pipeline(pipeline_env, "requeue", "--from-dlq")

    # Then
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["moved 3 of 3 messages from the dead-letter queue to the events queue"]
    assert sorted(m["Body"] for m in drain(sqs, queues.events_url, 3)) == sorted(dead_letters(3))
    assert queue_counts(sqs, queues.dead_letter_url) == {"visible": 0, "in_flight": 0, "delayed": 0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outcome", "blocked"], "blocked images are not judged again: their block tag is never removed"),
        (["--from-dlq", "--prefix", "content/"], "--from-dlq moves whole messages"),
        (["--since", "last tuesday"], "'last tuesday' is not an ISO-8601 date/time"),
        (["--since", "1h", "--until", "2h"], "must be before --until"),
    ],
)
def test_command_refuses_bad_options(pipeline_env: dict[str, str], args: list[str], message: str) -> None:
    done = run_pipeline(pipeline_env, "requeue", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_command_names_a_missing_events_queue(pipeline_env: dict[str, str]) -> None:
    done = run_pipeline({**pipeline_env, "PIPELINE_EVENTS_QUEUE": "no-such-queue"}, "requeue", "--dry-run")
    assert done.returncode == 2
    assert "PIPELINE_EVENTS_QUEUE=no-such-queue" in done.stderr and "Traceback" not in done.stderr
