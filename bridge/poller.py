"""Long-poll the events queue, hand each message on, delete it only when its work is on disk.

For each message, on its own: parse; write a ``pending`` row per object event (an upsert on the
object version's identity); enqueue its chain; then delete the message. If anything before the
delete fails (database or broker down), the message stays in SQS and comes back after its
visibility timeout. A malformed body, or one naming a bucket outside PIPELINE_ALLOWED_BUCKETS,
is recorded (size and digest, never the body) and moved to the dead-letter queue by the bridge
itself; it never stops the loop.

Ordering: an upload to an unversioned key delivered after a later upload to the same key (S3's
``sequencer``) is recorded ``superseded`` without being judged, and a delete spares the rows of
later uploads. Backpressure: while the broker's detect queue holds PIPELINE_BACKLOG_HIGH_WATER
tasks or more, the bridge does not receive, so SQS stays the buffer.

A requeue request (from ``pipeline requeue``) moves its row back to pending first, and only the
call that did so enqueues.

SIGTERM or SIGINT while waiting on SQS exits at once (nothing is in hand); while messages are in
hand, the batch is finished first.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery

from bridge import dispatch
from pipeline.backfill.message import EVENT_NAME as BACKFILL_EVENT_NAME
from pipeline.backlog import Backlog
from pipeline.errors import BucketNotAllowedError, MalformedEventError, PermanentError
from pipeline.events import Event, KeyFilter, ObjectEvent, parse_body
from pipeline.monitoring import metrics
from pipeline.outcomes import SUPERSEDED
from pipeline.report.store import ReportStore
from pipeline.requeue import RequeueEvent
from pipeline.settings import DEFAULT_BACKLOG_HIGH_WATER

log = logging.getLogger(__name__)

#: SQS's longest long-poll wait.
MAX_WAIT_TIME_SECONDS = 20
#: SQS's largest receive batch.
MAX_BATCH = 10
#: Pause after a failed receive or hand-off, so a dead dependency is not hammered.
ERROR_PAUSE_SECONDS = 2.0
#: How long the bridge waits before looking at the backlog again while it is above the high-water mark.
BACKPRESSURE_PAUSE_SECONDS = 1.0


def handoff_source(event: ObjectEvent) -> str:
    """``backfill`` for a ``pipeline backfill`` record, else ``s3`` (the metrics' ``source`` label)."""
    return "backfill" if event.event_name == BACKFILL_EVENT_NAME else "s3"


class _Interrupted(BaseException):
    """Raised by the signal handler while the bridge waits on SQS with nothing in hand.

    A BaseException, like KeyboardInterrupt, so no library retry loop swallows it.
    """


@dataclass
class Bridge:
    """The SQS -> report store -> Celery bridge."""

    sqs: Any
    queue_url: str
    dead_letter_url: str
    store: ReportStore
    app: Celery
    key_filter: KeyFilter
    stale_after: float
    #: Buckets whose events are accepted; an event naming any other is refused (None: any bucket).
    allowed_buckets: tuple[str, ...] | None = None
    #: The broker's detect-queue depth, read before each receive (None: no backpressure).
    backlog: Backlog | None = None
    high_water: int = DEFAULT_BACKLOG_HIGH_WATER
    #: Called at the top of every round of the loop (the /healthz liveness); None: nothing.
    heartbeat: Callable[[], None] | None = None
    wait_time_seconds: int = MAX_WAIT_TIME_SECONDS
    stopping: bool = False
    _waiting: bool = field(default=False, repr=False)
    _paused: bool = field(default=False, repr=False)
    stats: dict[str, int] = field(default_factory=lambda: {
        "messages": 0, "events": 0, "enqueued": 0, "malformed": 0, "refused": 0, "superseded": 0, "paused": 0})

    def run(self) -> None:
        """Poll until SIGTERM/SIGINT; install the signal handlers of a well-behaved service."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("bridge polling %s", self.queue_url)
        try:
            while not self.stopping:
                try:
                    self.poll_once()
                except _Interrupted:
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("bridge stopped: %s", self.stats)

    def poll_once(self) -> int:
        """Wait for room under the backlog high-water mark, receive one batch and handle each message.

        Returns how many messages were received (0 while paused).
        """
        if self.heartbeat is not None:
            self.heartbeat()
        if not self._room_in_backlog():
            return 0
        messages = self._receive()
        for message in messages:
            self.handle(message)
        return len(messages)

    def handle(self, message: dict[str, Any]) -> bool:
        """Handle one SQS message; True when it was deleted (its work is safe), False when it will come back."""
        self.stats["messages"] += 1
        try:
            events = parse_body(message["Body"], self.key_filter)
        except MalformedEventError as exc:
            self.stats["malformed"] += 1
            return self._dead_letter(message, exc)
        refused = self._refused_buckets(events)
        if refused:  # a forged or misrouted message: never let it make workers touch other buckets
            self.stats["refused"] += 1
            return self._dead_letter(message, BucketNotAllowedError(
                f"event(s) for bucket(s) {', '.join(refused)} outside PIPELINE_ALLOWED_BUCKETS refused"))
        if not events:
            log.info("message %s: nothing to do (test event, ignored event type, or key outside prefix/suffix)",
                     message.get("MessageId"))
        redelivered = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1
        try:
            for event in events:
                self._hand_off(event, redelivered=redelivered)
        except Exception:  # database or broker down: leave the message for SQS to deliver again
            log.exception("could not hand off message %s; it will be delivered again", message.get("MessageId"))
            time.sleep(ERROR_PAUSE_SECONDS)
            return False
        return self._delete(message)

    def _hand_off(self, event: Event, *, redelivered: bool) -> None:
        self.stats["events"] += 1
        if event.kind == "requeue":
            metrics.record_handoff("requeue")
            self._hand_off_requeue(event, redelivered=redelivered)
            return
        metrics.record_handoff(handoff_source(event), event.event_time)
        where = f"s3://{event.bucket}/{event.key} version={event.version_id}"
        if event.kind == "removed":
            marked = self.store.mark_deleted(event.bucket, event.key, event.version_id, sequencer=event.sequencer)
            log.info("%s %s: %d row(s) marked deleted", event.event_name, where, marked)
            return
        row, created = self.store.upsert_pending(event)
        if row.outcome == "pending" and self._superseded(event):
            self.store.record_decision(row.work_id, outcome=SUPERSEDED,
                                       error_message=f"a later upload to the key was received (sequencer > {event.sequencer})")
            self.stats["superseded"] += 1
            metrics.record_decision(SUPERSEDED, ())
            log.info("%s %s: superseded by a later upload to the key; not judged", event.event_name, where)
            return
        work = dispatch.plan(self.app, row, created=created, redelivered=redelivered, stale_after=self.stale_after)
        if work is None:
            log.info("%s %s: already %s, nothing to do", event.event_name, where, row.outcome)
            return
        work.apply_async()
        self.stats["enqueued"] += 1
        log.info("%s %s: enqueued %s", event.event_name, where, "re-check" if row.outcome != "pending" else "chain")

    def _superseded(self, event: ObjectEvent) -> bool:
        """An upload to an unversioned key, delivered after a later upload to the same key (by sequencer)."""
        return event.version_id is None and self.store.newer_upload_exists(event.bucket, event.key, event.sequencer)

    def _room_in_backlog(self) -> bool:
        """True when the broker has room; else wait a little (the loop asks again) and say False."""
        depth = self.backlog.depth() if self.backlog is not None else None
        if depth is None or depth < self.high_water:
            if self._paused:
                log.info("backlog %s is under PIPELINE_BACKLOG_HIGH_WATER %d again: receiving", depth, self.high_water)
                self._paused = False
            return True
        self.stats["paused"] += 1
        if not self._paused:  # one line when the pause starts, one when it ends; not one a second
            log.info("backlog %d >= PIPELINE_BACKLOG_HIGH_WATER %d: not receiving until it drains", depth,
                     self.high_water)
            self._paused = True
        self._waiting = True
        try:
            if self.stopping:
                raise _Interrupted()
            time.sleep(BACKPRESSURE_PAUSE_SECONDS)
        finally:
            self._waiting = False
        return False

    def _refused_buckets(self, events: list[ObjectEvent]) -> list[str]:
        if self.allowed_buckets is None:
            return []
        return sorted({event.bucket for event in events} - set(self.allowed_buckets))

    def _hand_off_requeue(self, event: RequeueEvent, *, redelivered: bool) -> None:
        """``pipeline requeue`` asked for this row: move it back to pending, then enqueue its chain."""
        where = f"s3://{event.bucket}/{event.key} version={event.version_id}"
        row = self.store.requeue(event.work_id, bucket=event.bucket, key=event.key, version_id=event.version_id,
                                 outcomes=event.outcomes)
        claimed = row is not None
        if row is None:
            row = self.store.get(event.work_id)
            if row is None or (row.bucket, row.key, row.version_id) != (event.bucket, event.key, event.version_id):
                log.warning("%s %s: no report row %s for this object, nothing to do", event.event_name, where, event.work_id)
                return
        work = dispatch.plan_requeue(self.app, row, claimed=claimed, redelivered=redelivered)
        if work is None:
            log.info("%s %s: already %s, nothing to do (not %s)", event.event_name, where, row.outcome,
                     "/".join(event.outcomes))
            return
        work.apply_async()
        self.stats["enqueued"] += 1
        log.info("%s %s: %s, enqueued chain (reason %r)", event.event_name, where,
                 "back to pending" if claimed else "still pending on a redelivery", event.reason)

    def _dead_letter(self, message: dict[str, Any], exc: PermanentError) -> bool:
        log.warning("message %s refused and moved to the dead-letter queue: %s %s", message.get("MessageId"),
                    exc.error_code, exc)
        try:
            self.store.record_malformed(message.get("MessageId", ""), exc.error_code, str(exc), message["Body"])
            self.sqs.send_message(QueueUrl=self.dead_letter_url, MessageBody=message["Body"])
        except Exception:
            log.exception("could not dead-letter message %s; it will be delivered again", message.get("MessageId"))
            return False
        return self._delete(message)

    def _receive(self) -> list[dict[str, Any]]:
        self._waiting = True
        try:
            if self.stopping:  # a signal that landed after run() checked, before _waiting was set
                raise _Interrupted()
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=MAX_BATCH,
                WaitTimeSeconds=self.wait_time_seconds,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("receive from %s failed: %s", self.queue_url, exc)
            time.sleep(ERROR_PAUSE_SECONDS)
            return []
        finally:
            self._waiting = False
        return response.get("Messages", [])

    def _delete(self, message: dict[str, Any]) -> bool:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as exc:
            # The work is on disk already; a second delivery finds the row and adds nothing.
            log.warning("could not delete message %s: %s", message.get("MessageId"), exc)
            return False
        return True

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("bridge got signal %d; stopping", signum)
        self.stopping = True
        if self._waiting:
            raise _Interrupted()
