"""Long-poll the events queue, hand each message on, delete it only when its work is on disk.

For each message, on its own: parse; write a ``pending`` row per object event (an upsert on the
object version's identity); enqueue its chain; then delete the message. If anything before the
delete fails (database or broker down), the message stays in SQS and comes back after its
visibility timeout. A malformed body is recorded (size and digest, never the body) and moved to
the dead-letter queue by the bridge itself; it never stops the loop. A requeue request (from
``pipeline requeue``) moves its row back to pending first, and only the call that did so enqueues.

SIGTERM or SIGINT while waiting on SQS exits at once (nothing is in hand); while messages are in
hand, the batch is finished first.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery

from bridge import dispatch
from pipeline.errors import MalformedEventError
from pipeline.events import Event, KeyFilter, parse_body
from pipeline.report.store import ReportStore
from pipeline.requeue import RequeueEvent

log = logging.getLogger(__name__)

#: SQS's longest long-poll wait.
MAX_WAIT_TIME_SECONDS = 20
#: SQS's largest receive batch.
MAX_BATCH = 10
#: Pause after a failed receive or hand-off, so a dead dependency is not hammered.
ERROR_PAUSE_SECONDS = 2.0


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
    wait_time_seconds: int = MAX_WAIT_TIME_SECONDS
    stopping: bool = False
    _waiting: bool = field(default=False, repr=False)
    stats: dict[str, int] = field(default_factory=lambda: {"messages": 0, "events": 0, "enqueued": 0, "malformed": 0})

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
        """Receive one batch and handle each message; returns how many were received."""
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
            return self._dead_letter(message, exc)
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
            self._hand_off_requeue(event, redelivered=redelivered)
            return
        where = f"s3://{event.bucket}/{event.key} version={event.version_id}"
        if event.kind == "removed":
            marked = self.store.mark_deleted(event.bucket, event.key, event.version_id)
            log.info("%s %s: %d row(s) marked deleted", event.event_name, where, marked)
            return
        row, created = self.store.upsert_pending(event)
        work = dispatch.plan(self.app, row, created=created, redelivered=redelivered, stale_after=self.stale_after)
        if work is None:
            log.info("%s %s: already %s, nothing to do", event.event_name, where, row.outcome)
            return
        work.apply_async()
        self.stats["enqueued"] += 1
        log.info("%s %s: enqueued %s", event.event_name, where, "re-check" if row.outcome != "pending" else "chain")

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

    def _dead_letter(self, message: dict[str, Any], exc: MalformedEventError) -> bool:
        self.stats["malformed"] += 1
        log.warning("malformed message %s moved to the dead-letter queue: %s", message.get("MessageId"), exc)
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
