"""Selected report rows -> requeue messages on the events queue (or, in a dry run, a count).

Rows are read in keyset pages (never all at once), turned into requeue envelopes and sent with
SendMessageBatch. The bridge then moves each row back to pending and enqueues its chain, so a
requeue is as durable as an upload and waits behind the same queue. Rows whose key the bridge's
filter (PIPELINE_PREFIX, PIPELINE_SUFFIXES) no longer accepts are skipped: the bridge would
ignore their messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.events import KeyFilter
from pipeline.report.store import ImageRow, ReportStore, RowSelection
from pipeline.requeue.envelope import build_message
from pipeline.requeue.sending import Outgoing, batches, send_batch

#: Rows read from the report database at a time.
PAGE_SIZE = 500
#: Rows a dry run lists.
SAMPLE_SIZE = 10
#: Failures listed one by one in the summary; the count covers the rest.
MAX_FAILURES_SHOWN = 20

Progress = Callable[[int], None]


@dataclass
class RequeueReport:
    """What a requeue did (or, in a dry run, would do)."""

    #: Rows the selection matched, up to --limit.
    selected: int = 0
    #: Messages on the events queue (a dry run: messages it would send).
    sent: int = 0
    #: Rows left out because the bridge's key filter no longer accepts their key.
    skipped: int = 0
    #: work_id -> why its message could not be sent.
    failed: dict[str, str] = field(default_factory=dict)
    #: The first rows that are (or would be) sent, for a dry run to show.
    sample: list[ImageRow] = field(default_factory=list)

    def summary(self, *, dry_run: bool) -> list[str]:
        """The lines ``pipeline requeue`` prints: a dry run's sample, the count, skips and failures."""
        lines = [_sample_line(row) for row in self.sample] if dry_run else []
        verb = "would requeue" if dry_run else "requeued"
        lines.append(f"{verb} {self.sent} of {self.selected} images")
        if self.skipped:
            lines.append(f"skipped {self.skipped}: key outside PIPELINE_PREFIX/PIPELINE_SUFFIXES (the bridge ignores it)")
        lines += [f"not sent: {work_id}: {reason}" for work_id, reason in list(self.failed.items())[:MAX_FAILURES_SHOWN]]
        if len(self.failed) > MAX_FAILURES_SHOWN:
            lines.append(f"... and {len(self.failed) - MAX_FAILURES_SHOWN} more not sent")
        return lines


def _sample_line(row: ImageRow) -> str:
    version = f" version={row.version_id}" if row.version_id else ""
    return f"  {row.outcome:<7} {row.error_code or '-':<30} s3://{row.bucket}/{row.key}{version}"


def count_selected(store: ReportStore, selection: RowSelection, limit: int | None = None) -> int:
    """How many rows a requeue with ``selection`` and ``limit`` reads."""
    total = store.count_selected(selection)
    return total if limit is None else min(total, limit)


def iter_selected(
    store: ReportStore, selection: RowSelection, *, limit: int | None = None, page_size: int = PAGE_SIZE
) -> Iterator[list[ImageRow]]:
    """The selected rows, one page at a time, at most ``limit`` in all."""
    after_id, remaining = 0, limit
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        page = store.select_page(selection, after_id=after_id, limit=size)
        if not page:
            return
        yield page
        after_id = page[-1].id
        if remaining is not None:
            remaining -= len(page)


def requeue_rows(
    store: ReportStore, sqs: Any, queue_url: str, selection: RowSelection, *, key_filter: KeyFilter,
    reason: str = "", limit: int | None = None, dry_run: bool = False, progress: Progress = lambda _n: None,
    now: datetime | None = None, page_size: int = PAGE_SIZE,
) -> RequeueReport:
    """Send a requeue message for every selected row (none in a ``dry_run``) and report the counts.

    Raises RetryableError / PermanentError when SQS refuses a whole call; the report so far is lost
    with it, but every message already sent is on the queue and will be handled.
    """
    report = RequeueReport()
    for page in iter_selected(store, selection, limit=limit, page_size=page_size):
        report.selected += len(page)
        rows = [row for row in page if key_filter.matches(row.key)]
        report.skipped += len(page) - len(rows)
        report.sample += rows[: SAMPLE_SIZE - len(report.sample)]
        if dry_run:
            report.sent += len(rows)
        else:
            _send_rows(sqs, queue_url, rows, report, reason=reason, outcomes=selection.outcomes, now=now)
        progress(len(page))
    return report


def _send_rows(
    sqs: Any, queue_url: str, rows: list[ImageRow], report: RequeueReport, *, reason: str,
    outcomes: tuple[str, ...], now: datetime | None,
) -> None:
    messages = [Outgoing(row.work_id, build_message(row, reason=reason, outcomes=outcomes, now=now)) for row in rows]
    for batch in batches(messages):
        result = send_batch(sqs, queue_url, batch)
        report.sent += len(result.sent)
        report.failed.update(result.failed)


__all__ = ["PAGE_SIZE", "RequeueReport", "count_selected", "iter_selected", "requeue_rows"]
