"""The backfill run on a real moto server (S3 listing, SQS batches) and a real report store (SQLite file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import provision
from pipeline.backfill.checkpoint import Checkpoint
from pipeline.backfill.run import Backfill, BackfillReport
from pipeline.events import KeyFilter, parse_body
from pipeline.report.store import ReportStore
from tests.integration.test_bridge import notification, s3_record
from tests.integration.test_provision_moto import drain_events

PREFIX = "content/images/"
COMMAND_TIMEOUT_SECONDS = 60


def run(s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path,
        **options: Any) -> BackfillReport:
    """One backfill of ``s3://bucket/content/images/`` with its checkpoint in tmp_path."""
    checkpoint = Checkpoint.for_target(tmp_path / "state", bucket, PREFIX)
    return Backfill(s3, sqs, queues.events_url, store, bucket, PREFIX, KeyFilter(), checkpoint, **options).run()


def upload(s3: Any, bucket: str, *keys: str) -> dict[str, dict[str, Any]]:
    return {key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()) for key in keys}


def numbered(s3: Any, bucket: str, count: int) -> list[str]:
    """Upload ``count`` images named 00.jpg, 01.jpg, ... under PREFIX; their keys in listing order."""
    keys = [f"{PREFIX}{n:02d}.jpg" for n in range(count)]
    upload(s3, bucket, *keys)
    return keys


def record_real_event(store: ReportStore, bucket: str, key: str, put: dict[str, Any], outcome: str = "clean") -> None:
    """The row a real upload event left: judged already."""
    record = s3_record(key=key.replace(" ", "+"), bucket=bucket, version_id=put.get("VersionId"),
                       etag=put["ETag"].strip('"'))
    event, = parse_body(notification(record), KeyFilter())
    row, _ = store.upsert_pending(event)
    store.record_decision(row.work_id, outcome=outcome)


def counts(report: BackfillReport) -> tuple[int, int, int, int, int]:
    return report.listed, report.skipped_decided, report.skipped_filtered, report.sent, len(report.failed)


def test_unversioned_objects_are_filtered_skipped_when_known_and_sent_otherwise(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    # Given: three images (one judged already), a text file, and an image outside the prefix
    puts = upload(s3, bucket, PREFIX + "a.jpg", PREFIX + "b c.PNG", PREFIX + "judged.jpeg", PREFIX + "notes.txt",
                  "elsewhere/x.jpg")
    record_real_event(store, bucket, PREFIX + "judged.jpeg", puts[PREFIX + "judged.jpeg"])
    # When
    report = run(s3, sqs, queues, store, bucket, tmp_path)
    # Then
    assert counts(report) == (4, 1, 1, 2, 0)
    events = drain_events(sqs, queues.events_url)
    assert sorted((e.bucket, e.key, e.etag, e.version_id) for e in events) == [
        (bucket, PREFIX + "a.jpg", puts[PREFIX + "a.jpg"]["ETag"].strip('"'), None),
        (bucket, PREFIX + "b c.PNG", puts[PREFIX + "b c.PNG"]["ETag"].strip('"'), None)]
    assert {e.event_name for e in events} == {"ObjectCreated:Backfill"}
    assert not Checkpoint.for_target(tmp_path / "state", bucket, PREFIX).path.exists()  # finished: removed


def test_versioned_bucket_sends_current_versions_with_their_ids(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    # Given: a key with two versions, a key deleted (delete marker on top), a version already judged
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    upload(s3, bucket, PREFIX + "two.jpg")
    latest = upload(s3, bucket, PREFIX + "two.jpg")[PREFIX + "two.jpg"]
    upload(s3, bucket, PREFIX + "gone.jpg")
    s3.delete_object(Bucket=bucket, Key=PREFIX + "gone.jpg")
    judged = upload(s3, bucket, PREFIX + "judged.jpg")[PREFIX + "judged.jpg"]
    record_real_event(store, bucket, PREFIX + "judged.jpg", judged, outcome="blocked")
    # When
    report = run(s3, sqs, queues, store, bucket, tmp_path)
    # Then
    assert counts(report) == (2, 1, 0, 1, 0)
    event, = drain_events(sqs, queues.events_url)
    assert (event.key, event.version_id) == (PREFIX + "two.jpg", latest["VersionId"])


def test_a_limited_run_then_a_resume_sends_every_object_once(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    # Given: 25 images, listed two at a time
    keys = numbered(s3, bucket, 25)
    # When: a run limited to 7, then one that resumes
    first = run(s3, sqs, queues, store, bucket, tmp_path, limit=7, page_size=2)
    sent_first = [e.key for e in drain_events(sqs, queues.events_url)]
    second = run(s3, sqs, queues, store, bucket, tmp_path, page_size=2)
    sent_second = [e.key for e in drain_events(sqs, queues.events_url)]
    # Then
    assert (first.sent, first.stopped, first.last_key) == (7, "limit", keys[6])
    assert sorted(sent_first) == keys[:7]
    assert (second.resumed_after, second.listed, second.sent, second.stopped) == (keys[6], 18, 18, None)
    assert sorted(sent_second) == keys[7:]


def test_a_stop_request_ends_the_run_after_the_batch_in_hand(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    # Given
    keys = numbered(s3, bucket, 25)
    # When: Ctrl-C during the first batch
    first = run(s3, sqs, queues, store, bucket, tmp_path, should_stop=lambda: True)
    checkpoint = Checkpoint.for_target(tmp_path / "state", bucket, PREFIX)
    # Then: that batch went out whole, and the checkpoint names its last key
    assert (first.sent, first.stopped, checkpoint.last_key()) == (10, "interrupted", keys[9])
    assert sorted(e.key for e in drain_events(sqs, queues.events_url)) == keys[:10]
    # When: the next run
    second = run(s3, sqs, queues, store, bucket, tmp_path)
    # Then
    assert (second.listed, second.sent) == (15, 15)
    assert sorted(e.key for e in drain_events(sqs, queues.events_url)) == keys[10:]


def test_dry_run_sends_nothing_and_leaves_the_checkpoint_alone(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    keys = numbered(s3, bucket, 12)
    run(s3, sqs, queues, store, bucket, tmp_path, limit=3)
    drain_events(sqs, queues.events_url)
    # When
    dry = run(s3, sqs, queues, store, bucket, tmp_path, dry_run=True)
    # Then
    assert (dry.resumed_after, dry.listed, dry.sent) == (keys[2], 9, 9)
    assert drain_events(sqs, queues.events_url) == []
    assert Checkpoint.for_target(tmp_path / "state", bucket, PREFIX).last_key() == keys[2]
    assert dry.summary(dry_run=True)[-1] == "listed 9, skipped decided 0, skipped filtered 0, would send 9, failed 0"


def test_restart_ignores_the_checkpoint(
    s3: Any, sqs: Any, queues: provision.Queues, store: ReportStore, bucket: str, tmp_path: Path
) -> None:
    keys = numbered(s3, bucket, 5)
    run(s3, sqs, queues, store, bucket, tmp_path, limit=2)
    drain_events(sqs, queues.events_url)
    again = run(s3, sqs, queues, store, bucket, tmp_path, restart=True)
    assert (again.resumed_after, again.listed, again.sent) == (None, 5, 5)


def test_the_command_refuses_a_bucket_outside_the_allowed_ones(pipeline_env: dict[str, str]) -> None:
    env = {**pipeline_env, "PIPELINE_BUCKET": "ours", "PIPELINE_ALLOWED_BUCKETS": "ours,theirs"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "backfill", "s3://someone-else/content/images/"],
                          env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: bucket someone-else is not in PIPELINE_ALLOWED_BUCKETS (ours, theirs): the bridge would refuse its events")
    assert "Traceback" not in done.stderr


def backfill_command(env: dict[str, str], bucket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "backfill", f"s3://{bucket}/{PREFIX}"],
                          env={**env, "PIPELINE_BUCKET": bucket}, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS)


def test_a_run_started_while_an_earlier_runs_messages_wait_warns_that_they_are_sent_again(
    s3: Any, sqs: Any, queues: provision.Queues, bucket: str, pipeline_env: dict[str, str]
) -> None:
    # Given: a first run into an empty events queue, one of its messages received (in flight) by a bridge
    keys = numbered(s3, bucket, 3)
    first = backfill_command(pipeline_env, bucket)
    assert first.returncode == 0, first.stderr
    assert "warning" not in first.stderr
    (in_flight,) = sqs.receive_message(QueueUrl=queues.events_url, VisibilityTimeout=60)["Messages"]
    (received,) = parse_body(in_flight["Body"], KeyFilter())
    # When: a second run right after
    second = backfill_command(pipeline_env, bucket)
    # Then: it warns, counting waiting and in-flight messages, and sends every object again
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines()[0] == (
        "warning: the events queue holds about 3 messages; objects a previous backfill queued that the bridge has "
        "not handed off yet will be sent again (harmless: the bridge drops duplicates, but new uploads wait behind "
        "them). To avoid it, wait until `pipeline status` shows the events queue empty.")
    assert second.stdout.splitlines()[-1] == "listed 3, skipped decided 0, skipped filtered 0, sent 3, failed 0"
    waiting = [key for key in keys if key != received.key]
    assert sorted(event.key for event in drain_events(sqs, queues.events_url)) == sorted(keys + waiting)
