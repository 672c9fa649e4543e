"""The /metrics and /healthz endpoint of ``pipeline worker`` and ``pipeline bridge``.

One small HTTP server in a daemon thread, on PIPELINE_METRICS_ADDRESS:PIPELINE_METRICS_PORT
(0 turns it off). ``GET /metrics`` is Prometheus text; ``GET /healthz`` is 200 while the
process's loop is alive and 503 otherwise. No authentication: bind it to an address only
Prometheus and the orchestrator reach.

Worker: started in the main process before the pool forks; /metrics adds up every pool
process's files (:mod:`pipeline.monitoring.multiprocess`); /healthz follows Celery's worker
heartbeat. Bridge: a single process, so the default registry plus the scrape-time gauges of
:mod:`pipeline.monitoring.collector`; /healthz follows its poll loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from pipeline.errors import ConfigurationError
from pipeline.monitoring.liveness import WORKER_MAX_AGE_SECONDS, Liveness
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Endpoint:
    """A running /metrics + /healthz server."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(address: str, port: int, registry: CollectorRegistry, healthy: Callable[[], bool]) -> Endpoint:
    """Serve ``registry`` and ``healthy`` on ``address:port``; ConfigurationError naming the variable if it cannot bind."""
    handler = _handler(registry, healthy)
    try:
        server = ThreadingHTTPServer((address, port), handler)
    except OSError as exc:
        raise ConfigurationError(f"PIPELINE_METRICS_PORT={port}: {address}:{port} cannot be bound ({exc.strerror}); "
                                 "set another port, or 0 to turn the metrics endpoint off") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", address, server.server_address[1])
    return Endpoint(server, thread)


def serve_worker(settings: Settings, liveness: Liveness | None = None) -> Endpoint | None:
    """The worker's endpoint: every pool process's metrics; healthy while Celery heartbeats are recent.

    Call after :func:`pipeline.monitoring.multiprocess.prepare` and before the pool forks.
    ``liveness`` (tests: one with their own clock) defaults to one of WORKER_MAX_AGE_SECONDS.
    """
    if settings.metrics_port == 0:
        return None
    from celery import signals
    from prometheus_client import multiprocess

    from pipeline.monitoring.multiprocess import directory, mark_process_dead

    liveness = Liveness(WORKER_MAX_AGE_SECONDS) if liveness is None else liveness
    signals.worker_ready.connect(liveness.beat, weak=False)
    signals.heartbeat_sent.connect(liveness.beat, weak=False)
    signals.worker_process_shutdown.connect(mark_process_dead, weak=False)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory) if directory else None)
    return serve(settings.metrics_address, settings.metrics_port, registry, liveness.alive)


def serve_bridge(settings: Settings, liveness: Liveness, *, app: Any, sqs: Any, store: Any) -> Endpoint | None:
    """The bridge's endpoint: its own metrics and the scrape-time gauges; healthy while it polls."""
    if settings.metrics_port == 0:
        return None
    from pipeline.monitoring.collector import SnapshotCollector
    from pipeline.monitoring.snapshot import shared_limiter

    REGISTRY.register(SnapshotCollector(settings, app=app, sqs=sqs, store=store, limiter=shared_limiter(settings)))
    return serve(settings.metrics_address, settings.metrics_port, REGISTRY, liveness.alive)


def _handler(registry: CollectorRegistry, healthy: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"not alive\n", "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError as exc:  # the scraper gave up (its own timeout) or went away: not our fault
                self.close_connection = True
                log.debug("metrics endpoint: client %s went away before the answer (%s)",
                          self.client_address[0], type(exc).__name__)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's signature)
            log.debug("metrics endpoint: " + format, *args)

    return Handler
