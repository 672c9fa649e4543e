"""What ``pipeline status`` shows and the bridge exports as gauges: one reading per part.

Each part is read on its own and never raises: a part that cannot be reached becomes a
:class:`Reading` with the reason, so one dead service does not hide the others. The SQS queues are
read one by one too: a queue the role may not read (or that is gone) is unavailable on its own.
Every read is bounded: a service that accepts connections but does not answer (stopped, overloaded)
is unavailable, "timed out", after a few seconds (SNAPSHOT_TIMEOUT_SECONDS for the broker,
:data:`pipeline.aws.SNAPSHOT_CONFIG` for SQS, the limiter's own Redis timeouts, the database's
connect timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from celery import Celery

from pipeline.backlog import read_depths
from pipeline.ratelimit import LimiterState, RateLimiter, limiter_from_settings
from pipeline.report.store import ReportStore
from pipeline.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds ``pipeline status`` waits for workers to answer a ping.
PING_TIMEOUT_SECONDS = 1.0
#: Seconds any one socket wait on the broker may take before its part is unavailable.
SNAPSHOT_TIMEOUT_SECONDS = 3.0
#: How the limiter part reads when there is no limiter: Rekognition is not a detector, or the limit is off.
LIMITER_NOT_USED = "not used"
LIMITER_OFF = "off"
#: What ``pipeline status`` says after each of those.
LIMITER_ABSENT_WHY = {LIMITER_NOT_USED: "(no rekognition in PIPELINE_DETECTORS)", LIMITER_OFF: "(PIPELINE_RATELIMIT_RATE=0)"}


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A part's value, or why it could not be read (``error``)."""

    value: T | None = None
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class QueueDepth:
    """Messages waiting in one queue; ``role`` is the pipeline's name for it (detect, events, ...).

    ``depth`` is None, and ``error`` says why, when that one queue could not be read.
    """

    role: str
    name: str
    depth: int | None
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None


class QueueUrls:
    """SQS queue URLs by name, each looked up (GetQueueUrl) once per process; a failed lookup is retried."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self._urls: dict[str, str] = {}

    def url(self, name: str) -> str:
        """The URL of queue ``name`` (a URL is returned as it is)."""
        from pipeline import aws

        if name not in self._urls:
            self._urls[name] = aws.queue_url(self.sqs, name)
        return self._urls[name]


@dataclass(frozen=True)
class Pending:
    """Rows still ``pending`` and the age of the oldest (seconds since it was last touched)."""

    rows: int
    oldest_age: float | None


@dataclass(frozen=True)
class Snapshot:
    """Every part ``pipeline status`` shows."""

    broker_queues: Reading[list[QueueDepth]]
    sqs_queues: Reading[list[QueueDepth]]
    workers: Reading[list[str]]
    limiter: Reading[LimiterState | None]
    pending: Reading[Pending]
    #: Why ``limiter`` is None when it is: LIMITER_NOT_USED or LIMITER_OFF (None while a limiter is in use).
    limiter_absent: str | None = None

    def parts(self) -> dict[str, Reading[Any]]:
        """Part name -> reading, in display order."""
        return {"broker_queues": self.broker_queues, "sqs_queues": self.sqs_queues, "workers": self.workers,
                "limiter": self.limiter, "pending": self.pending}

    @property
    def complete(self) -> bool:
        """True when every part, and every queue of the SQS part, could be read."""
        return (all(reading.available for reading in self.parts().values())
                and all(queue.available for queue in self.sqs_queues.value or []))


def read(part: Callable[[], T]) -> Reading[T]:
    """Run one part's reader; any failure becomes the reading's reason."""
    try:
        return Reading(value=part())
    except Exception as exc:  # a service down, refused, misconfigured: shown, never raised
        log.debug("status part unavailable", exc_info=True)
        return Reading(error=reason(exc))


def reason(exc: BaseException) -> str:
    """One line saying why a read failed, starting ``timed out`` when the service did not answer in time."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return f"timed out ({text})" if is_timeout(exc) else text


def is_timeout(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from, is a timeout (socket, redis-py, botocore, libpq)."""
    seen = 0
    while exc is not None and seen < 10:  # the cause chain; bounded against cycles
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__ or "timeout expired" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def broker_queues(app: Celery, settings: Settings) -> list[QueueDepth]:
    """The broker's detect and default (tag, report) queue depths."""
    roles = {"detect": settings.detect_queue, "default": settings.default_queue}
    depths = read_depths(app, tuple(roles.values()), timeout=SNAPSHOT_TIMEOUT_SECONDS)
    return [QueueDepth(role, name, depths[name]) for role, name in roles.items()]


def sqs_queues(urls: QueueUrls, settings: Settings) -> Reading[list[QueueDepth]]:
    """ApproximateNumberOfMessages of the events, dead-letter and review queues, each read on its own.

    Unavailable as a whole only when no queue could be read (SQS unreachable, no permission at all).
    """
    roles = {"events": settings.events_queue, "dead_letter": settings.dead_letter_queue,
             "review": settings.review_queue}
    depths = [sqs_queue(urls, role, name) for role, name in roles.items()]
    if not any(queue.available for queue in depths):
        return Reading(error=depths[0].error)
    return Reading(value=depths)


def sqs_queue(urls: QueueUrls, role: str, name: str) -> QueueDepth:
    """One SQS queue's depth, or why it could not be read."""
    from pipeline.aws import queue_depth

    reading = read(lambda: queue_depth(urls.sqs, urls.url(name)))
    return QueueDepth(role, name, reading.value, reading.error)


def workers_online(app: Celery, timeout: float = PING_TIMEOUT_SECONDS) -> list[str]:
    """Host names of the workers that answered a control ping within ``timeout`` seconds."""
    replies = app.control.ping(timeout=timeout)
    return sorted(name for reply in replies for name in reply)


def shared_limiter(settings: Settings) -> RateLimiter | None:
    """The shared Rekognition limiter to peek at; None when the limit is off (or Rekognition is not used)."""
    return limiter_from_settings(settings) if settings.ratelimit_enabled else None


def limiter_absent(settings: Settings) -> str | None:
    """Why there is no limiter to read: LIMITER_NOT_USED, LIMITER_OFF, or None when there is one."""
    if "rekognition" not in settings.detectors:
        return LIMITER_NOT_USED
    return None if settings.ratelimit_enabled else LIMITER_OFF


def limiter(shared: RateLimiter | None) -> LimiterState | None:
    """The shared limiter's state without taking a slot; None when the limit is off."""
    return None if shared is None else shared.peek()


def pending(store: ReportStore, now: datetime | None = None) -> Pending:
    """Pending rows and the oldest one's age."""
    rows, oldest = store.pending_summary()
    now = now or datetime.now(timezone.utc)
    return Pending(rows=rows, oldest_age=None if oldest is None else (now - oldest).total_seconds())


def gather(settings: Settings, *, app: Celery, sqs: Any, store: Reading[ReportStore]) -> Snapshot:
    """Every part, each read on its own; workers are pinged only when the broker answered.

    ``store`` is the report store, or why it could not be opened (then the pending part says so).
    ``sqs`` should give up quickly (:func:`pipeline.aws.snapshot_client`).
    """
    broker = read(lambda: broker_queues(app, settings))
    workers: Reading[list[str]] = (read(lambda: workers_online(app)) if broker.available
                                   else Reading(error=f"broker unreachable ({broker.error})"))
    rows: Reading[Pending] = read(lambda: pending(store.value)) if store.available else Reading(error=store.error)
    return Snapshot(broker_queues=broker, sqs_queues=sqs_queues(QueueUrls(sqs), settings), workers=workers,
                    limiter=read(lambda: limiter(shared_limiter(settings))), pending=rows,
                    limiter_absent=limiter_absent(settings))
