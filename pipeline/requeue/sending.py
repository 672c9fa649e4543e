"""SendMessageBatch in SQS-sized batches, retrying the entries SQS could not take.

SendMessageBatch can succeed for some entries and fail for others (each failed entry comes back
with ``Id``, ``Code`` and ``SenderFault``). Entries that failed through no fault of ours are
sent again, a few times with back-off; an entry SQS blames on the sender (too large, invalid
characters) would fail again, so it is reported at once. A failure of the whole call (after
botocore's own retries) raises the pipeline's error for it: continuing with the next batch
against a queue that refuses everything would only multiply the failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.awserrors import translated_aws_errors

#: SQS's largest SendMessageBatch and DeleteMessageBatch.
MAX_BATCH = 10
#: SQS's limit on the bodies of one SendMessageBatch together (256 KiB, the message limit too).
MAX_BATCH_BYTES = 256 * 1024
#: Tries of an entry SQS failed through no fault of ours, the first one included.
SEND_ATTEMPTS = 4
#: Pause before the first retry of failed entries, doubled before each later one, seconds.
RETRY_PAUSE_SECONDS = 0.25


@dataclass(frozen=True)
class Outgoing:
    """One message to send; ``ref`` is the caller's name for it (a work_id, a MessageId)."""

    ref: str
    body: str
    #: SQS message attributes to send along (as ReceiveMessage returns them), if any.
    attributes: Mapping[str, Any] | None = None


@dataclass
class SendResult:
    """What became of a batch: the refs SQS accepted, and why the others were not sent."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def batches(messages: Sequence[Outgoing]) -> Iterator[list[Outgoing]]:
    """``messages`` in order, cut into batches within SQS's count and size limits."""
    batch: list[Outgoing] = []
    size = 0
    for message in messages:
        length = len(message.body.encode("utf-8"))
        if batch and (len(batch) == MAX_BATCH or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch


def send_batch(
    sqs: Any, queue_url: str, batch: Sequence[Outgoing], *, attempts: int | None = None,
    pause: float | None = None, sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """Send one batch (see :func:`batches`), retrying entries SQS failed on its side.

    ``attempts`` and ``pause`` default to SEND_ATTEMPTS and RETRY_PAUSE_SECONDS.
    Raises RetryableError / PermanentError when the call itself fails.
    """
    attempts = max(1, SEND_ATTEMPTS if attempts is None else attempts)
    pause = RETRY_PAUSE_SECONDS if pause is None else pause
    result = SendResult()
    pending = {f"m{index}": message for index, message in enumerate(batch)}  # SQS wants [A-Za-z0-9_-] ids
    for attempt in range(attempts):
        if attempt:
            sleep(pause * 2 ** (attempt - 1))
        failures = _send_once(sqs, queue_url, pending)
        result.sent += [message.ref for entry_id, message in pending.items() if entry_id not in failures]
        retry = {}
        for entry_id, (sender_fault, reason) in failures.items():
            if sender_fault:
                result.failed[pending[entry_id].ref] = reason
            else:
                retry[entry_id] = pending[entry_id]
        pending = retry
        if not pending:
            return result
    for entry_id, message in pending.items():
        result.failed[message.ref] = failures[entry_id][1] + f" (after {attempts} tries)"
    return result


def _send_once(sqs: Any, queue_url: str, entries: Mapping[str, Outgoing]) -> dict[str, tuple[bool, str]]:
    """One SendMessageBatch call; returns the failed entry ids with (sender's fault, reason)."""
    request = [_entry(entry_id, message) for entry_id, message in entries.items()]
    with translated_aws_errors():
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=request)
    return {
        failure["Id"]: (bool(failure.get("SenderFault")), f"{failure.get('Code', 'Unknown')}: {failure.get('Message', '')}")
        for failure in response.get("Failed", [])
    }


def _entry(entry_id: str, message: Outgoing) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = dict(message.attributes)
    return entry


__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "Outgoing", "SendResult", "batches", "send_batch"]
