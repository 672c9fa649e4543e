"""`pipeline flower` on the test's own Redis broker, beside a real worker: basic auth on by default."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipeline.local.processes import Child, python_module, wait_for_port

#: How long the worker may take to show up in Flower's inspect reply.
WORKER_TIMEOUT_SECONDS = 60
CREDENTIALS = "ops:correct-horse-battery"


def get(url: str, credentials: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET, with HTTP basic auth when ``credentials`` is given."""
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def flower_and_worker(pipeline_env: dict[str, str], tmp_path: Path):
    """A worker named for this test and Flower with CREDENTIALS, both on the test's Redis."""
    env = {**pipeline_env, "PIPELINE_FLOWER_BASIC_AUTH": CREDENTIALS}
    name = f"flower-test-{uuid.uuid4().hex[:8]}@%h"
    worker = Child("worker", python_module("pipeline", "worker", "--concurrency", "1", "-n", name), env,
                   tmp_path / "worker.log").start()
    flower = Child("flower", python_module("pipeline", "flower"), env, tmp_path / "flower.log").start()
    port = int(env["PIPELINE_FLOWER_PORT"])
    try:
        wait_for_port(port, proc=flower.proc, timeout=60)
        yield f"http://127.0.0.1:{port}", name.split("@")[0], tmp_path / "flower.log"
    finally:
        flower.stop()
        worker.stop()


def wait_for_worker(base: str, prefix: str) -> dict:
    deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
    while True:
        status, body = get(f"{base}/api/workers?refresh=1", CREDENTIALS)
        workers = json.loads(body) if status == 200 else {}
        found = {name: info for name, info in workers.items() if name.startswith(prefix) and info.get("registered")}
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"worker {prefix} not in /api/workers after {WORKER_TIMEOUT_SECONDS}s: {status} {body[:300]!r}")
        time.sleep(1)


def test_flower_answers_with_credentials_and_refuses_without(flower_and_worker):
    base, prefix, log = flower_and_worker
    # With the credentials: the worker, and the pipeline's tasks registered on it
    [(name, info)] = wait_for_worker(base, prefix).items()
    assert {"pipeline.detect", "pipeline.tag", "pipeline.report"} <= set(info["registered"])
    # Without credentials, or with a wrong password: refused
    assert get(f"{base}/api/workers")[0] == 401
    assert get(f"{base}/api/workers", "ops:wrong-password")[0] == 401
    assert get(f"{base}/", "nobody:" + CREDENTIALS.split(":")[1])[0] == 401
    # Flower's own /metrics and /healthcheck have no authentication by design (README says so)
    assert get(f"{base}/healthcheck") == (200, b"OK")
    assert get(f"{base}/metrics")[0] == 200
    assert CREDENTIALS.split(":")[1] not in log.read_text()


def test_flower_refuses_to_start_without_credentials_or_the_opt_out(pipeline_env):
    env = {k: v for k, v in pipeline_env.items() if not k.startswith("PIPELINE_FLOWER_BASIC")}
    done = subprocess.run([sys.executable, "-m", "pipeline", "flower"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "PIPELINE_FLOWER_BASIC_AUTH" in done.stderr and "PIPELINE_FLOWER_UNAUTHENTICATED=true" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_explicit_opt_out_opens_ui_and_api(pipeline_env, tmp_path):
    env = {**pipeline_env, "PIPELINE_FLOWER_UNAUTHENTICATED": "true"}
    env.pop("PIPELINE_FLOWER_BASIC_AUTH", None)
    flower = Child("flower", python_module("pipeline", "flower"), env, tmp_path / "flower.log").start()
    try:
        wait_for_port(int(env["PIPELINE_FLOWER_PORT"]), proc=flower.proc, timeout=60)
        status, body = get(f"http://127.0.0.1:{env['PIPELINE_FLOWER_PORT']}/api/workers")
    finally:
        flower.stop()
    assert (status, json.loads(body)) == (200, {})  # no worker on this broker
