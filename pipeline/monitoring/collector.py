"""The snapshot's parts as gauges, read when Prometheus scrapes (the bridge's /metrics only).

They describe shared state (the broker, SQS, the report database, the limiter in Redis), not
one process: exported by every worker replica too, a ``sum`` across targets would multiply
them. So only the bridge exports them; with more than one bridge use ``max`` across instances.
A part that cannot be read is left out of that scrape and ``pipeline_status_up{part}`` is 0; an
SQS queue that cannot be read on its own (no permission, gone) is left out of ``pipeline_queue_depth``
and makes ``pipeline_status_up{part="sqs_queues"}`` 0, while the other queues keep their depths.
Queue URLs are looked up once per process, not at every scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.monitoring import snapshot
from pipeline.ratelimit import RateLimiter
from pipeline.report.store import ReportStore
from pipeline.settings import Settings


class SnapshotCollector(Collector):
    """Queue depths, pending rows and the shared limiter, read at scrape time."""

    def __init__(self, settings: Settings, *, app: Celery, sqs: Any, store: ReportStore,
                 limiter: RateLimiter | None) -> None:
        self._settings, self._app, self._store, self._limiter = settings, app, store, limiter
        self._queue_urls = snapshot.QueueUrls(sqs)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("pipeline_status_up", "1 when the part could be read at this scrape.", labels=["part"])
        depth = GaugeMetricFamily("pipeline_queue_depth", "Messages waiting, by queue role (detect, default: broker; "
                                  "events, dead_letter, review: SQS).", labels=["queue"])
        broker = snapshot.read(lambda: snapshot.broker_queues(self._app, self._settings))
        sqs = snapshot.sqs_queues(self._queue_urls, self._settings)
        for part, reading in (("broker_queues", broker), ("sqs_queues", sqs)):
            queues = reading.value or []
            up.add_metric([part], 1.0 if reading.available and all(q.available for q in queues) else 0.0)
            for queue in queues:
                if queue.depth is not None:
                    depth.add_metric([queue.role], queue.depth)
        yield depth
        yield from self._pending(up)
        yield from self._limiter_gauges(up)
        yield up

    def _pending(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        reading = snapshot.read(lambda: snapshot.pending(self._store))
        up.add_metric(["pending"], 1.0 if reading.available else 0.0)
        if reading.value is not None:
            yield GaugeMetricFamily("pipeline_pending_rows", "Report rows still pending.", value=reading.value.rows)
            yield GaugeMetricFamily("pipeline_oldest_pending_age_seconds",
                                    "Seconds since the oldest pending row was touched (0 when none).",
                                    value=reading.value.oldest_age or 0.0)

    def _limiter_gauges(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        if self._limiter is None:
            return
        reading = snapshot.read(lambda: snapshot.limiter(self._limiter))
        up.add_metric(["limiter"], 1.0 if reading.available else 0.0)
        if reading.value is not None:
            yield GaugeMetricFamily("pipeline_ratelimit_rate", "The shared Rekognition rate now, calls/s.",
                                    value=reading.value.current_rate)
            yield GaugeMetricFamily("pipeline_ratelimit_configured_rate", "PIPELINE_RATELIMIT_RATE, calls/s.",
                                    value=reading.value.configured_rate)
