"""End to end: objects uploaded before the pipeline existed are judged by `pipeline setup` + `pipeline backfill`.

The bucket is filled first, with no notification, no queues and no bridge, as for a bucket that
predates the pipeline. Then the operator's commands run as subprocesses: `pipeline setup`, a
worker and a bridge, `pipeline backfill --limit 2` (stopped early), `pipeline backfill` (resumes),
and a last `pipeline backfill` that must find nothing left to send.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import provision
from pipeline.local.processes import Child, python_module
from pipeline.report import migrate
from pipeline.report.store import ReportStore
from pipeline.settings import Settings
from tests.conftest import aws_client, delete_bucket
from tests.e2e.stack import Resources, child_env
from tests.e2e.test_pipeline_e2e import EXPLICIT, PREFIX, WEAPONS, picture
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

DECISION_TIMEOUT_SECONDS = 90
COMMAND_TIMEOUT_SECONDS = 60

#: key -> (image, decision)
IMAGES = {
    PREFIX + "explicit.png": (picture(21, "PNG"), "blocked"),
    PREFIX + "user 9/weapon é.JPG": (picture(22, "JPEG"), "blocked"),
    PREFIX + "clean-1.jpg": (picture(23, "JPEG"), "clean"),
    PREFIX + "clean-2.jpeg": (picture(24, "JPEG"), "clean"),
    PREFIX + "clean-3.png": (picture(25, "PNG"), "clean"),
}
#: Listed too, but never sent: outside the suffixes.
NOT_IMAGES = {PREFIX + "readme.txt": b"notes"}


def run(env: dict[str, str], *args: str) -> list[str]:
    """`pipeline ARGS` as an operator runs it; its output lines (it must exit 0)."""
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def wait_for_decisions(store: ReportStore, bucket: str, expected: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + DECISION_TIMEOUT_SECONDS
    while True:
        rows = {row.key: row for row in store.find(bucket=bucket)}
        now = {key: rows[key].outcome if key in rows else None for key in expected}
        if now == expected:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"after {DECISION_TIMEOUT_SECONDS}s: {now}, expected {expected}")
        time.sleep(0.3)


def tags(s3: Any, bucket: str, key: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def test_objects_that_predate_the_pipeline_are_backfilled_once(
    redis_url: str, redis_client: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    # Given: a bucket of images, and nothing else yet
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'report.db'}", bucket=f"old-{run_id}",
                        events_queue=f"events-{run_id}", dead_letter_queue=f"dlq-{run_id}",
                        review_queue=f"review-{run_id}")
    s3, sqs = aws_client("s3", moto_endpoint), aws_client("sqs", moto_endpoint)
    s3.create_bucket(Bucket=settings.bucket)
    for key, body in {**{k: v[0] for k, v in IMAGES.items()}, **NOT_IMAGES}.items():
        s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
    rules = [{"sha256": hashlib.sha256(IMAGES[PREFIX + "explicit.png"][0]).hexdigest(), "labels": EXPLICIT},
             {"sha256": hashlib.sha256(IMAGES[PREFIX + "user 9/weapon é.JPG"][0]).hexdigest(), "labels": WEAPONS}]
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules).start()
    children: list[Child] = []
    try:
        # When: the operator sets up the resources and starts the pipeline
        # The queues do not exist yet: the children get their names, and `pipeline setup` creates them.
        resources = Resources(settings, s3, sqs, provision.Queues("", "", "", ""), moto_endpoint)
        env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url,
                        PIPELINE_EVENTS_QUEUE=settings.events_queue, PIPELINE_DEAD_LETTER_QUEUE=settings.dead_letter_queue,
                        PIPELINE_REVIEW_QUEUE=settings.review_queue, PIPELINE_STATE_DIR=str(tmp_path / "state"))
        assert run(env, "setup")[-1].startswith("done; events queue")
        migrate.upgrade(settings.database_url)
        children = [Child("worker", python_module("pipeline", "worker", "--concurrency", "2"), env,
                          tmp_path / "worker.log").start(),
                    Child("bridge", python_module("pipeline", "bridge"), env, tmp_path / "bridge.log").start()]
        target = f"s3://{settings.bucket}/{PREFIX}"
        # ... and backfills: stopped after two, then resumed
        first = run(env, "backfill", "--limit", "2", target)
        second = run(env, "backfill", target)

        # Then: every image gets its decision, and blocked ones their tag
        assert first[-2:] == ["listed 2, skipped decided 0, skipped filtered 0, sent 2, failed 0",
                              "stopped (limit) after 'content/images/clean-2.jpeg'; run the same command to continue"]
        assert second == ["resuming after 'content/images/clean-2.jpeg' (--restart starts over)",
                          "listed 4, skipped decided 0, skipped filtered 1, sent 3, failed 0"]
        store = ReportStore.from_url(settings.database_url)
        try:
            rows = wait_for_decisions(store, settings.bucket, {key: decision for key, (_, decision) in IMAGES.items()})
            assert {row.event_name for row in rows.values()} == {"ObjectCreated:Backfill"}
            for key, (_, decision) in IMAGES.items():
                assert tags(s3, settings.bucket, key) == ({"BlockedContent": "true"} if decision == "blocked" else {})

            # When: a second full backfill
            again = run(env, "backfill", target)
            # Then: nothing is sent, nothing judged twice
            assert again == [f"listed {len(IMAGES) + 1}, skipped decided {len(IMAGES)}, skipped filtered 1, sent 0, failed 0"]
            assert standin.stats()["calls"] == len(IMAGES)
            assert len(store.find(bucket=settings.bucket)) == len(IMAGES)
        finally:
            store.dispose()
    finally:
        for child in reversed(children):
            child.stop()
        standin.stop()
        delete_bucket(s3, settings.bucket)
