"""Nothing lost, nothing doubled: 300 images through the real stack while its processes are killed.

The stack: a redis-server of the test's own (restarted empty twice), the moto server with real S3 ->
SQS notifications, the Rekognition stand-in, two `pipeline worker` processes (prefork), `pipeline
bridge` and `pipeline beat` (the sweeper's schedule). Images arrive in waves; between waves the
bridge and workers are killed with SIGKILL (the whole process group, pool children included) and
Redis is restarted with nothing in it. Afterwards every image must have exactly one terminal row
with the right outcome and the right tags on S3.

The timings are shortened so the recovery paths run within the test: PIPELINE_STALE_AFTER 8 s,
sweeper every 2 s, the Redis transport's visibility timeout 20 s, the events queue's 6 s.
"""

from __future__ import annotations

import collections
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from pipeline.local.processes import Child, free_port, python_module
from pipeline.report.store import ReportStore
from tests.conftest import _start_redis
from tests.e2e.stack import child_env, provision_resources
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

IMAGES = 300
WAVES = 6
#: Every FLAGGED_EVERY-th image is one the stand-in labels Weapons (95%): it must end blocked and tagged.
FLAGGED_EVERY = 3
WEAPONS = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 95.0, "TaxonomyLevel": 2}]
PREFIX = "content/images/"
#: Longest the test waits for the last decision after the last fault.
SETTLE_TIMEOUT_SECONDS = 300
FAST_RECOVERY = {
    "PIPELINE_STALE_AFTER": "8",
    "PIPELINE_RETRY_BACKOFF_MAX": "2",
    "PIPELINE_SWEEP_INTERVAL": "2",
    "PIPELINE_VISIBILITY_TIMEOUT": "20",
    "PIPELINE_MAX_RETRIES": "30",
    "PIPELINE_BACKLOG_HIGH_WATER": "40",
}
EVENTS_VISIBILITY_TIMEOUT = "6"


def picture(seed: int) -> bytes:
    """A distinct 120x96 JPEG per seed (over Rekognition's 80 px minimum)."""
    image = Image.new("RGB", (120, 96), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    ImageDraw.Draw(image).rectangle((seed % 60, 10, seed % 60 + 40, 70), fill=((seed * 13) % 256, 200, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


class Stack:
    """The processes under test, restartable one by one."""

    def __init__(self, env: dict[str, str], tmp: Path, redis_port: int) -> None:
        self.env, self.tmp, self.redis_port = env, tmp, redis_port
        self.children: dict[str, Child] = {}
        self.faults: collections.Counter[str] = collections.Counter()
        self.redis = self._start_redis()

    def _start_redis(self) -> Child:
        return _start_redis(self.redis_port, self.tmp / f"redis-{len(self.faults)}")

    def start(self, name: str) -> None:
        argv = {
            "worker-a": python_module("pipeline", "worker", "--concurrency", "2", "-n", "a@%h"),
            "worker-b": python_module("pipeline", "worker", "--concurrency", "2", "-n", "b@%h"),
            "bridge": python_module("pipeline", "bridge"),
            "beat": python_module("pipeline", "beat"),
        }[name]
        self.children[name] = Child(name, argv, self.env, self.tmp / f"{name}.log").start()

    def kill(self, name: str) -> None:
        """SIGKILL the process group (a container OOM-kill, a node lost), then start it again."""
        self.children[name].kill()
        self.faults[f"SIGKILL {name}"] += 1
        self.start(name)

    def restart_redis_empty(self) -> None:
        self.redis.kill()
        self.faults["Redis restarted empty"] += 1
        self.redis = self._start_redis()

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()
        self.redis.stop()


@pytest.fixture
def fault_stack(moto_endpoint: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    resources = provision_resources(moto_endpoint, tmp_path, "faults")
    settings, s3, sqs, queues = resources.settings, resources.s3, resources.sqs, resources.queues
    sqs.set_queue_attributes(QueueUrl=queues.events_url, Attributes={"VisibilityTimeout": EVENTS_VISIBILITY_TIMEOUT})
    images = {f"{PREFIX}wave-{i % WAVES}/img-{i:03d}.jpg": picture(i) for i in range(IMAGES)}
    flagged = {key for i, key in enumerate(images) if i % FLAGGED_EVERY == 0}
    rules = [{"sha256": hashlib.sha256(images[key]).hexdigest(), "labels": WEAPONS} for key in sorted(flagged)]
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules).start()
    redis_port = free_port()
    env = child_env(resources, broker_url=f"redis://127.0.0.1:{redis_port}/0", rekognition_url=standin.endpoint_url,
                    PIPELINE_STATE_DIR=str(tmp_path / "state"), **FAST_RECOVERY)
    stack = Stack(env, tmp_path, redis_port)
    try:
        for name in ("worker-a", "worker-b", "bridge", "beat"):
            stack.start(name)
        yield {"stack": stack, "s3": s3, "bucket": settings.bucket, "images": images, "flagged": flagged,
               "store": ReportStore.from_url(settings.database_url), "standin": standin}
    finally:
        stack.stop()
        standin.stop()


def faults(stack: Stack) -> list[Callable[[], None]]:
    """One fault after each wave; the bridge, each worker and Redis each go down at least twice."""
    return [
        lambda: stack.kill("bridge"),
        lambda: stack.kill("worker-a"),
        stack.restart_redis_empty,
        lambda: (stack.kill("bridge"), stack.kill("worker-b")),
        stack.restart_redis_empty,
        lambda: (stack.kill("worker-a"), stack.kill("worker-b")),
    ]


def wait_until_settled(store: ReportStore, bucket: str, expected: int) -> list[Any]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while True:
        rows = store.find(bucket=bucket)
        if len(rows) >= expected and all(row.outcome != "pending" for row in rows):
            return rows
        if time.monotonic() > deadline:
            counts = collections.Counter(row.outcome for row in rows)
            pytest.fail(f"not settled after {SETTLE_TIMEOUT_SECONDS}s: {len(rows)} rows, {dict(counts)}")
        time.sleep(1)


def test_every_image_gets_exactly_one_terminal_row_and_the_right_tags_through_kills_and_redis_restarts(
    fault_stack: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    stack, s3, bucket, store = fault_stack["stack"], fault_stack["s3"], fault_stack["bucket"], fault_stack["store"]
    images, flagged = fault_stack["images"], fault_stack["flagged"]
    keys = list(images)
    started = time.monotonic()

    # When: the images arrive in waves, with a fault after each wave
    for wave, fault in enumerate(faults(stack)):
        for key in keys[wave::WAVES]:
            s3.put_object(Bucket=bucket, Key=key, Body=images[key], ContentType="image/jpeg")
        time.sleep(1.5)  # let some of the wave be in flight when the fault lands
        fault()
    rows = wait_until_settled(store, bucket, IMAGES)
    elapsed = time.monotonic() - started
    outcomes = {row.key: row.outcome for row in rows}
    stats = fault_stack["standin"].stats()
    attempts = collections.Counter(row.attempts for row in rows)
    with capsys.disabled():  # the counts belong in CI's output, before any assertion
        print(f"\nfault test: {IMAGES} images in {WAVES} waves, settled {elapsed:.0f} s after the first upload")
        print(f"  faults: {dict(stack.faults)}")
        print(f"  outcomes: {dict(collections.Counter(outcomes.values()))}")
        print(f"  Rekognition calls: {stats['calls']} for {IMAGES} images; rows by attempts: {dict(sorted(attempts.items()))}")
        print(f"  rows the sweeper re-enqueued: {swept(stack.tmp)}")

    # Then: exactly one row per image, every one terminal, with the outcome its content calls for
    per_key = collections.Counter(row.key for row in rows)
    assert set(per_key) == set(images) and set(per_key.values()) == {1}, per_key.most_common(3)
    assert {key for key, outcome in outcomes.items() if outcome == "blocked"} == flagged
    assert {key for key, outcome in outcomes.items() if outcome == "clean"} == set(images) - flagged
    # ... and the right tags on S3
    tags = {key: {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]} for key in images}
    assert {key for key, tagset in tags.items() if tagset == {"BlockedContent": "true"}} == flagged
    assert all(tagset == {} for key, tagset in tags.items() if key not in flagged)


def swept(logs: Path) -> int:
    """Rows re-enqueued by the sweeper, from the workers' log lines (``sweeper: N stale ..., M re-enqueued``)."""
    total = 0
    for log in logs.glob("worker-*.log"):
        for match in re.finditer(r"sweeper: \d+ stale pending row\(s\), (\d+) re-enqueued", log.read_text(errors="replace")):
            total += int(match.group(1))
    return total
