"""End to end on real services: moto S3 -> SQS notifications, the bridge, a Celery worker, Redis.

Images are uploaded with the real AWS CLI, as a user would. Rekognition is the stand-in under
tests/ (real JSON protocol): the production boto3 code path runs unchanged against it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from pipeline.local.processes import Child, python_module
from pipeline.report.store import ImageRow, ReportStore
from tests.e2e.stack import child_env, provision_resources
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

PREFIX = "content/images/"
EXPLICIT = [
    {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 97.25, "TaxonomyLevel": 2},
    {"Name": "Explicit", "ParentName": "", "Confidence": 97.25, "TaxonomyLevel": 1},
    {"Name": "Swimwear or Underwear", "ParentName": "", "Confidence": 41.0, "TaxonomyLevel": 1},
]
WEAPONS = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 88.5, "TaxonomyLevel": 2}]
DECISION_TIMEOUT_SECONDS = 90


def picture(seed: int, fmt: str) -> bytes:
    """A small synthetic picture, distinct per seed."""
    image = Image.new("RGB", (160, 120), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10 + seed, 10, 90 + seed, 100), fill=((seed * 13) % 256, 200, 40))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@dataclass(frozen=True)
class Case:
    name: str
    key: str
    body: bytes
    expected: str | None  # None: never becomes work
    owner_tags: str = ""
    error_code: str | None = None


def cases() -> list[Case]:
    explicit, weapon, ten_tags = picture(1, "PNG"), picture(2, "JPEG"), picture(3, "JPEG")
    many = "&".join(f"k{i}=v{i}" for i in range(10))
    return [
        Case("clean", PREFIX + "clean.jpg", picture(4, "JPEG"), "clean"),
        Case("explicit", PREFIX + "explicit.png", explicit, "blocked"),
        Case("owner", PREFIX + "user 7/holiday+photo é.JPG", weapon, "blocked", "owner=alice&team=blue"),
        Case("ten_tags", PREFIX + "ten-tags.jpg", ten_tags, "failed", many, "TagLimitExceeded"),
        Case("not_image", PREFIX + "notes.jpg", b"this is not an image\n" * 20, "failed", error_code="InvalidImageFormatException"),
        Case("outside", "other/explicit.png", explicit, None),
        Case("gif", PREFIX + "anim.gif", explicit, None),
    ]


def standin_rules(all_cases: list[Case]) -> list[dict[str, Any]]:
    by_name = {c.name: c for c in all_cases}
    return [
        {"sha256": hashlib.sha256(by_name["explicit"].body).hexdigest(), "labels": EXPLICIT},
        {"sha256": hashlib.sha256(by_name["owner"].body).hexdigest(), "labels": WEAPONS},
        {"sha256": hashlib.sha256(by_name["ten_tags"].body).hexdigest(), "labels": WEAPONS},
    ]


def aws_cli(endpoint: str, env: dict[str, str], *args: str) -> str:
    """Run the real AWS CLI against the moto server."""
    done = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", endpoint, *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def stack(redis_url: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """Bucket, queues and notification on moto; the stand-in; a real worker and bridge process."""
    tmp = tmp_path_factory.mktemp("e2e")
    resources = provision_resources(moto_endpoint, tmp, "e2e", broker_url=redis_url)
    settings, s3, sqs, queues = resources.settings, resources.s3, resources.sqs, resources.queues
    all_cases = cases()
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=standin_rules(all_cases)).start()
    env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url)
    children = [Child("worker", python_module("pipeline", "worker", "--concurrency", "2"), env, tmp / "worker.log").start(),
                Child("bridge", python_module("pipeline", "bridge"), env, tmp / "bridge.log").start()]
    try:
        yield {"settings": settings, "s3": s3, "sqs": sqs, "queues": queues, "env": env, "endpoint": moto_endpoint,
               "cases": all_cases, "store": ReportStore.from_url(settings.database_url), "standin": standin, "tmp": tmp}
    finally:
        for child in reversed(children):
            child.stop()
        standin.stop()


def upload_all(stack: dict[str, Any]) -> None:
    """`aws s3 cp` for uploads without tags, `aws s3api put-object --tagging` for the owner-tagged ones."""
    bucket, endpoint, env, tmp = stack["settings"].bucket, stack["endpoint"], stack["env"], stack["tmp"]
    for case in stack["cases"]:
        path = Path(tmp) / f"{case.name}.bin"
        path.write_bytes(case.body)
        if case.owner_tags:
            aws_cli(endpoint, env, "s3api", "put-object", "--bucket", bucket, "--key", case.key,
                    "--body", str(path), "--tagging", case.owner_tags)
        else:
            aws_cli(endpoint, env, "s3", "cp", str(path), f"s3://{bucket}/{case.key}")


def wait_for_rows(store: ReportStore, bucket: str, count: int) -> dict[str, ImageRow]:
    deadline = time.monotonic() + DECISION_TIMEOUT_SECONDS
    while True:
        rows = {row.key: row for row in store.find(bucket=bucket)}
        if len(rows) >= count and all(r.outcome != "pending" for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"decisions not complete after {DECISION_TIMEOUT_SECONDS}s: {[(k, r.outcome) for k, r in rows.items()]}")
        time.sleep(0.5)


def object_tags(stack: dict[str, Any], key: str) -> dict[str, str]:
    out = aws_cli(stack["endpoint"], stack["env"], "s3api", "get-object-tagging",
                  "--bucket", stack["settings"].bucket, "--key", key)
    return {t["Key"]: t["Value"] for t in json.loads(out)["TagSet"]}


def review_messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        messages += [json.loads(m["Body"]) for m in batch]
    return messages


@pytest.fixture(scope="module")
def decided(stack: dict[str, Any]) -> dict[str, ImageRow]:
    upload_all(stack)
    expected = [c for c in stack["cases"] if c.expected]
    return wait_for_rows(stack["store"], stack["settings"].bucket, len(expected))


def test_every_watched_upload_gets_exactly_one_decision(stack, decided):
    # Then: one row per image under the prefix with an accepted suffix, with the expected outcome
    expected = {c.key: c.expected for c in stack["cases"] if c.expected}
    assert {key: row.outcome for key, row in decided.items()} == expected


def test_blocked_images_carry_the_block_tag_and_keep_owner_tags(stack, decided):
    assert object_tags(stack, PREFIX + "explicit.png") == {"BlockedContent": "true"}
    assert object_tags(stack, PREFIX + "user 7/holiday+photo é.JPG") == {
        "owner": "alice", "team": "blue", "BlockedContent": "true"}


def test_clean_and_ignored_images_are_left_untagged(stack, decided):
    for key in (PREFIX + "clean.jpg", PREFIX + "notes.jpg", "other/explicit.png", PREFIX + "anim.gif"):
        assert object_tags(stack, key) == {}


def test_ten_owner_tags_fail_clearly_and_stay_untouched(stack, decided):
    row = decided[PREFIX + "ten-tags.jpg"]
    assert (row.outcome, row.error_code) == ("failed", "TagLimitExceeded")
    assert [label["Name"] for label in row.labels] == ["Weapons"]
    assert object_tags(stack, PREFIX + "ten-tags.jpg") == {f"k{i}": f"v{i}" for i in range(10)}


def test_report_rows_hold_labels_detector_and_timings(stack, decided):
    row = decided[PREFIX + "explicit.png"]
    assert row.detector == "rekognition" and row.model_version == "7.0"
    # MinConfidence 80: the 41% label is not returned; every returned label is kept with its taxonomy
    assert [(l["Name"], l["ParentName"], l["Confidence"], l["TaxonomyLevel"]) for l in row.labels] == [
        ("Explicit Nudity", "Explicit", 97.25, 2), ("Explicit", "", 97.25, 1)]
    assert row.timings["detect_ms"] > 0 and row.decided_at >= row.event_time
    assert decided[PREFIX + "clean.jpg"].labels == []
    failed = decided[PREFIX + "notes.jpg"]
    assert (failed.error_code, failed.labels) == ("InvalidImageFormatException", [])


def test_review_queue_holds_exactly_the_flagged_images(stack, decided):
    messages = review_messages(stack["sqs"], stack["queues"].review_url)
    assert sorted((m["key"], m["type"]) for m in messages) == sorted([
        (PREFIX + "explicit.png", "moderation.blocked"),
        (PREFIX + "user 7/holiday+photo é.JPG", "moderation.blocked"),
        # flagged but the tag could not be written: still visible, so moderators get it too
        (PREFIX + "ten-tags.jpg", "moderation.flagged_untagged"),
    ])
    explicit = next(m for m in messages if m["key"].endswith("explicit.png"))
    assert explicit["bucket"] == stack["settings"].bucket
    assert explicit["work_id"] == decided[PREFIX + "explicit.png"].work_id
    assert [label["Name"] for label in explicit["labels"]] == ["Explicit Nudity", "Explicit"]


def test_rekognition_saw_one_call_per_watched_image(stack, decided):
    # The pipeline's own tag writes fire ObjectTagging:Put; they must not come back as work.
    time.sleep(3)
    watched = [c for c in stack["cases"] if c.expected]
    assert stack["standin"].stats()["calls"] == len(watched)
    assert len(stack["store"].find(bucket=stack["settings"].bucket)) == len(watched)
