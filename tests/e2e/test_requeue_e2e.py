"""End to end: images fail, the cause is fixed, `pipeline requeue` brings each to its right decision.

The real stack, as in test_pipeline_e2e.py: moto S3 -> SQS notifications, `pipeline bridge` and
`pipeline worker` processes on the test's Redis, the Rekognition stand-in. The worker runs with
PIPELINE_MAX_RETRIES=0, so an injected Rekognition error fails an image at once; `pipeline
requeue` runs as a subprocess, exactly as an operator would run it.

The bucket notifies only ``content/images/``, while the pipeline watches all of ``content/``: an
upload under ``content/redriven/`` raises no event, so the test can place that event in the
dead-letter queue itself, as if the bridge had failed to hand it off five times.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from typing import Any

import pytest

from pipeline.local.processes import Child, python_module
from pipeline.report.store import ImageRow, ReportStore
from tests.e2e.stack import child_env, provision_resources
from tests.e2e.test_pipeline_e2e import EXPLICIT, WEAPONS, picture
from tests.integration.test_bridge import notification, s3_record
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

NOTIFIED = "content/images/"
WATCHED = "content/"
DECISION_TIMEOUT_SECONDS = 90
COMMAND_TIMEOUT_SECONDS = 60

#: key -> (image, owner tags, decision once the cause is fixed)
IMAGES = {
    NOTIFIED + "explicit.png": (picture(11, "PNG"), "", "blocked"),
    NOTIFIED + "user 7/weapon é.jpg": (picture(12, "JPEG"), "owner=alice&team=blue", "blocked"),
    NOTIFIED + "clean.jpg": (picture(13, "JPEG"), "", "clean"),
}
DENIED_KEY = NOTIFIED + "denied.jpg"
REDRIVEN_KEY = WATCHED + "redriven/explicit-copy.png"


def rules() -> list[dict[str, Any]]:
    explicit, weapon = IMAGES[NOTIFIED + "explicit.png"][0], IMAGES[NOTIFIED + "user 7/weapon é.jpg"][0]
    return [{"sha256": hashlib.sha256(explicit).hexdigest(), "labels": EXPLICIT},
            {"sha256": hashlib.sha256(weapon).hexdigest(), "labels": WEAPONS}]


@pytest.fixture(scope="module")
def stack(redis_url: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """Bucket, queues, notification (content/images/ only), the stand-in, a worker and a bridge."""
    tmp = tmp_path_factory.mktemp("requeue-e2e")
    resources = provision_resources(moto_endpoint, tmp, "rq", notify_prefix=NOTIFIED)
    settings, s3, sqs, queues = resources.settings, resources.s3, resources.sqs, resources.queues
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules()).start()
    env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url,
                    PIPELINE_PREFIX=WATCHED, PIPELINE_MAX_RETRIES="0")
    children = [Child("worker", python_module("pipeline", "worker", "--concurrency", "2"), env, tmp / "worker.log").start(),
                Child("bridge", python_module("pipeline", "bridge"), env, tmp / "bridge.log").start()]
    store = ReportStore.from_url(settings.database_url)
    try:
        yield {"bucket": settings.bucket, "s3": s3, "sqs": sqs, "queues": queues, "env": env, "store": store,
               "standin": standin}
    finally:
        store.dispose()
        for child in reversed(children):
            child.stop()
        standin.stop()


def upload(stack: dict[str, Any], key: str, body: bytes, owner_tags: str = "") -> dict[str, Any]:
    extra = {"Tagging": owner_tags} if owner_tags else {}
    return stack["s3"].put_object(Bucket=stack["bucket"], Key=key, Body=body, **extra)


def wait_for_outcomes(stack: dict[str, Any], expected: dict[str, tuple[str, str | None]]) -> dict[str, ImageRow]:
    """Wait until every key in ``expected`` has its row with that (outcome, error_code)."""
    deadline = time.monotonic() + DECISION_TIMEOUT_SECONDS
    while True:
        rows = {row.key: row for row in stack["store"].find(bucket=stack["bucket"])}
        now = {key: (rows[key].outcome, rows[key].error_code) if key in rows else None for key in expected}
        if now == expected:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"after {DECISION_TIMEOUT_SECONDS}s: {now}, expected {expected}")
        time.sleep(0.3)


def requeue(stack: dict[str, Any], *args: str) -> list[str]:
    """Run `pipeline requeue ARGS`; its output lines (it must exit 0)."""
    done = subprocess.run([sys.executable, "-m", "pipeline", "requeue", *args], env=stack["env"],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def tags(stack: dict[str, Any], key: str) -> dict[str, str]:
    tag_set = stack["s3"].get_object_tagging(Bucket=stack["bucket"], Key=key)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def test_failed_images_come_back_through_the_chain_to_their_decisions(stack: dict[str, Any]) -> None:
    # Given: Rekognition answers 500 to the first three images (no retries), then AccessDenied to a fourth
    stack["standin"].fail_next(len(IMAGES), "InternalServerError", status=500)
    for key, (body, owner_tags, _) in IMAGES.items():
        upload(stack, key, body, owner_tags)
    wait_for_outcomes(stack, {key: ("failed", "InternalServerError") for key in IMAGES})
    stack["standin"].fail_next(1, "AccessDeniedException")
    upload(stack, DENIED_KEY, picture(14, "JPEG"))
    all_failed = {**{key: ("failed", "InternalServerError") for key in IMAGES}, DENIED_KEY: ("failed", "AccessDeniedException")}
    wait_for_outcomes(stack, all_failed)
    assert all(tags(stack, key) == {} for key in IMAGES if not IMAGES[key][1])

    # When: the service is healthy again, and the operator requeues the 500s only
    assert requeue(stack, "--error-code", "InternalServerError", "--dry-run")[-1] == "would requeue 3 of 3 images"
    assert requeue(stack, "--error-code", "InternalServerError", "--reason", "Rekognition recovered") == [
        "requeued 3 of 3 images"]

    # Then: each reaches its decision; blocked ones carry the tag beside the owner's; the denied one waits
    rows = wait_for_outcomes(stack, {**{key: (decision, None) for key, (_, _, decision) in IMAGES.items()},
                                     DENIED_KEY: ("failed", "AccessDeniedException")})
    assert tags(stack, NOTIFIED + "explicit.png") == {"BlockedContent": "true"}
    assert tags(stack, NOTIFIED + "user 7/weapon é.jpg") == {"owner": "alice", "team": "blue", "BlockedContent": "true"}
    assert tags(stack, NOTIFIED + "clean.jpg") == {}
    assert {rows[key].attempts for key in IMAGES} == {2}  # the failed detection, then the requeued one
    assert [label["Name"] for label in rows[NOTIFIED + "explicit.png"].labels] == ["Explicit Nudity", "Explicit"]

    # When: the role is fixed, the denied one is requeued too
    assert requeue(stack, "--error-code", "AccessDeniedException", "--prefix", NOTIFIED) == ["requeued 1 of 1 images"]

    # Then
    rows = wait_for_outcomes(stack, {DENIED_KEY: ("clean", None)})
    assert rows[DENIED_KEY].attempts == 2  # the denied detection, then the requeued one
    # Nothing failed is left; one detection per image and requeue, none twice
    assert requeue(stack) == ["requeued 0 of 0 images"]
    assert stack["standin"].stats()["calls"] == 2 * (len(IMAGES) + 1)


def test_a_dead_lettered_event_moved_back_is_judged(stack: dict[str, Any]) -> None:
    # Given: an upload whose event ended in the dead-letter queue (it is outside the notified prefix)
    put = upload(stack, REDRIVEN_KEY, IMAGES[NOTIFIED + "explicit.png"][0])
    record = s3_record(key=REDRIVEN_KEY, bucket=stack["bucket"], version_id=None, etag=put["ETag"].strip('"'),
                       sequencer="0066437A29B3B6F01A", event_time="2024-05-14T09:26:01.812Z")
    stack["sqs"].send_message(QueueUrl=stack["queues"].dead_letter_url, MessageBody=notification(record))
    assert requeue(stack, "--from-dlq", "--dry-run") == [
        "would move 1 messages from the dead-letter queue (ApproximateNumberOfMessages)"]

    # When
    moved = requeue(stack, "--from-dlq")

    # Then
    assert moved == ["moved 1 of 1 messages from the dead-letter queue to the events queue"]
    wait_for_outcomes(stack, {REDRIVEN_KEY: ("blocked", None)})
    assert tags(stack, REDRIVEN_KEY) == {"BlockedContent": "true"}
