""""Did the loop run recently?": what /healthz answers for a worker or a bridge."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: A worker sends a Celery heartbeat every 2 s while its consumer loop runs; 15 missed ones mean it is stuck.
WORKER_MAX_AGE_SECONDS = 30.0
#: The bridge goes round its loop at least once per SQS long poll (20 s) plus the batch it handles.
BRIDGE_MAX_AGE_SECONDS = 90.0


class Liveness:
    """The time of the last beat; alive while it is at most ``max_age`` seconds old (never before the first)."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def beat(self, *_args: object, **_kwargs: object) -> None:
        """Note that the loop ran now (takes and ignores any arguments, so it can be a signal receiver)."""
        with self._lock:
            self._last = self._clock()

    def alive(self) -> bool:
        """True when the last beat is recent enough."""
        with self._lock:
            return self._last is not None and self._clock() - self._last <= self.max_age
