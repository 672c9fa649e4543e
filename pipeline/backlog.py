"""How much work waits in the broker: the bridge pauses and the sweeper holds back above a high-water mark.

SQS is the durable buffer; the broker (Redis) should hold only a bounded working set. The bridge
reads the detect queue's depth before each receive and waits while it is at or above
PIPELINE_BACKLOG_HIGH_WATER; the sweeper enqueues no more than the room left under it. The depth
comes from kombu's passive queue declare, so it works on Redis and RabbitMQ alike.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)


class Backlog:
    """The number of messages waiting in some Celery queues, read through one kept connection."""

    def __init__(self, app: Celery, queues: tuple[str, ...]) -> None:
        self._app = app
        self._queues = queues
        self._connection: Any = None

    def depth(self) -> int | None:
        """Messages waiting in the queues now; None when the broker cannot be asked."""
        try:
            connection = self._connect()
            return sum(_queue_size(connection, queue) for queue in self._queues)
        except Exception as exc:  # broker down or a broken connection: answer "unknown", never crash the caller
            log.warning("cannot read the broker backlog: %s", exc)
            self.close()
            return None

    def close(self) -> None:
        """Drop the connection (it is opened again on the next read)."""
        if self._connection is not None:
            _close_quietly(self._connection)
            self._connection = None

    def _connect(self) -> Any:
        if self._connection is None:
            self._connection = self._app.connection_for_read()
            self._connection.ensure_connection(max_retries=1)
        return self._connection


def read_depths(app: Celery, queues: tuple[str, ...], *, timeout: float | None = None) -> dict[str, int]:
    """Messages waiting in each of ``queues`` now; the broker's own error when it cannot be asked.

    With ``timeout``, a broker that accepts the connection but does not answer (stopped, overloaded)
    raises a timeout after about that many seconds instead of blocking forever.
    """
    connection = app.connection_for_read()
    if timeout is not None:
        bound_waits(connection, timeout)
    try:
        connection.ensure_connection(max_retries=1)
        return {queue: _queue_size(connection, queue) for queue in queues}
    finally:
        _close_quietly(connection)


def bound_waits(connection: Any, timeout: float) -> None:
    """Bound every socket wait of a kombu connection not yet opened (Redis or AMQP) to ``timeout`` seconds."""
    connection.connect_timeout = timeout
    if connection.transport.driver_type == "redis":
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    else:  # py-amqp
        options = {"read_timeout": timeout, "write_timeout": timeout}
    connection.transport_options = {**connection.transport_options, **options}


def room_under(app: Celery, queues: tuple[str, ...], high_water: int) -> int | None:
    """How many more tasks fit under ``high_water``; None when the broker cannot be asked."""
    backlog = Backlog(app, queues)
    try:
        depth = backlog.depth()
    finally:
        backlog.close()
    return None if depth is None else high_water - depth


def _queue_size(connection: Any, queue: str) -> int:
    """A passive declare answers the message count; a queue nobody declared yet holds none.

    One channel per question: on AMQP a passive declare of a missing queue closes its channel.
    """
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:  # kombu: ChannelError (Redis) or NotFound (AMQP) for a missing queue
        if "NOT_FOUND" in str(exc) or type(exc).__name__ in ("ChannelError", "NotFound"):
            return 0
        raise
    finally:
        _close_quietly(channel)


def _close_quietly(resource: Any) -> None:
    try:
        resource.close() if hasattr(resource, "close") else resource.release()
    except Exception:  # already broken; nothing more to release
        pass
