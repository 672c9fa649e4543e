"""The acceptance run for monitoring: a known set of images through moto, the Rekognition stand-in,
`pipeline worker` (prefork, 2 processes) and `pipeline bridge`; then both /metrics endpoints are
scraped and every count checked, the JSON decision lines parsed, and `pipeline status` read.

6 clean images, 4 blocked (2 Explicit with two labels each, 2 Violence with one), 1 that is not an
image (failed), and one injected throttle (retried): 12 Rekognition calls for 11 images.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.local.processes import Child, free_port, python_module, wait_for_port
from pipeline.report.store import ReportStore
from tests.e2e.stack import child_env, provision_resources
from tests.e2e.test_pipeline_e2e import EXPLICIT, PREFIX, WEAPONS, picture, wait_for_rows
from tests.integration.test_flower_auth import get
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

CLEAN, EXPLICIT_IMAGES, VIOLENT_IMAGES = 6, 2, 2
IMAGES = CLEAN + EXPLICIT_IMAGES + VIOLENT_IMAGES + 1
#: Shared state that only the bridge's /metrics exports (pipeline.monitoring.collector).
BRIDGE_ONLY_GAUGES = {"pipeline_queue_depth", "pipeline_pending_rows", "pipeline_oldest_pending_age_seconds"}
#: Each call takes this long in the stand-in, so both pool processes get work.
STANDIN_LATENCY_SECONDS = 0.3


def images() -> dict[str, bytes]:
    """Key -> body: clean-N.jpg, explicit-N.png, violent-N.jpg and one text file named like a JPEG."""
    bodies = {f"{PREFIX}clean-{n}.jpg": picture(10 + n, "JPEG") for n in range(CLEAN)}
    bodies |= {f"{PREFIX}explicit-{n}.png": picture(30 + n, "PNG") for n in range(EXPLICIT_IMAGES)}
    bodies |= {f"{PREFIX}violent-{n}.jpg": picture(50 + n, "JPEG") for n in range(VIOLENT_IMAGES)}
    bodies[f"{PREFIX}not-an-image.jpg"] = b"plain text, not a picture\n" * 10
    return bodies


def rules(bodies: dict[str, bytes]) -> list[dict[str, Any]]:
    def digest(key: str) -> str:
        return hashlib.sha256(bodies[key]).hexdigest()

    return ([{"sha256": digest(key), "labels": EXPLICIT} for key in bodies if "explicit" in key]
            + [{"sha256": digest(key), "labels": WEAPONS} for key in bodies if "violent" in key])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of every sample at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def health(url: str) -> int:
    return get(url)[0]


def wait_for_health(url: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (status := health(url)) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


@pytest.fixture(scope="module")
def run(redis_url: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """The stack with metrics on, the images uploaded and decided; yields what the tests check."""
    tmp = tmp_path_factory.mktemp("metrics")
    resources = provision_resources(moto_endpoint, tmp, "metrics", broker_url=redis_url)
    bodies = images()
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules(bodies),
                                 latency_s=STANDIN_LATENCY_SECONDS).start()
    standin.fail_next(1, "ThrottlingException")
    env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url, PIPELINE_LOG_FORMAT="json")
    ports = {"worker": free_port(), "bridge": free_port()}
    children = [
        Child("worker", python_module("pipeline", "worker", "--concurrency", "2", "--pool", "prefork"),
              {**env, "PIPELINE_METRICS_PORT": str(ports["worker"])}, tmp / "worker.log").start(),
        Child("bridge", python_module("pipeline", "bridge"), {**env, "PIPELINE_METRICS_PORT": str(ports["bridge"])},
              tmp / "bridge.log").start(),
    ]
    try:
        for child in children:
            wait_for_port(ports[child.name], proc=child.proc, timeout=60)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        assert wait_for_health(urls["worker"] + "/healthz") == 200, (tmp / "worker.log").read_text()[-3000:]
        for key, body in bodies.items():
            resources.s3.put_object(Bucket=resources.settings.bucket, Key=key, Body=body)
        rows = wait_for_rows(ReportStore.from_url(resources.settings.database_url), resources.settings.bucket, IMAGES)
        yield {"urls": urls, "rows": rows, "standin": standin, "env": env, "tmp": tmp, "bodies": bodies}
    finally:
        for child in reversed(children):
            child.stop()
        standin.stop()


def test_worker_metrics_add_up_every_pool_process(run):
    # Given: every image decided as planned
    assert sorted(row.outcome for row in run["rows"].values()) == sorted(
        ["clean"] * CLEAN + ["blocked"] * (EXPLICIT_IMAGES + VIOLENT_IMAGES) + ["failed"])
    # When
    metrics = scrape(run["urls"]["worker"] + "/metrics")
    # Then: the decisions, labels and Rekognition calls of both pool processes, exactly
    assert {labels[0][1]: value for (name, labels), value in metrics.items()
            if name == "pipeline_images_decided_total"} == {"clean": 6.0, "blocked": 4.0, "failed": 1.0}
    # EXPLICIT has two labels at or above MinConfidence 80 (both under Explicit); WEAPONS one (Violence)
    assert {labels[0][1]: value for (name, labels), value in metrics.items()
            if name == "pipeline_labels_total"} == {"Explicit": 4.0, "Violence": 2.0}
    calls = run["standin"].stats()["calls"]
    assert calls == IMAGES + 1  # one call was throttled and retried
    assert metrics[("pipeline_rekognition_calls_total", ())] == calls
    assert metrics[("pipeline_rekognition_throttles_total", ())] == 1.0
    assert metrics[("pipeline_ratelimit_wait_seconds_count", ())] == calls  # every call took a slot first
    # ... and none of the bridge's scrape-time gauges: each worker replica would export the same shared
    # state again, and a sum across targets would multiply it
    assert not {name for name, _ in metrics} & BRIDGE_ONLY_GAUGES


def test_bridge_metrics_count_every_event_and_read_the_queues(run):
    metrics = scrape(run["urls"]["bridge"] + "/metrics")
    assert metrics[("pipeline_bridge_lag_seconds_count", ())] == IMAGES
    assert metrics[("pipeline_bridge_lag_seconds_bucket", (("le", "+Inf"),))] == IMAGES
    assert metrics[("pipeline_pending_rows", ())] == 0
    assert BRIDGE_ONLY_GAUGES <= {name for name, _ in metrics}  # the worker's check above looks for real names
    depths = {labels[0][1]: value for (name, labels), value in metrics.items() if name == "pipeline_queue_depth"}
    assert depths == {"detect": 0, "default": 0, "events": 0, "dead_letter": 0, "review": 4}
    assert {labels[0][1]: value for (name, labels), value in metrics.items() if name == "pipeline_status_up"} == {
        "broker_queues": 1.0, "sqs_queues": 1.0, "pending": 1.0, "limiter": 1.0}
    assert health(run["urls"]["bridge"] + "/healthz") == 200
    assert health(run["urls"]["worker"] + "/healthz") == 200


def test_json_logs_have_one_decision_line_per_image_with_its_identity(run):
    # Every line the worker wrote is one JSON object (Celery's banner is left out too)
    lines = [json.loads(line) for line in (Path(run["tmp"]) / "worker.log").read_text().splitlines() if line]
    decisions = [line for line in lines if line["message"].startswith("decision ")]
    assert sorted(d["key"] for d in decisions) == sorted(run["bodies"])
    rows = run["rows"]
    for line in decisions:
        row = rows[line["key"]]
        assert (line["bucket"], line["version_id"], line["outcome"], line["work_id"]) == (
            row.bucket, row.version_id, row.outcome, row.work_id)
    # ... written by both pool processes: the counts above really were added up across them
    assert {line["process"] for line in decisions} == {"ForkPoolWorker-1", "ForkPoolWorker-2"}
    # Celery's own lines go through the same JSON handler
    assert any(line["logger"].startswith("celery") for line in lines)
    bridge = [json.loads(line) for line in (Path(run["tmp"]) / "bridge.log").read_text().splitlines() if line]
    assert sum(line["message"].startswith("ObjectCreated:Put ") for line in bridge) == IMAGES


def test_status_sees_the_worker_online(run):
    done = subprocess.run([sys.executable, "-m", "pipeline", "status", "--format", "json"], env=run["env"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["workers"]["online"] == 1
    assert status["pending"]["rows"] == 0 and status["sqs_queues"]["queues"]["review"]["depth"] == 4
