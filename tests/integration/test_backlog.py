"""Reading the broker's queue depth (backpressure) on Redis (the test's own) and on the machine's RabbitMQ."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.app import create_app
from pipeline.backlog import Backlog, room_under
from pipeline.local.processes import free_port
from pipeline.settings import Settings
from tests.conftest import service_missing

#: The machine's RabbitMQ (guest/guest on loopback), started before the session and for CI.
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_app(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Any]:
    if request.param == "rabbitmq" and not reachable("127.0.0.1", 5672):
        service_missing("RabbitMQ is not running on 127.0.0.1:5672")
    app = create_app(Settings(broker_url=redis_url if request.param == "redis" else RABBITMQ_URL))
    try:
        yield app
    finally:
        app.close()


def publish(app: Any, queue: str, count: int) -> None:
    for _ in range(count):
        app.send_task("pipeline.detect", args=({},), queue=queue)


#: Longest wait for the broker's count to catch up with what was published, seconds.
SETTLE_SECONDS = 10.0


def settled_depth(backlog: Backlog, expected: int) -> int | None:
    """The depth once it reaches ``expected``, or the last depth read when SETTLE_SECONDS pass first."""
    deadline = time.monotonic() + SETTLE_SECONDS
    depth = backlog.depth()
    while depth != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        depth = backlog.depth()
    return depth


def test_depth_counts_waiting_tasks_and_a_missing_queue_as_zero(broker_app: Any) -> None:
    queue, missing = f"bp-{uuid.uuid4().hex[:8]}", f"missing-{uuid.uuid4().hex[:8]}"
    backlog = Backlog(broker_app, (queue, missing))
    try:
        assert backlog.depth() == 0
        publish(broker_app, queue, 4)
        # RabbitMQ counts published messages asynchronously: a read right after publishing may see fewer.
        assert settled_depth(backlog, 4) == 4
        # Asked twice: on AMQP the missing queue's NOT_FOUND closes a channel; the next read must still work
        assert [backlog.depth(), backlog.depth()] == [4, 4]
        assert room_under(broker_app, (queue,), 10) == 6
        assert room_under(broker_app, (queue,), 3) == -1
    finally:
        backlog.close()
        with broker_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


def test_depth_is_none_when_the_broker_is_down() -> None:
    app = create_app(Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    backlog = Backlog(app, ("detect",))
    try:
        assert backlog.depth() is None
        assert room_under(app, ("detect",), 10) is None
    finally:
        backlog.close()
        app.close()
