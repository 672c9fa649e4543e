"""The sweeper: find ``pending`` rows whose task was lost and enqueue their chains again.

Work is lost when Redis restarts empty, or a worker or the bridge dies between writing the row and
finishing the chain. Every attempt refreshes the row's ``updated_at`` (``ReportStore.start_attempt``),
and a retry never waits longer than PIPELINE_RETRY_BACKOFF_MAX, which Settings keeps under
PIPELINE_STALE_AFTER; so a pending row untouched for PIPELINE_STALE_AFTER has no live task.
Claiming a row refreshes it too, so two sweepers never enqueue one row twice, and a re-enqueued row
gets another PIPELINE_STALE_AFTER before it can be taken again. A run never enqueues more than the
room left under PIPELINE_BACKLOG_HIGH_WATER.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery

from bridge import dispatch
from pipeline.report.store import ReportStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What one sweeper run found and did."""

    #: Stale pending rows seen (claimed now plus those left for a later run).
    found: int
    enqueued: int
    #: Stale rows left for the next run (batch size or backlog room reached, or the broker failed).
    left: int
    #: Age in seconds of the oldest pending row before the run, None when there was none.
    oldest_pending_age: float | None
    #: True when the broker refused an enqueue (the rest is left for the next run).
    broker_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep(store: ReportStore, app: Celery, *, stale_after: float, batch: int, room: int | None = None,
          now: datetime | None = None) -> SweepReport:
    """Re-enqueue up to ``min(batch, room)`` stale pending rows; ``room`` None means no backlog cap."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=stale_after)
    _, oldest = store.pending_summary()
    stale = store.count_stale(cutoff)
    limit = batch if room is None else max(0, min(batch, room))
    enqueued, broker_error = 0, False
    for row in store.claim_stale(cutoff, limit):
        try:
            dispatch.build_chain(app, row).apply_async()
        except Exception as exc:  # broker down: the row was claimed, so it waits another stale_after
            log.error("sweeper could not enqueue %s (%s: %s); it stays pending for a later run",
                      row.work_id, type(exc).__name__, exc)
            broker_error = True
            break
        enqueued += 1
    report = SweepReport(found=stale, enqueued=enqueued, left=stale - enqueued,
                         oldest_pending_age=None if oldest is None else round((now - oldest).total_seconds(), 3),
                         broker_error=broker_error)
    level = logging.WARNING if stale else logging.INFO
    log.log(level, "sweeper: %d stale pending row(s), %d re-enqueued, %d left; oldest pending %s s",
            report.found, report.enqueued, report.left, report.oldest_pending_age)
    return report
