"""Thin Celery tasks: serialization, retries and routing; the logic is in ``pipeline.steps``.

Each task is safe to run twice (``acks_late``): detection is a read, tagging merges, reporting
is an idempotent update on the work id. A RetryableError is retried with exponential back-off
and full jitter up to PIPELINE_MAX_RETRIES; a PermanentError, or retries running out, becomes a
``failed`` result that still flows on to ``report``, so every image ends with a recorded outcome.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

from celery import Task, shared_task

from pipeline import steps, sweeper
from pipeline.app import DETECT_TASK, REPORT_TASK, SWEEP_TASK, TAG_TASK
from pipeline.backlog import room_under
from pipeline.errors import PermanentError, PipelineError, RetryableError
from pipeline.runtime import Runtime, runtime

log = logging.getLogger(__name__)

#: First back-off, seconds; doubles on each retry up to PIPELINE_RETRY_BACKOFF_MAX.
BACKOFF_BASE_SECONDS = 1.0
#: Doublings after which the back-off is at its cap anyway; 2**1024 would not fit in a float.
MAX_DOUBLINGS = 64


@shared_task(bind=True, name=DETECT_TASK)
def detect(self: Task, work: dict[str, Any]) -> dict[str, Any]:
    """detect: the configured detector(s) on the object version."""
    return _run(self, steps.detect, work, give_up=_failed)


@shared_task(bind=True, name=TAG_TASK)
def tag(self: Task, result: dict[str, Any]) -> dict[str, Any]:
    """tag: ``BlockedContent=true`` (configurable) on blocked images, merge-safe."""
    return _run(self, steps.tag, result, give_up=_failed)


@shared_task(bind=True, name=REPORT_TASK)
def report(self: Task, result: dict[str, Any]) -> dict[str, Any]:
    """report: the decision row; blocked images also go to the review queue."""
    return _run(self, steps.report, result, give_up=steps.report_without_review)


@shared_task(bind=True, name=SWEEP_TASK)
def sweep(self: Task) -> dict[str, Any]:
    """sweep: re-enqueue pending rows whose task was lost (see ``pipeline.sweeper``)."""
    settings = self.app.pipeline_settings
    rt = runtime(settings)
    room = room_under(self.app, (settings.detect_queue,), settings.backlog_high_water)
    return sweeper.sweep(rt.store, self.app, stale_after=settings.stale_after, batch=settings.sweep_batch,
                         room=room).to_dict()


def backoff_seconds(retries: int, cap: float, base: float = BACKOFF_BASE_SECONDS) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2**retries)]."""
    return random.uniform(0, min(cap, base * 2.0 ** min(retries, MAX_DOUBLINGS)))


GiveUp = Callable[[Runtime, dict, PipelineError], dict]


def _failed(_rt: Runtime, payload: dict, exc: PipelineError) -> dict:
    return steps.failed(payload, exc)


def _run(task: Task, step: Callable[[Runtime, dict], dict], payload: dict[str, Any], *, give_up: GiveUp) -> dict:
    """Run ``step``; retry what is retryable; ``give_up`` turns a final error into the task's result."""
    rt = runtime(task.app.pipeline_settings)
    try:
        return step(rt, payload)
    except PermanentError as exc:
        log.warning("permanent failure in %s for %s: %s %s", task.name, payload.get("work_id"), exc.error_code, exc)
        return give_up(rt, payload, exc)
    except RetryableError as exc:
        return _retry_or_give_up(task, rt, payload, exc, give_up)
    except Exception as exc:  # a bug or an unmapped library error: retry, then record it
        log.exception("unexpected error in %s for %s", task.name, payload.get("work_id"))
        error = PipelineError(f"{type(exc).__name__}: {exc}", code="UnexpectedError")
        return _retry_or_give_up(task, rt, payload, error, give_up)


def _retry_or_give_up(task: Task, rt: Runtime, payload: dict, exc: PipelineError, give_up: GiveUp) -> dict:
    settings = rt.settings
    if task.request.retries < settings.max_retries:
        countdown = backoff_seconds(task.request.retries, settings.retry_backoff_max)
        raise task.retry(exc=exc, countdown=countdown, max_retries=settings.max_retries)
    log.warning("%s gave up on %s after %d retries: %s", task.name, payload.get("work_id"), task.request.retries, exc)
    return give_up(rt, payload, exc)
