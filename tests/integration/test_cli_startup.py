"""Start-up checks: a wrong setting stops a command at once with one line naming the variable."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from pipeline.local.processes import LOOPBACK

START_TIMEOUT_SECONDS = 60


def run_pipeline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT_SECONDS)


@pytest.mark.parametrize(
    ("command", "variable"),
    [("bridge", "PIPELINE_EVENTS_QUEUE"), ("bridge", "PIPELINE_DEAD_LETTER_QUEUE"), ("worker", "PIPELINE_REVIEW_QUEUE")],
)
def test_a_missing_queue_stops_start_up_naming_its_variable(pipeline_env, command, variable):
    # Given: every setting right but one queue name
    env = {**pipeline_env, variable: "no-such-queue", "PIPELINE_DETECTORS": "rekognition"}
    # When
    done = run_pipeline(env, command)
    # Then
    assert done.returncode == 2
    assert f"{variable}=no-such-queue" in done.stderr and "NonExistentQueue" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PIPELINE_HASHLIST_PATH": "/nonexistent/list.json"}, "PIPELINE_HASHLIST_PATH='/nonexistent/list.json'"),
        ({"PIPELINE_BLOCK_CATEGORIES": "Explict"}, "PIPELINE_BLOCK_CATEGORIES: Explict not a top-level category"),
        ({"PIPELINE_MIN_CONFIDENCE": "abc"}, "PIPELINE_MIN_CONFIDENCE='abc' is invalid"),
    ],
)
def test_up_local_refuses_bad_settings_before_starting_anything(pipeline_env, extra, message):
    env = {k: v for k, v in pipeline_env.items() if not k.startswith("PIPELINE_BROKER")} | extra
    done = run_pipeline(env, "up", "--local")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "is up" not in done.stdout


def test_up_local_refuses_a_flower_port_in_use(pipeline_env):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_pipeline({**pipeline_env, "PIPELINE_FLOWER_PORT": str(port)}, "up", "--local")
    assert done.returncode == 2
    assert f"PIPELINE_FLOWER_PORT={port}: {LOOPBACK}:{port} is already in use" in done.stderr
