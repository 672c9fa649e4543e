"""The fail-closed status tag and moderators' decisions, through pipeline.steps and pipeline.review on a
moto S3/SQS server with real tags (fixtures and helpers from test_steps_moto.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.dispatch import build_recheck, plan
from pipeline import steps, tasks
from pipeline import runtime as runtime_module
from pipeline.app import create_app
from pipeline.demo.make_samples import SAMPLES_DIR
from pipeline.detectors.base import ImageRef
from pipeline.errors import ObjectGoneError, ReviewRefusedError, TagLimitError
from pipeline.events import ObjectEvent
from pipeline.report.store import ImageRow
from pipeline.review.actions import decide
from pipeline.runtime import Runtime
from tests.conftest import delete_bucket
from tests.integration.test_steps_moto import (  # noqa: F401 (fixtures)
    BLOCK_TAG, OWNER_TAGS, FakeTask, product_env, rt, run_chain, settings, stored_tags, upload,
)

STATUS_KEY = "ModerationStatus"


def status(value: str) -> dict[str, str]:
    return {"Key": STATUS_KEY, "Value": value}


def owner_tags(count: int) -> list[dict[str, str]]:
    return [{"Key": f"owner-{i}", "Value": str(i)} for i in range(count)]


@pytest.fixture
def status_rt(product_env: None, settings: Any) -> Iterator[Runtime]:  # noqa: F811
    """A runtime with PIPELINE_STATUS_TAG_KEY=ModerationStatus."""
    rt = runtime_module.runtime(settings.replace(status_tag_key=STATUS_KEY))
    yield rt
    rt.store.dispose()
    runtime_module._runtime.cache_clear()


@pytest.fixture
def tag_puts(status_rt: Runtime) -> Iterator[list[dict[str, Any]]]:
    """Every PutObjectTagging the product's S3 client sends during the test."""
    calls: list[dict[str, Any]] = []
    client = status_rt.s3
    handler = lambda params, **_: calls.append(params)  # noqa: E731
    client.meta.events.register("provide-client-params.s3.PutObjectTagging", handler)
    yield calls
    client.meta.events.unregister("provide-client-params.s3.PutObjectTagging", handler)


def upload_bytes(s3: Any, rt: Runtime, body: bytes, *, tags: list[dict] = ()) -> dict[str, Any]:
    """Upload arbitrary bytes under the prefix and write the pending row; the chain's work payload."""
    sample = SAMPLES_DIR / "meadow.jpg"
    work = upload(s3, rt, sample.name, tags=tags)
    image = ImageRef.from_dict(work["image"])
    response = s3.put_object(Bucket=image.bucket, Key=image.key, Body=body)
    if tags:
        s3.put_object_tagging(Bucket=image.bucket, Key=image.key, VersionId=response["VersionId"],
                              Tagging={"TagSet": list(tags)})
    event = ObjectEvent(bucket=image.bucket, key=image.key, kind="created", event_name="ObjectCreated:Put",
                        event_time="2024-05-01T12:00:00.000Z", version_id=response["VersionId"],
                        etag=response["ETag"].strip('"'))
    row, _ = rt.store.upsert_pending(event)
    from bridge.dispatch import work_for

    return work_for(row)


def run_tasks(rt: Runtime, work: dict[str, Any]) -> dict[str, Any]:
    """detect -> tag -> report as the tasks run them (permanent errors become failed results)."""
    detected = tasks._run(FakeTask(rt.settings), steps.detect, work, give_up=tasks._failed)
    tagged = tasks._run(FakeTask(rt.settings, name="pipeline.tag"), steps.tag, detected, give_up=tasks._failed)
    return steps.report(rt, tagged)


# -- the status tag -------------------------------------------------------------------------------


def test_blocked_gets_block_and_status_tags_in_one_put(s3: Any, status_rt: Runtime, tag_puts: list) -> None:
    work = upload(s3, status_rt, "known-bad.jpg", tags=OWNER_TAGS)

    assert run_tasks(status_rt, work)["outcome"] == "blocked"

    assert stored_tags(s3, work["image"]) == OWNER_TAGS + [BLOCK_TAG, status("blocked")]
    assert len(tag_puts) == 1
    assert status_rt.store.get(work["work_id"]).error_code is None


@pytest.mark.parametrize("sample", ["meadow.jpg", "tiles.png"])
def test_clean_gets_status_clean_keeping_the_owners_tags(s3: Any, status_rt: Runtime, tag_puts: list, sample: str) -> None:
    work = upload(s3, status_rt, sample, tags=OWNER_TAGS)

    assert run_tasks(status_rt, work)["outcome"] == "clean"

    assert stored_tags(s3, work["image"]) == OWNER_TAGS + [status("clean")]
    assert len(tag_puts) == 1


def test_failed_gets_status_failed_and_keeps_its_error_code(s3: Any, status_rt: Runtime) -> None:
    work = upload_bytes(s3, status_rt, b"not an image at all")

    assert run_tasks(status_rt, work)["outcome"] == "failed"

    assert stored_tags(s3, work["image"]) == [status("failed")]
    assert status_rt.store.get(work["work_id"]).error_code == "InvalidImageFormatException"


def test_failed_object_deleted_before_the_tag_step_needs_no_status(s3: Any, status_rt: Runtime) -> None:
    # Given: detection failed, then the version was deleted
    work = upload_bytes(s3, status_rt, b"not an image at all")
    detected = tasks._run(FakeTask(status_rt.settings), steps.detect, work, give_up=tasks._failed)
    image = ImageRef.from_dict(work["image"])
    s3.delete_object(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)
    # When
    tagged = steps.tag(status_rt, detected)
    steps.report(status_rt, tagged)
    # Then: the failure stands as it was
    assert tagged == detected
    row = status_rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("failed", "InvalidImageFormatException")


def test_clean_without_a_free_slot_is_recorded_and_left_unserved(s3: Any, status_rt: Runtime, tag_puts: list) -> None:
    work = upload(s3, status_rt, "meadow.jpg", tags=owner_tags(10))

    run_tasks(status_rt, work)

    assert stored_tags(s3, work["image"]) == owner_tags(10)
    assert tag_puts == []
    row = status_rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("clean", "StatusTagNoRoom")
    assert row.error_message == f"no free tag slot for {STATUS_KEY}"


def test_blocked_with_one_free_slot_gets_the_block_tag_and_records_the_missing_status(s3: Any, status_rt: Runtime) -> None:
    work = upload(s3, status_rt, "known-bad.jpg", tags=owner_tags(9))

    run_tasks(status_rt, work)

    assert stored_tags(s3, work["image"]) == owner_tags(9) + [BLOCK_TAG]
    row = status_rt.store.get(work["work_id"])
    assert (row.outcome, row.error_code) == ("blocked", "StatusTagNoRoom")


def test_failed_without_a_free_slot_adds_to_its_error_code(s3: Any, status_rt: Runtime) -> None:
    work = upload_bytes(s3, status_rt, b"not an image", tags=owner_tags(10))

    run_tasks(status_rt, work)

    assert stored_tags(s3, work["image"]) == owner_tags(10)
    assert status_rt.store.get(work["work_id"]).error_code == "InvalidImageFormatException+StatusTagNoRoom"


# -- moderators' decisions ------------------------------------------------------------------------


def blocked_work(s3: Any, rt: Runtime, tags: list[dict] = ()) -> dict[str, Any]:
    work = upload(s3, rt, "known-bad.jpg", tags=tags)
    assert run_tasks(rt, work)["outcome"] == "blocked"
    return work


def test_approve_removes_the_block_tag_sets_status_clean_and_records_who(s3: Any, status_rt: Runtime) -> None:
    work = blocked_work(s3, status_rt, tags=OWNER_TAGS)

    result = decide(status_rt.store, status_rt.s3, status_rt.settings, work_id=work["work_id"], decision="approved",
                    reviewer="alice", note="statue")

    assert stored_tags(s3, work["image"]) == OWNER_TAGS + [status("clean")]
    assert (result.row.review, result.row.reviewed_by, result.row.outcome) == ("approved", "alice", "blocked")
    assert result.tags.changed is True and result.tags.dropped == ()
    assert [r.note for r in status_rt.store.review_history(work["work_id"])] == ["statue"]


def test_approve_without_the_status_tag_leaves_an_image_with_no_tags(s3: Any, status_rt: Runtime) -> None:
    # Given: the status tag off, a blocked image whose only tag is the block tag
    rt = runtime_module.runtime(status_rt.settings.replace(status_tag_key=""))
    work = blocked_work(s3, rt)
    assert stored_tags(s3, work["image"]) == [{"Key": "BlockedContent", "Value": "true"}]
    # When
    result = decide(rt.store, rt.s3, rt.settings, work_id=work["work_id"], decision="approved", reviewer="alice")
    # Then: no tag is left and the decision is recorded
    assert stored_tags(s3, work["image"]) == []
    assert (result.row.review, result.tags.changed) == ("approved", True)


def test_an_approved_version_is_not_retagged_by_a_recheck_or_a_duplicate_event(s3: Any, status_rt: Runtime) -> None:
    # Given: blocked, a recheck chain already enqueued (a duplicate event), then approved
    work = blocked_work(s3, status_rt)
    app = create_app(status_rt.settings)
    (recheck,) = build_recheck(app, status_rt.store.get(work["work_id"])).tasks[0].args
    decide(status_rt.store, status_rt.s3, status_rt.settings, work_id=work["work_id"], decision="approved",
           reviewer="alice")
    approved = status_rt.store.get(work["work_id"])
    # When: the recheck runs after the approval
    tagged = steps.tag(status_rt, recheck)
    reported = steps.report(status_rt, tagged)
    # Then: no tag back, the row unchanged; and another duplicate event enqueues nothing at all
    assert stored_tags(s3, work["image"]) == [status("clean")]
    assert reported == {"work_id": work["work_id"], "outcome": None, "skipped": True}
    assert status_rt.store.get(work["work_id"]) == approved
    assert plan(app, approved, created=False, stale_after=600, redelivered=True) is None


def test_reject_keeps_the_tag_and_a_recheck_puts_back_a_removed_one(s3: Any, status_rt: Runtime) -> None:
    # Given: blocked and rejected
    work = blocked_work(s3, status_rt)
    result = decide(status_rt.store, status_rt.s3, status_rt.settings, work_id=work["work_id"], decision="rejected",
                    reviewer="bob")
    assert stored_tags(s3, work["image"]) == [BLOCK_TAG, status("blocked")]
    assert (result.tags.changed, result.row.review) == (False, "rejected")
    # When: the tags are wiped and a duplicate event arrives
    image = ImageRef.from_dict(work["image"])
    s3.delete_object_tagging(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)
    (recheck,) = plan(create_app(status_rt.settings), status_rt.store.get(work["work_id"]), created=False,
                      stale_after=600).tasks[0].args
    steps.report(status_rt, steps.tag(status_rt, recheck))
    # Then
    assert stored_tags(s3, work["image"]) == [BLOCK_TAG, status("blocked")]
    assert status_rt.store.get(work["work_id"]).review == "rejected"


def test_reject_of_a_failed_flagged_image_without_a_free_slot_is_refused_and_not_recorded(
    s3: Any, status_rt: Runtime
) -> None:
    work = upload(s3, status_rt, "known-bad.jpg", tags=owner_tags(10))
    assert run_tasks(status_rt, work)["outcome"] == "failed"

    with pytest.raises(TagLimitError):
        decide(status_rt.store, status_rt.s3, status_rt.settings, work_id=work["work_id"], decision="rejected",
               reviewer="bob")

    assert status_rt.store.review_history(work["work_id"]) == []


def test_decisions_on_unknown_or_unflagged_work_ids_are_refused(s3: Any, status_rt: Runtime) -> None:
    clean = upload(s3, status_rt, "meadow.jpg")
    run_tasks(status_rt, clean)
    store, client, settings = status_rt.store, status_rt.s3, status_rt.settings

    with pytest.raises(ReviewRefusedError, match="no image with work id"):
        decide(store, client, settings, work_id="f" * 64, decision="approved", reviewer="alice")
    with pytest.raises(ReviewRefusedError, match="is clean, not flagged"):
        decide(store, client, settings, work_id=clean["work_id"], decision="approved", reviewer="alice")
    assert store.review_history(clean["work_id"]) == []


def test_a_decision_on_a_deleted_version_is_recorded_without_a_tag_change(s3: Any, status_rt: Runtime) -> None:
    # Given: a blocked version, deleted since; a newer version of the key still holds other tags
    blocked = blocked_work(s3, status_rt)
    image = ImageRef.from_dict(blocked["image"])
    s3.delete_object(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)
    newer = s3.put_object(Bucket=image.bucket, Key=image.key, Body=b"new bytes", Tagging="owner=1")
    # When
    result = decide(status_rt.store, status_rt.s3, status_rt.settings, work_id=blocked["work_id"],
                    decision="rejected", reviewer="bob", note="still bad")
    # Then: recorded with why no tag changed; the newer version's tags are untouched
    assert (result.tags, result.untagged_because) == (None, "the judged version was deleted (NoSuchVersion)")
    assert result.newer_work_id is None  # no event for the newer version reached the store
    assert (result.row.review, result.row.reviewed_by) == ("rejected", "bob")
    history = status_rt.store.review_history(blocked["work_id"])
    assert [(r.decision, r.note, r.version_id) for r in history] == [
        ("rejected", "[no tag changed: the judged version was deleted (NoSuchVersion)] still bad", image.version_id)]
    current = s3.get_object_tagging(Bucket=image.bucket, Key=image.key, VersionId=newer["VersionId"])["TagSet"]
    assert current == [{"Key": "owner", "Value": "1"}]


@pytest.fixture
def unversioned_rt(s3: Any, status_rt: Runtime) -> Iterator[Runtime]:
    """A runtime on an unversioned bucket of its own."""
    bucket = f"unversioned-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    rt = runtime_module.runtime(status_rt.settings.replace(bucket=bucket))
    yield rt
    rt.store.dispose()
    delete_bucket(s3, bucket)


def unversioned_upload(s3: Any, rt: Runtime, sample: str, event_time: str) -> ImageRow:
    """Upload ``sample`` to the unversioned bucket's one key, judge it, return its row."""
    from bridge.dispatch import work_for

    bucket, key = rt.settings.bucket, f"{rt.settings.prefix}bad.jpg"
    put = s3.put_object(Bucket=bucket, Key=key, Body=(SAMPLES_DIR / sample).read_bytes())
    row, _ = rt.store.upsert_pending(ObjectEvent(bucket=bucket, key=key, kind="created", event_name="ObjectCreated:Put",
                                                 event_time=event_time, etag=put["ETag"].strip('"')))
    run_tasks(rt, work_for(row))
    return rt.store.get(row.work_id)


def test_approve_in_an_unversioned_bucket_records_without_tagging_bytes_overwritten_since(
    s3: Any, unversioned_rt: Runtime,
) -> None:
    # Given: an unversioned bucket whose blocked object was then overwritten, the new bytes in their own row
    rt = unversioned_rt
    row = unversioned_upload(s3, rt, "known-bad.jpg", "2024-05-01T12:00:00Z")
    newer = unversioned_upload(s3, rt, "meadow.jpg", "2024-05-01T12:05:00Z")
    assert (row.outcome, newer.outcome) == ("blocked", "clean")
    tags_before = s3.get_object_tagging(Bucket=row.bucket, Key=row.key)["TagSet"]
    # When
    result = decide(rt.store, rt.s3, rt.settings, work_id=row.work_id, decision="approved", reviewer="alice")
    # Then: recorded, naming the newer row; the new bytes' tags are left as they were
    because = "the object was overwritten after the event (ObjectSuperseded)"
    assert (result.tags, result.untagged_because, result.newer_work_id) == (None, because, newer.work_id)
    assert rt.store.get(row.work_id).review == "approved"
    assert [r.note for r in rt.store.review_history(row.work_id)] == [f"[no tag changed: {because}]"]
    assert tags_before == [status("clean")]
    assert s3.get_object_tagging(Bucket=row.bucket, Key=row.key)["TagSet"] == tags_before


def test_approve_of_a_key_that_is_not_found_is_refused_and_not_recorded(s3: Any, unversioned_rt: Runtime) -> None:
    # Given: the blocked object deleted with no delete event (a wrong endpoint or bucket answers the same)
    rt = unversioned_rt
    row = unversioned_upload(s3, rt, "known-bad.jpg", "2024-05-01T12:00:00Z")
    s3.delete_object(Bucket=row.bucket, Key=row.key)
    # When / Then
    with pytest.raises(ObjectGoneError) as caught:
        decide(rt.store, rt.s3, rt.settings, work_id=row.work_id, decision="approved", reviewer="alice")
    assert caught.value.error_code == "404"  # HeadObject's answer has no body, so no NoSuchKey code
    assert rt.store.review_history(row.work_id) == []
