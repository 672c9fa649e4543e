"""Per-process resources the tasks share: settings, clients, store, detector.

Built lazily once per process (and again after a fork), so prefork children never share
their parent's connections, and the detector (a model, a hash list) loads once, not per task.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

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
        return build_detector(self.settings, client=aws.client)

    @property
    def s3(self) -> Any:
        return aws.client("s3")

    @property
    def sqs(self) -> Any:
        return aws.client("sqs")

    @functools.cached_property
    def review_queue_url(self) -> str:
        return aws.queue_url(self.sqs, self.settings.review_queue)


def runtime(settings: Settings) -> Runtime:
    """The Runtime of this process for ``settings``."""
    return _runtime(settings, os.getpid())


@functools.lru_cache(maxsize=4)
def _runtime(settings: Settings, pid: int) -> Runtime:
    return Runtime(settings=settings, store=ReportStore.from_url(settings.database_url), policy=Policy.from_settings(settings))
