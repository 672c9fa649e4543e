"""End to end: moderators list, approve and reject blocked images, and their decisions hold.

The real stack as in test_requeue_e2e.py (moto S3 -> SQS, `pipeline bridge` and `pipeline worker`
processes, the Rekognition stand-in), with PIPELINE_STATUS_TAG_KEY on. moto's S3 notifications carry
no versionId, so the bucket is unversioned and an object version is its ETag (acting on the exact
VersionId is covered in tests/integration/test_status_and_review_moto.py). `pipeline review` runs as
a subprocess, as a moderator would run it. After the decisions, duplicate S3 events, `pipeline
requeue` and a requeue request for an approved failed-but-flagged image change nothing they decided:
the approved images stay untagged, the rejected one gets its removed tag back, and new bytes uploaded
to an approved key are judged afresh.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest

from pipeline.local.processes import Child, python_module
from pipeline.report.store import ReportStore
from pipeline.requeue.envelope import build_message
from tests.e2e.stack import child_env, provision_resources
from tests.e2e.test_pipeline_e2e import EXPLICIT, WEAPONS, picture
from tests.e2e.test_requeue_e2e import wait_for_outcomes
from tests.integration.test_bridge import notification, queue_counts, s3_record
from tests.standins.rekognition import RekognitionStandIn

pytestmark = pytest.mark.e2e

PREFIX = "content/images/"
APPROVE_KEY, REJECT_KEY, CLEAN_KEY = PREFIX + "statue.png", PREFIX + "knife.jpg", PREFIX + "lake.jpg"
BODIES = {APPROVE_KEY: picture(31, "PNG"), REJECT_KEY: picture(32, "JPEG"), CLEAN_KEY: picture(33, "JPEG")}
#: Later bytes for APPROVE_KEY, which the stand-in also finds explicit.
NEW_BODY = picture(34, "PNG")
#: Explicit too, but uploaded with ten owner tags: no slot for the block tag, so failed and flagged.
FLAGGED_KEY, FLAGGED_BODY = PREFIX + "ten-tags.png", picture(35, "PNG")
TEN_TAGS = "&".join(f"owner{i}={i}" for i in range(10))
STATUS_KEY = "ModerationStatus"
COMMAND_TIMEOUT_SECONDS = 60
DRAIN_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def stack(redis_url: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """Bucket, queues, notification, the stand-in, a worker and a bridge, the status tag on."""
    tmp = tmp_path_factory.mktemp("review-e2e")
    resources = provision_resources(moto_endpoint, tmp, "rv")
    settings, s3 = resources.settings, resources.s3
    rules = [{"sha256": hashlib.sha256(BODIES[APPROVE_KEY]).hexdigest(), "labels": EXPLICIT},
             {"sha256": hashlib.sha256(BODIES[REJECT_KEY]).hexdigest(), "labels": WEAPONS},
             {"sha256": hashlib.sha256(NEW_BODY).hexdigest(), "labels": EXPLICIT},
             {"sha256": hashlib.sha256(FLAGGED_BODY).hexdigest(), "labels": EXPLICIT}]
    standin = RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules).start()
    env = child_env(resources, broker_url=redis_url, rekognition_url=standin.endpoint_url,
                    PIPELINE_STATUS_TAG_KEY=STATUS_KEY)
    children = [Child("worker", python_module("pipeline", "worker", "--concurrency", "2"), env, tmp / "worker.log").start(),
                Child("bridge", python_module("pipeline", "bridge"), env, tmp / "bridge.log").start()]
    store = ReportStore.from_url(settings.database_url)
    try:
        yield {"bucket": settings.bucket, "s3": s3, "sqs": resources.sqs, "queues": resources.queues, "env": env,
               "store": store, "standin": standin}
    finally:
        store.dispose()
        for child in reversed(children):
            child.stop()
        standin.stop()


def pipeline(stack: dict[str, Any], *args: str) -> str:
    """Run `pipeline ARGS`; its output (it must exit 0)."""
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], env=stack["env"],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tags(stack: dict[str, Any], key: str) -> dict[str, str]:
    tag_set = stack["s3"].get_object_tagging(Bucket=stack["bucket"], Key=key)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def review(stack: dict[str, Any], *args: str) -> str:
    """Run `pipeline review ARGS`; its output (it must exit 0)."""
    return pipeline(stack, "review", *args)


def moto_event_time(when: datetime) -> str:
    """An event time written as moto writes it (``2024-05-14T09:26:01.812Z``)."""
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"after {DRAIN_TIMEOUT_SECONDS}s: {what}")
        time.sleep(0.3)


def test_moderator_decisions_hold_against_duplicates_and_requeues(stack: dict[str, Any]) -> None:
    s3, store = stack["s3"], stack["store"]
    # Given: two blocked images, a clean one, and one flagged but untagged (no free slot)
    for key, body in BODIES.items():
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=body)
    s3.put_object(Bucket=stack["bucket"], Key=FLAGGED_KEY, Body=FLAGGED_BODY, Tagging=TEN_TAGS)
    rows = wait_for_outcomes(stack, {APPROVE_KEY: ("blocked", None), REJECT_KEY: ("blocked", None),
                                     CLEAN_KEY: ("clean", None), FLAGGED_KEY: ("failed", "TagLimitExceeded")})
    assert tags(stack, APPROVE_KEY) == {"BlockedContent": "true", STATUS_KEY: "blocked"}
    assert tags(stack, CLEAN_KEY) == {STATUS_KEY: "clean"}
    approve_id, reject_id, flagged_id = (rows[key].work_id for key in (APPROVE_KEY, REJECT_KEY, FLAGGED_KEY))

    # When: the moderators list, approve two and reject one
    listed = json.loads(review(stack, "list", "--format", "json"))
    review(stack, "approve", approve_id, "--by", "alice", "--note", "a statue")
    review(stack, "reject", reject_id, "--by", "bob")
    review(stack, "approve", flagged_id, "--by", "carol")

    # Then: the listing had the three flagged; the approved one lost its block tag, the rejected one kept it
    assert {item["url"] for item in listed} == {f"s3://{stack['bucket']}/{key}"
                                                for key in (APPROVE_KEY, REJECT_KEY, FLAGGED_KEY)}
    assert {item["work_id"] for item in listed} == {approve_id, reject_id, flagged_id}
    assert tags(stack, APPROVE_KEY) == {STATUS_KEY: "clean"}
    assert tags(stack, REJECT_KEY) == {"BlockedContent": "true", STATUS_KEY: "blocked"}
    approved = store.get(approve_id)
    assert (approved.review, approved.reviewed_by, approved.outcome) == ("approved", "alice", "blocked")
    assert approved.reviewed_at is not None and approved.reviewed_at >= approved.decided_at
    assert json.loads(review(stack, "list", "--format", "json")) == []
    flagged = store.get(flagged_id)
    assert (flagged.review, flagged.reviewed_by, flagged.outcome) == ("approved", "carol", "failed")

    # When: the operator requeues failed images: the approved failed one is not among them
    assert pipeline(stack, "requeue") == "requeued 0 of 0 images\n"
    # ... the rejected one's tags are wiped; a requeue request for the approved failed image (as an
    # older `pipeline requeue` would have sent) and a duplicate event for the blocked two (one
    # message, the approved one's record first) arrive
    s3.delete_object_tagging(Bucket=stack["bucket"], Key=REJECT_KEY)
    calls_before = stack["standin"].stats()["calls"]
    events_url = stack["queues"].events_url
    stack["sqs"].send_message(QueueUrl=events_url, MessageBody=build_message(flagged, reason="test"))
    # True duplicates: moto's own fields (no versionId, no sequencer, its eventTime), so the same work ids.
    duplicates = [s3_record(key=key, bucket=stack["bucket"], version_id=None, etag=rows[key].etag,
                            sequencer=rows[key].sequencer, event_time=moto_event_time(rows[key].event_time))
                  for key in (APPROVE_KEY, REJECT_KEY)]
    stack["sqs"].send_message(QueueUrl=events_url, MessageBody=notification(*duplicates))

    # Then: the rejected version's tag comes back (its duplicate was handled) ...
    wait_until(lambda: tags(stack, REJECT_KEY).get("BlockedContent") == "true",
               "the rejected version's block tag was not written again")
    wait_until(lambda: sum(queue_counts(stack["sqs"], events_url).values()) == 0, "the events queue did not drain")
    # ... while the approved version stays untagged, its row and decision unchanged, nothing detected again
    assert tags(stack, APPROVE_KEY) == {STATUS_KEY: "clean"}
    assert store.get(approve_id) == approved
    assert store.get(flagged_id) == flagged
    assert store.get(reject_id).review == "rejected"
    assert len(store.find(bucket=stack["bucket"])) == 4  # no new row: the duplicates were recognised
    assert stack["standin"].stats()["calls"] == calls_before

    # When: new bytes are uploaded to the approved key
    new_etag = s3.put_object(Bucket=stack["bucket"], Key=APPROVE_KEY, Body=NEW_BODY)["ETag"].strip('"')

    # Then: they are judged afresh, tagged, and await review; the approved row keeps its decision
    wait_until(lambda: any(row.etag == new_etag and row.outcome == "blocked"
                           for row in store.find(bucket=stack["bucket"])), "the new upload was not blocked")
    assert tags(stack, APPROVE_KEY) == {"BlockedContent": "true", STATUS_KEY: "blocked"}
    (pending_review,) = json.loads(review(stack, "list", "--format", "json"))
    assert pending_review["work_id"] not in (approve_id, reject_id)
    assert store.get(pending_review["work_id"]).etag == new_etag
    assert store.get(approve_id).review == "approved"
