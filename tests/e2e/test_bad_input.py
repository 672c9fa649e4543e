"""Bad input through the real stack: each case gets a clear, recorded outcome, and the services keep running.

Bodies that are not usable events are sent straight to the events queue; bad objects are uploaded
to the watched prefix, so S3's own notifications carry them. The test runs twice: with Rekognition
(the stand-in, which answers as the real service does for each bad image; see
tests/standins/rekognition.py) and with the on-prem detectors (hash list and local model), which
must record the same outcome and error code for every case.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image

from pipeline.local.processes import Child, python_module
from pipeline.report.schema import malformed_messages
from pipeline.report.store import ReportStore
from pipeline.settings import DEMO_HASHLIST, local_model_installed
from tests.conftest import service_missing
from tests.e2e.stack import child_env, provision_resources
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

PREFIX = "content/images/"
SETTLE_TIMEOUT_SECONDS = 120
#: SQS allows up to 1 MiB when a queue is configured for it; the pipeline refuses bodies over 256 KiB.
LARGE_QUEUE_MESSAGE_BYTES = 1024 * 1024


def image_bytes(width: int, height: int, fmt: str = "JPEG", *, noise: bool = False) -> bytes:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (120, 40, 200))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def objects() -> dict[str, tuple[bytes, str, str]]:
    """key -> (body, expected outcome, expected error code)."""
    good = image_bytes(200, 150)
    return {
        "zero-bytes.jpg": (b"", "failed", "InvalidImageFormatException"),
        "not-an-image.jpg": (b"%PDF-1.7 this is a document\n" * 40, "failed", "InvalidImageFormatException"),
        "truncated.jpg": (good[: len(good) // 2], "failed", "InvalidImageFormatException"),
        "really-a-gif.jpg": (image_bytes(200, 150, "GIF"), "failed", "InvalidImageFormatException"),
        "really-a-bmp.png": (image_bytes(200, 150, "BMP"), "failed", "InvalidImageFormatException"),
        "tiny-79px.png": (image_bytes(79, 79, "PNG"), "failed", "InvalidParameterException"),
        "wide-10001px.png": (image_bytes(10_001, 90, "PNG"), "failed", "InvalidParameterException"),
        # Random pixels do not compress: about 18.8 MB of PNG, over Rekognition's 15 MB for S3 images.
        "huge-16mb.png": (image_bytes(2_500, 2_500, "PNG", noise=True), "failed", "ImageTooLargeException"),
        "fine.jpg": (good, "clean", ""),
    }


def bodies() -> dict[str, str]:
    """name -> raw events-queue body."""
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": "2026-12-03T10:00:00.000Z",
              "eventName": "ObjectTeleported:Put",
              "s3": {"bucket": {"name": "placeholder"}, "object": {"key": PREFIX + "x.jpg", "size": 1, "eTag": "e"}}}
    return {
        "not JSON": "{this is not: JSON",
        "wrong shape": json.dumps({"Records": [{"hello": "world"}]}),
        "over 256 KiB": json.dumps({"Records": [], "padding": "x" * (300 * 1024)}),
        "unknown event name": json.dumps({"Records": [record]}),
    }


#: Rekognition (the stand-in) and the on-prem detectors must record the same outcome and code for each case.
DETECTORS = {
    "rekognition": {"PIPELINE_DETECTORS": "rekognition"},
    "hashlist,local": {"PIPELINE_DETECTORS": "hashlist,local", "PIPELINE_HASHLIST_PATH": DEMO_HASHLIST},
}


@pytest.fixture(params=list(DETECTORS))
def stack(request: pytest.FixtureRequest, redis_url: str, moto_endpoint: str, tmp_path: Path,
          redis_client: Any) -> Iterator[dict[str, Any]]:
    if request.param == "hashlist,local" and not local_model_installed():
        service_missing("the local model (the `model` extra) is not installed")
    resources = provision_resources(moto_endpoint, tmp_path, "bad")
    settings, s3, sqs, queues = resources.settings, resources.s3, resources.sqs, resources.queues
    for url in (queues.events_url, queues.dead_letter_url):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(LARGE_QUEUE_MESSAGE_BYTES)})
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint).start()
    env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url,
                    PIPELINE_STATE_DIR=str(tmp_path / "state"), **DETECTORS[request.param])
    children = [Child("worker", python_module("pipeline", "worker", "--concurrency", "2"), env, tmp_path / "worker.log").start(),
                Child("bridge", python_module("pipeline", "bridge"), env, tmp_path / "bridge.log").start()]
    try:
        yield {"settings": settings, "s3": s3, "sqs": sqs, "queues": queues, "children": children,
               "store": ReportStore.from_url(settings.database_url), "standin": standin}
    finally:
        for child in reversed(children):
            child.stop()
        standin.stop()


def wait_for(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {SETTLE_TIMEOUT_SECONDS}s waiting for {what}")


def decided_rows(store: ReportStore, bucket: str, count: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        rows = {row.key.removeprefix(PREFIX): row for row in store.find(bucket=bucket)}
        return rows if len(rows) >= count and all(r.outcome != "pending" for r in rows.values()) else None

    return wait_for(ready, f"{count} decisions")


def test_every_bad_input_gets_a_clear_recorded_outcome_and_the_services_keep_running(stack: dict[str, Any]) -> None:
    s3, sqs, store, bucket = stack["s3"], stack["sqs"], stack["store"], stack["settings"].bucket
    raw = bodies()

    # When: the bad bodies go straight to the events queue, and the bad objects are uploaded
    for body in raw.values():
        sqs.send_message(QueueUrl=stack["queues"].events_url, MessageBody=body)
    cases = objects()
    for name, (body, _, _) in cases.items():
        s3.put_object(Bucket=bucket, Key=PREFIX + name, Body=body)
    # ... and an event arrives for an object deleted before it was processed (the event is real; the object is gone)
    s3.put_object(Bucket=bucket, Key=PREFIX + "deleted-first.jpg", Body=image_bytes(200, 150))
    s3.delete_object(Bucket=bucket, Key=PREFIX + "deleted-first.jpg")

    # Then: each object has the outcome and error code Rekognition's answer calls for
    rows = decided_rows(store, bucket, len(cases) + 1)
    got = {name: (row.outcome, row.error_code or "") for name, row in rows.items()}
    expected = {name: (outcome, code) for name, (_, outcome, code) in cases.items()}
    assert {name: got[name] for name in expected} == expected
    # The deleted object: its delete event may land before or after its judging; either way it ends deleted
    assert got["deleted-first.jpg"][0] == "deleted"
    assert all(row.error_message for name, row in rows.items() if row.outcome == "failed")

    # ... each bad body is recorded (size and digest, never the body) and moved to the dead-letter queue
    def recorded() -> list[Any] | None:
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(malformed_messages)).all()
        return found if len(found) >= len(raw) else None

    records = wait_for(recorded, "the malformed bodies to be recorded")
    digests = {hashlib.sha256(body.encode()).hexdigest(): name for name, body in raw.items()}
    assert {digests[r.body_sha256] for r in records} == set(raw)
    assert {r.error_code for r in records} == {"MalformedEvent"}
    reasons = {digests[r.body_sha256]: r.reason for r in records}
    assert "over the 262144-byte limit" in reasons["over 256 KiB"]
    assert "unknown event name" in reasons["unknown event name"]
    dead = []
    for _ in range(10):
        dead += sqs.receive_message(QueueUrl=stack["queues"].dead_letter_url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=1).get("Messages", [])
        if len(dead) >= len(raw):
            break
    assert sorted(m["Body"] for m in dead) == sorted(raw.values())

    # ... and the bridge and worker are still running and still judge the next good image
    assert all(child.alive() for child in stack["children"])
    s3.put_object(Bucket=bucket, Key=PREFIX + "after.jpg", Body=image_bytes(180, 120))
    after = decided_rows(store, bucket, len(cases) + 2)["after.jpg"]
    assert after.outcome == "clean"
