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
from kombu.exceptions import OperationalError

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
            channel = self._channel()
            return sum(_queue_size(channel, queue) for queue in self._queues)
        except (OperationalError, OSError, ConnectionError) as exc:
            log.warning("cannot read the broker backlog: %s", exc)
            self.close()
            return None

    def close(self) -> None:
        """Drop the connection (it is opened again on the next read)."""
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # already broken; nothing more to release
                pass
            self._connection = None

    def _channel(self) -> Any:
        if self._connection is None:
            self._connection = self._app.connection_for_read()
            self._connection.ensure_connection(max_retries=1)
        return self._connection.default_channel


def room_under(app: Celery, queues: tuple[str, ...], high_water: int) -> int | None:
    """How many more tasks fit under ``high_water``; None when the broker cannot be asked."""
    backlog = Backlog(app, queues)
    try:
        depth = backlog.depth()
    finally:
        backlog.close()
    return None if depth is None else high_water - depth


def _queue_size(channel: Any, queue: str) -> int:
    """A passive declare answers the message count; a queue nobody declared yet holds none."""
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:  # kombu raises ChannelError (Redis) or NotFound (AMQP) for a missing queue
        if "NOT_FOUND" in str(exc) or type(exc).__name__ in ("ChannelError", "NotFound"):
            return 0
        raise
