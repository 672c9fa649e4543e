"""The /metrics endpoint's start-up check: a port in use stops `pipeline worker|bridge` naming the variable."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

START_TIMEOUT_SECONDS = 60


@pytest.mark.parametrize("command", ["bridge", "worker"])
def test_a_metrics_port_in_use_stops_start_up_naming_the_variable(pipeline_env, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "pipeline", command], capture_output=True, text=True,
                              env={**pipeline_env, "PIPELINE_METRICS_PORT": str(port)}, timeout=START_TIMEOUT_SECONDS)
    assert done.returncode == 2, done.stderr
    assert f"PIPELINE_METRICS_PORT={port}: 127.0.0.1:{port} cannot be bound" in done.stderr
    assert "Traceback" not in done.stderr
