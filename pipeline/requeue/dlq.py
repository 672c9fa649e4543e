"""Dead-letter queue -> events queue: receive, send, and delete each message only once it is sent.

A message is never lost: it leaves the dead-letter queue only after SendMessageBatch accepted its
copy on the events queue. A message whose send failed stays in the dead-letter queue (visible
again after RECEIVE_VISIBILITY_SECONDS); one whose delete failed is moved again by a later run,
which the bridge takes as a duplicate delivery. The move stops when a receive comes back empty,
or after as many messages as the dead-letter queue held when it started: a malformed message
moved back goes straight to the dead-letter queue again, and must not be moved round in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.aws import queue_depth
from pipeline.awserrors import translated_aws_errors
from pipeline.requeue.rows import Progress
from pipeline.requeue.sending import MAX_BATCH, Outgoing, batches, send_batch

#: How long a received dead letter stays hidden from other readers while it is moved, seconds.
RECEIVE_VISIBILITY_SECONDS = 60
#: Long poll of each receive: a short poll may come back empty while messages remain.
RECEIVE_WAIT_SECONDS = 1


@dataclass
class MoveReport:
    """What a move did: received, sent to the events queue, deleted from the dead-letter queue."""

    #: ApproximateNumberOfMessages of the dead-letter queue when the move started.
    depth: int = 0
    received: int = 0
    sent: int = 0
    deleted: int = 0
    #: MessageId -> why it was not sent (it stays in the dead-letter queue).
    failed: dict[str, str] = field(default_factory=dict)
    #: MessageId -> why its delete failed (sent, yet still in the dead-letter queue).
    not_deleted: dict[str, str] = field(default_factory=dict)

    def summary(self, *, dry_run: bool) -> list[str]:
        """The lines ``pipeline requeue --from-dlq`` prints."""
        if dry_run:
            return [f"would move {self.depth} messages from the dead-letter queue (ApproximateNumberOfMessages)"]
        lines = [f"moved {self.deleted} of {self.received} messages from the dead-letter queue to the events queue"]
        lines += [f"not sent, still in the dead-letter queue: {ref}: {why}" for ref, why in self.failed.items()]
        lines += [f"sent but not deleted, a later run moves it again: {ref}: {why}" for ref, why in self.not_deleted.items()]
        return lines

    @property
    def complete(self) -> bool:
        """True when every message received was sent and deleted."""
        return not self.failed and not self.not_deleted


def move_dead_letters(
    sqs: Any, dead_letter_url: str, events_url: str, *, limit: int | None = None,
    progress: Progress = lambda _n: None,
) -> MoveReport:
    """Move messages from ``dead_letter_url`` to ``events_url``, at most ``limit`` (see the module docstring)."""
    report = MoveReport(depth=queue_depth(sqs, dead_letter_url))
    budget = report.depth if limit is None else min(limit, report.depth)
    while report.received < budget:
        messages = _receive(sqs, dead_letter_url, min(MAX_BATCH, budget - report.received))
        if not messages:
            break
        report.received += len(messages)
        _move_batch(sqs, dead_letter_url, events_url, messages, report)
        progress(len(messages))
    return report


def _receive(sqs: Any, queue_url: str, count: int) -> list[dict[str, Any]]:
    with translated_aws_errors():
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=count, WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS, MessageAttributeNames=["All"],
        )
    return response.get("Messages", [])


def _move_batch(sqs: Any, dead_letter_url: str, events_url: str, messages: list[dict[str, Any]], report: MoveReport) -> None:
    """Send ``messages`` on, then delete from the dead-letter queue exactly the ones that were sent."""
    by_id = {message["MessageId"]: message for message in messages}
    outgoing = [Outgoing(m["MessageId"], m["Body"], m.get("MessageAttributes")) for m in messages]
    for batch in batches(outgoing):
        result = send_batch(sqs, events_url, batch)
        report.sent += len(result.sent)
        report.failed.update(result.failed)
        _delete(sqs, dead_letter_url, [by_id[ref] for ref in result.sent], report)


def _delete(sqs: Any, queue_url: str, messages: list[dict[str, Any]], report: MoveReport) -> None:
    if not messages:
        return
    entries = [{"Id": f"m{index}", "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
    with translated_aws_errors():
        response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    failed = {failure["Id"]: f"{failure.get('Code', 'Unknown')}: {failure.get('Message', '')}"
              for failure in response.get("Failed", [])}
    for index, message in enumerate(messages):
        if f"m{index}" in failed:
            report.not_deleted[message["MessageId"]] = failed[f"m{index}"]
        else:
            report.deleted += 1


__all__ = ["MoveReport", "move_dead_letters", "queue_depth"]
