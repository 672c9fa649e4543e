"""The worker's /healthz follows Celery's heartbeat: served in-process by serve_worker, with a clock
of the test's own (no waiting for the 30 s max age)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import signals

from pipeline.local.processes import free_port
from pipeline.monitoring import multiprocess
from pipeline.monitoring.liveness import WORKER_MAX_AGE_SECONDS, Liveness
from pipeline.monitoring.server import serve_worker
from pipeline.settings import Settings
from tests.integration.test_flower_auth import get


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def worker_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Clock]]:
    """serve_worker on a free port with the test's clock; its signal receivers are removed after."""
    monkeypatch.setattr(multiprocess, "directory", tmp_path)  # the metrics files: this test's own
    clock = Clock()
    liveness = Liveness(WORKER_MAX_AGE_SECONDS, clock=clock)
    endpoint = serve_worker(Settings(metrics_address="127.0.0.1", metrics_port=free_port()), liveness)
    assert endpoint is not None
    try:
        yield f"http://127.0.0.1:{endpoint.port}/healthz", clock
    finally:
        endpoint.close()
        for signal in (signals.worker_ready, signals.heartbeat_sent):
            signal.disconnect(liveness.beat)


def test_healthz_follows_the_celery_heartbeat(worker_endpoint):
    url, clock = worker_endpoint
    # Before the first heartbeat: not alive
    assert get(url)[0] == 503
    # A heartbeat: alive
    signals.heartbeat_sent.send(sender="test-worker")
    assert get(url) == (200, b"ok\n")
    # Still alive at the max age, dead just after it
    clock.now += WORKER_MAX_AGE_SECONDS
    assert get(url)[0] == 200
    clock.now += 0.5
    assert get(url) == (503, b"not alive\n")
    # The next heartbeat brings it back
    signals.heartbeat_sent.send(sender="test-worker")
    assert get(url)[0] == 200


def test_worker_ready_counts_as_the_first_beat(worker_endpoint):
    url, _clock = worker_endpoint
    signals.worker_ready.send(sender="test-worker")
    assert get(url)[0] == 200
