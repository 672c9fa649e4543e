"""What the end-to-end tests share: AWS resources on the moto server and the environment of `pipeline` children.

Each test names its own bucket and queues (a random run id), so tests never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import provision
from pipeline.report import migrate
from pipeline.settings import Settings
from tests.conftest import AWS_TEST_ENV, aws_client


@dataclass(frozen=True)
class Resources:
    """A bucket notifying its own events queue (with DLQ and redrive), a review queue, a report database."""

    settings: Settings
    s3: Any
    sqs: Any
    queues: provision.Queues
    moto_endpoint: str


def provision_resources(moto_endpoint: str, tmp: Path, name: str, *, notify_prefix: str | None = None,
                        **settings: Any) -> Resources:
    """Create what `pipeline setup` would: bucket, queues, queue policy, notification; migrate the database.

    ``notify_prefix``: the prefix the bucket notification filters on (default: the settings' prefix).
    """
    run = uuid.uuid4().hex[:8]
    config = Settings(database_url=f"sqlite:///{tmp / 'report.db'}", bucket=f"{name}-{run}",
                      events_queue=f"events-{run}", dead_letter_queue=f"dlq-{run}", review_queue=f"review-{run}",
                      **settings)
    s3, sqs = aws_client("s3", moto_endpoint), aws_client("sqs", moto_endpoint)
    provision.ensure_bucket(s3, config.bucket)
    queues = provision.ensure_queues(sqs, config)
    provision.allow_bucket_to_send(sqs, queues, config.bucket)
    notify = config if notify_prefix is None else config.replace(prefix=notify_prefix)
    provision.ensure_notifications(s3, notify, queues.events_arn)
    migrate.upgrade(config.database_url)
    return Resources(config, s3, sqs, queues, moto_endpoint)


def child_env(resources: Resources, *, broker_url: str, rekognition_url: str, **extra: str) -> dict[str, str]:
    """The environment of `pipeline worker|bridge|beat|...` children for ``resources``.

    Inherited ``AWS_*`` and ``PIPELINE_*`` variables are dropped, so nothing on the machine leaks in.
    """
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "PIPELINE_"))}
    return {
        **inherited, **AWS_TEST_ENV,
        "AWS_ENDPOINT_URL_S3": resources.moto_endpoint, "AWS_ENDPOINT_URL_SQS": resources.moto_endpoint,
        "AWS_ENDPOINT_URL_REKOGNITION": rekognition_url,
        "PIPELINE_BROKER_URL": broker_url,
        "PIPELINE_DATABASE_URL": resources.settings.database_url,
        "PIPELINE_BUCKET": resources.settings.bucket,
        "PIPELINE_EVENTS_QUEUE": resources.queues.events_url,
        "PIPELINE_DEAD_LETTER_QUEUE": resources.queues.dead_letter_url,
        "PIPELINE_REVIEW_QUEUE": resources.queues.review_url,
        "PIPELINE_DETECTORS": "rekognition",
        "PYTHONUNBUFFERED": "1",
        "PIPELINE_METRICS_PORT": "0",  # off unless a test asks: the default 9808 is one per machine
        **extra,
    }
