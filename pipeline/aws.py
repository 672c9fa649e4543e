"""boto3 clients, made once per process.

Endpoints come from boto3's own per-service variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_REKOGNITION``) and the region from ``AWS_DEFAULT_REGION``,
so nothing here reads the environment. Clients are cached per process id: a prefork child must
not reuse its parent's connection pool.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config

#: Rekognition: one attempt only, so throttling reaches the pipeline's limiter and retry policy
#: instead of being hidden in botocore's own retries (which would also multiply calls per slot).
#: (botocore's ``max_attempts`` counts retries; ``total_max_attempts`` counts calls, so 1 means no retry.)
REKOGNITION_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
#: S3 and SQS: botocore's standard retry mode (3 attempts, backoff) for transient errors.
DEFAULT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=60)
#: SQS long polls wait up to 20 s: the read timeout must be longer than that.
SQS_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=40)

#: ``pipeline status`` and the bridge's scrape-time gauges: one attempt that gives up within seconds,
#: so an SQS that does not answer makes its part unavailable instead of holding the command or the scrape.
SNAPSHOT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=3, read_timeout=3)

_CONFIGS = {"rekognition": REKOGNITION_CONFIG, "sqs": SQS_CONFIG}


def client(service: str) -> Any:
    """A boto3 client for ``service``, shared by the threads of this process."""
    return _client(service, os.getpid())


def snapshot_client(service: str) -> Any:
    """A boto3 client for ``service`` that gives up quickly (SNAPSHOT_CONFIG), for status readings."""
    return _client(service, os.getpid(), snapshot=True)


@functools.lru_cache(maxsize=None)
def _client(service: str, pid: int, snapshot: bool = False) -> Any:
    session = boto3.session.Session()
    return session.client(service, config=SNAPSHOT_CONFIG if snapshot else _CONFIGS.get(service, DEFAULT_CONFIG))


def queue_url(sqs: Any, name_or_url: str) -> str:
    """Accept a queue name or URL; resolve a name with GetQueueUrl."""
    if name_or_url.startswith(("https://", "http://")):
        return name_or_url
    return sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"]


#: Messages waiting in a queue, and messages received but not yet deleted (in flight).
VISIBLE, IN_FLIGHT = "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"


def queue_depth(sqs: Any, queue_url: str, *, in_flight: bool = False) -> int:
    """SQS's approximate count of waiting messages in ``queue_url``; with ``in_flight``, received ones too."""
    from pipeline.awserrors import translated_aws_errors

    names = [VISIBLE, IN_FLIGHT] if in_flight else [VISIBLE]
    with translated_aws_errors():
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)

