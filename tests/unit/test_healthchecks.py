"""The health-check one-liners of docker-compose.yml, the Dockerfile and the beat probe, run for real.

Each runs in a python subprocess, as Docker runs it, against a small HTTP server or a schedule file
of the test's own; exit 0 is healthy.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dockerfile
import pytest

from tests.deployment import DOCKERFILE, load_compose


class Health(http.server.BaseHTTPRequestHandler):
    """Answers /healthz and /healthcheck with the status the test sets."""

    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.status if self.path in ("/healthz", "/healthcheck") else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK" if code == 200 else b"no")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[Health]]]:
    handler = type("TestHealth", (Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def run(test: list[str], env: dict[str, str] | None = None) -> int:
    """Run a healthcheck's CMD (``["CMD", prog, args...]`` or a plain argv) with this Python."""
    argv = test[1:] if test[0] == "CMD" else test
    assert argv[0] == "python"
    return subprocess.run([sys.executable, *argv[1:]], env={**os.environ, **(env or {})},
                          capture_output=True, timeout=30).returncode


def on_port(test: list[str], old: int, new: int) -> list[str]:
    return [part.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/") for part in test]


@pytest.mark.parametrize("service, port", [("worker", 9808), ("bridge", 9808), ("flower", 5555)])
def test_compose_http_checks_pass_on_200_and_fail_on_503_or_nothing_listening(health_server, service, port):
    test_port, handler = health_server
    test = on_port(load_compose()["services"][service]["healthcheck"]["test"], port, test_port)
    assert run(test) == 0
    handler.status = 503
    assert run(test) != 0
    assert run(on_port(test, test_port, 1)) != 0  # port 1: nothing listens


def test_image_healthcheck_follows_pipeline_metrics_port(health_server):
    test_port, handler = health_server
    (healthcheck,) = [c for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd == "HEALTHCHECK"]
    argv = list(healthcheck.value[healthcheck.value.index("CMD") + 1:])
    assert run(argv, {"PIPELINE_METRICS_PORT": str(test_port)}) == 0
    handler.status = 503
    assert run(argv, {"PIPELINE_METRICS_PORT": str(test_port)}) != 0


def test_beat_check_wants_a_recently_written_schedule_file(tmp_path: Path):
    test = load_compose()["services"]["beat"]["healthcheck"]["test"]
    here = [part.replace("/var/lib/pipeline/", f"{tmp_path}/") for part in test]
    assert run(here) != 0  # beat has not written its schedule yet
    schedule = tmp_path / "celerybeat-schedule.db"
    schedule.write_bytes(b"")
    assert run(here) == 0
    stale = time.time() - 601
    os.utime(schedule, (stale, stale))
    assert run(here) != 0
