"""List, filter, skip what the report store knows, send the rest through the events queue, checkpoint.

Objects are handled in key order. Those outside PIPELINE_PREFIX/PIPELINE_SUFFIXES and those the
report store already holds are counted and skipped; the rest are sent with SendMessageBatch, ten
at a time (``pipeline.requeue.sending``: entries SQS fails on its side are retried). After every
batch the checkpoint moves to the last key handled, and the run stops there if asked to (Ctrl-C,
``--limit``). After the first entry that could not be sent the checkpoint stays where it was, so
the next run sends that entry again (and whatever followed it: the bridge takes a repeat as a
duplicate). A run that reaches the end of the listing with nothing failed removes the checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.backfill.checkpoint import Checkpoint
from pipeline.backfill.listing import PAGE_SIZE, Listed, is_versioned, list_current
from pipeline.backfill.message import already_known, build_body
from pipeline.events import KeyFilter
from pipeline.report.store import ReportStore
from pipeline.requeue.rows import Progress
from pipeline.requeue.sending import MAX_BATCH, Outgoing, batches, send_batch

#: Failures listed one by one in the summary; the count covers the rest.
MAX_FAILURES_SHOWN = 20


@dataclass
class BackfillReport:
    """What a backfill did (in a dry run: would do)."""

    listed: int = 0
    skipped_decided: int = 0
    skipped_filtered: int = 0
    sent: int = 0
    #: key -> why its message could not be sent.
    failed: dict[str, str] = field(default_factory=dict)
    #: The checkpoint this run started after, if any.
    resumed_after: str | None = None
    #: "limit" or "interrupted" when the run stopped before the end of the listing.
    stopped: str | None = None
    last_key: str | None = None

    def summary(self, *, dry_run: bool) -> list[str]:
        """The lines ``pipeline backfill`` prints."""
        lines = [f"resuming after {self.resumed_after!r} (--restart starts over)"] if self.resumed_after else []
        verb = "would send" if dry_run else "sent"
        lines.append(f"listed {self.listed}, skipped decided {self.skipped_decided}, skipped filtered "
                     f"{self.skipped_filtered}, {verb} {self.sent}, failed {len(self.failed)}")
        lines += [f"not sent: {key}: {why}" for key, why in list(self.failed.items())[:MAX_FAILURES_SHOWN]]
        if len(self.failed) > MAX_FAILURES_SHOWN:
            lines.append(f"... and {len(self.failed) - MAX_FAILURES_SHOWN} more not sent")
        if self.stopped and not dry_run:
            lines.append(f"stopped ({self.stopped}) after {self.last_key!r}; run the same command to continue")
        return lines


@dataclass
class Backfill:
    """One backfill run over ``s3://bucket/prefix`` (see the module docstring)."""

    s3: Any
    sqs: Any
    queue_url: str
    store: ReportStore
    bucket: str
    prefix: str
    key_filter: KeyFilter
    checkpoint: Checkpoint
    restart: bool = False
    limit: int | None = None
    dry_run: bool = False
    progress: Progress = lambda _n: None
    #: Asked after every batch: True stops the run there (Ctrl-C sets it).
    should_stop: Callable[[], bool] = lambda: False
    page_size: int = PAGE_SIZE
    report: BackfillReport = field(default_factory=BackfillReport)
    _outgoing: list[Outgoing] = field(default_factory=list)
    _handled: int = 0
    _failed_once: bool = False

    def run(self) -> BackfillReport:
        """List and send until the end of the listing, the limit, or a stop request."""
        start_after = None if self.restart else self.checkpoint.last_key()
        self.report.resumed_after = start_after
        versioned = is_versioned(self.s3, self.bucket)
        for page in list_current(self.s3, self.bucket, self.prefix, versioned=versioned, start_after=start_after,
                                 page_size=self.page_size):
            if not self._handle_page(page):
                return self.report
        if not self.dry_run and not self._failed_once:
            self.checkpoint.clear()
        return self.report

    def _handle_page(self, page: list[Listed]) -> bool:
        """Handle one listing page; False when the run must stop."""
        rows = defaultdict(list)
        for row in self.store.rows_for_keys(self.bucket, [listed.key for listed in page]):
            rows[row.key].append(row)
        for listed in page:
            self._classify(listed, rows[listed.key])
            if len(self._outgoing) == MAX_BATCH or self._limit_reached():
                if not self._flush():
                    return False
        return self._flush()

    def _classify(self, listed: Listed, rows: list[Any]) -> None:
        self.report.listed += 1
        self.report.last_key = listed.key
        self._handled += 1
        if not self.key_filter.matches(listed.key):
            self.report.skipped_filtered += 1
        elif already_known(listed, rows):
            self.report.skipped_decided += 1
        else:
            self._outgoing.append(Outgoing(listed.key, build_body(self.bucket, listed)))

    def _flush(self) -> bool:
        """Send the batch in hand, move the checkpoint, report progress; False when the run must stop."""
        if self.dry_run:
            self.report.sent += len(self._outgoing)
        else:
            for batch in batches(self._outgoing):
                result = send_batch(self.sqs, self.queue_url, batch)
                self.report.sent += len(result.sent)
                self.report.failed.update(result.failed)
                self._failed_once = self._failed_once or bool(result.failed)
            if not self._failed_once and self.report.last_key is not None:
                self.checkpoint.save(self.report.last_key)
        self._outgoing = []
        self.progress(self._handled)
        self._handled = 0
        if self._limit_reached():
            self.report.stopped = "limit"
        elif self.should_stop():
            self.report.stopped = "interrupted"
        return self.report.stopped is None

    def _limit_reached(self) -> bool:
        return self.limit is not None and self.report.sent + len(self._outgoing) >= self.limit


__all__ = ["Backfill", "BackfillReport"]
