"""The pipeline's own Prometheus metrics; every name starts ``pipeline_``.

Counters and histograms are recorded where the thing happens (the report step, the Rekognition
detector, the bridge). In a prefork worker they live in prometheus_client's multiprocess mode
(``pipeline.monitoring.server``), so every pool process counts into files the worker's main
process adds up when scraped. The scrape-time gauges (queue depths, pending rows) are in
``pipeline.monitoring.collector``, exported by the bridge only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from prometheus_client import Counter, Histogram

from pipeline import taxonomy
from pipeline.detectors.base import Label

#: Seconds: from a few milliseconds (no wait) to PIPELINE_RATELIMIT_MAX_WAIT's default and beyond.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds from the S3 event to the bridge's hand-off: S3 delivers in about a second; a backlog takes minutes.
LAG_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)

IMAGES_DECIDED = Counter("pipeline_images_decided", "Decisions recorded, by outcome.", ["outcome"])
LABELS = Counter("pipeline_labels", "Labels recorded with decisions, by top-level taxonomy category.", ["category"])
REKOGNITION_CALLS = Counter("pipeline_rekognition_calls", "DetectModerationLabels requests sent.")
REKOGNITION_THROTTLES = Counter("pipeline_rekognition_throttles", "DetectModerationLabels requests throttled.")
RATELIMIT_WAIT = Histogram("pipeline_ratelimit_wait_seconds", "Time a detection waited for its shared rate-limit slot.",
                           buckets=WAIT_BUCKETS)
BRIDGE_LAG = Histogram("pipeline_bridge_lag_seconds", "Bridge hand-off time minus the S3 event time (live S3 events only).",
                       buckets=LAG_BUCKETS)
BRIDGE_HANDOFFS = Counter("pipeline_bridge_handoffs", "Events the bridge handed on, by source (s3, backfill, requeue).",
                          ["source"])


def record_decision(outcome: str, labels: Iterable[Label]) -> None:
    """One decision recorded: its outcome, and each of its labels by top-level category."""
    IMAGES_DECIDED.labels(outcome=outcome).inc()
    for label in labels:
        LABELS.labels(category=taxonomy.top_level(label.name, label.parent_name)).inc()


def record_rekognition_call() -> None:
    """One DetectModerationLabels request about to be sent."""
    REKOGNITION_CALLS.inc()


def record_rekognition_throttle() -> None:
    """One DetectModerationLabels request answered with throttling."""
    REKOGNITION_THROTTLES.inc()


def observe_ratelimit_wait(seconds: float) -> None:
    """How long one detection waited for its slot of the shared rate."""
    RATELIMIT_WAIT.observe(seconds)


def record_handoff(source: str, event_time: str | None = None, now: datetime | None = None) -> None:
    """One event handed on, by source. Only live S3 events feed the lag: a backfill record's time is
    the object's LastModified, so it would look like days of lag during every backfill."""
    BRIDGE_HANDOFFS.labels(source=source).inc()
    if source == "s3" and event_time is not None:
        observe_event_lag(event_time, now)


def observe_event_lag(event_time: str, now: datetime | None = None) -> None:
    """How long after its S3 event (ISO 8601 ``eventTime``) the bridge handed the event on."""
    lag = seconds_since(event_time, now or datetime.now(timezone.utc))
    if lag is not None:
        BRIDGE_LAG.observe(lag)


def seconds_since(iso_time: str, now: datetime) -> float | None:
    """``now`` minus ``iso_time`` in seconds, at least 0 (clocks drift apart); None when it does not parse."""
    try:
        then = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (now - then).total_seconds())
