"""The /metrics endpoint when the scraper disconnects before the answer: one debug line, no traceback."""

from __future__ import annotations

import logging
import socket
import struct
import threading

from prometheus_client import CollectorRegistry

from pipeline.monitoring.server import serve

#: Only a guard: the answer follows as soon as the client has gone.
GUARD_SECONDS = 30


class _Signal(logging.Handler):
    """Sets ``seen`` when the endpoint logs that the client went away."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if "went away" in record.getMessage():
            self.seen.set()


def test_a_client_that_goes_away_is_a_debug_line_not_a_traceback(capfd):
    # Given: /healthz answers only once the client has reset its connection
    gone = threading.Event()
    endpoint = serve("127.0.0.1", 0, CollectorRegistry(), lambda: gone.wait(GUARD_SECONDS))
    logger = logging.getLogger("pipeline.monitoring.server")
    signal, level = _Signal(), logger.level
    logger.addHandler(signal)
    logger.setLevel(logging.DEBUG)
    try:
        # When: the scraper sends its request and resets the connection (RST) before the answer
        client = socket.create_connection(("127.0.0.1", endpoint.port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        gone.set()
        logged = signal.seen.wait(GUARD_SECONDS)
    finally:
        logger.removeHandler(signal)
        logger.setLevel(level)
        endpoint.close()
    # Then
    assert logged, [r.getMessage() for r in signal.records]
    assert [r.levelno for r in signal.records if "went away" in r.getMessage()] == [logging.DEBUG]
    assert "Traceback" not in capfd.readouterr().err
