"""Per-process resources the tasks share: settings, clients, store, detector.

Built lazily once per process (and again after a fork), so prefork children never share
their parent's connections, and the detector (a model, a hash list) loads once, not per task.
The worker's pool size is recorded here too, for the local model's thread count.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from celery import signals

from pipeline import aws
from pipeline.decision import Policy
from pipeline.detectors.base import Detector
from pipeline.detectors.factory import build_detector
from pipeline.report.store import ReportStore
from pipeline.settings import Settings


@dataclass
class Runtime:
    """What a worker process needs to run the tasks."""

    settings: Settings
    store: ReportStore
    policy: Policy

    @functools.cached_property
    def detector(self) -> Detector:
        return build_detector(self.settings, client=aws.client, worker_processes=worker_processes)

    @property
    def s3(self) -> Any:
        return aws.client("s3")

    @property
    def sqs(self) -> Any:
        return aws.client("sqs")

    @functools.cached_property
    def review_queue_url(self) -> str:
        return aws.queue_url(self.sqs, self.settings.review_queue)


#: The pool size of the Celery worker this process belongs to (None outside a worker). Recorded
#: in the worker's main process before the pool forks, so every child inherits it.
worker_processes: int | None = None


@signals.worker_init.connect
def _record_pool_size(sender: Any = None, **_: Any) -> None:
    """Keep ``--concurrency`` (or Celery's default, the CPU count) for the local model's threads."""
    global worker_processes
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and concurrency > 0:
        worker_processes = concurrency
    elif concurrency is not None:  # "auto", resolved after this signal: one process per usable CPU
        worker_processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def runtime(settings: Settings) -> Runtime:
    """The Runtime of this process for ``settings``."""
    return _runtime(settings, os.getpid())


@functools.lru_cache(maxsize=4)
def _runtime(settings: Settings, pid: int) -> Runtime:
    return Runtime(settings=settings, store=ReportStore.from_url(settings.database_url), policy=Policy.from_settings(settings))
