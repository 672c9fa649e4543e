"""`pipeline review list|approve|reject` in-process (click's runner) on a moto server and a SQLite file:
what it prints, what it records, and its exit codes on bad work ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline import runtime as runtime_module
from pipeline.cli import cli
from pipeline.detectors.base import ImageRef
from pipeline.report import migrate
from pipeline.runtime import Runtime
from tests.integration.test_status_and_review_moto import STATUS_KEY, run_tasks, status
from tests.integration.test_steps_moto import (  # noqa: F401 (fixtures)
    BLOCK_TAG, product_env, settings, stored_tags, upload,
)


@pytest.fixture
def file_rt(product_env: None, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:  # noqa: F811
    """A runtime on a migrated SQLite file, and the environment the `pipeline` command reads for it."""
    url = f"sqlite:///{tmp_path / 'report.db'}"
    migrate.upgrade(url)
    rt = runtime_module.runtime(settings.replace(database_url=url, status_tag_key=STATUS_KEY))
    for name, value in {"PIPELINE_DATABASE_URL": url, "PIPELINE_BUCKET": settings.bucket,
                        "PIPELINE_STATUS_TAG_KEY": STATUS_KEY, "PIPELINE_DETECTORS": "hashlist",
                        "PIPELINE_HASHLIST_PATH": settings.hashlist_path}.items():
        monkeypatch.setenv(name, value)
    yield rt
    rt.store.dispose()
    runtime_module._runtime.cache_clear()


def review(*args: str) -> Result:
    return CliRunner().invoke(cli, ["review", *args])


def test_list_approve_and_reject(s3: Any, file_rt: Runtime) -> None:
    # Given: two blocked images and a clean one
    first = upload(s3, file_rt, "known-bad.jpg")
    second = upload(s3, file_rt, "known-bad-copy.jpg")
    clean = upload(s3, file_rt, "meadow.jpg")
    for work in (first, second, clean):
        run_tasks(file_rt, work)
    # When: listed
    listed = review("list", "--format", "json")
    # Then: the blocked ones, newest first, with their version and labels
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)
    assert [item["work_id"] for item in items] == [second["work_id"], first["work_id"]]
    assert items[1]["url"] == f"s3://{first['image']['bucket']}/{first['image']['key']}"
    assert (items[1]["version_id"], items[1]["labels"]) == (first["image"]["version_id"], ["Known Bad Content (demo)"])
    table = review("list", "--limit", "1")
    assert table.exit_code == 0 and second["work_id"] in table.output and first["work_id"] not in table.output

    # When: one approved, the other rejected
    approved = review("approve", first["work_id"], "--by", "alice", "--note", "false positive")
    rejected = review("reject", second["work_id"], "--by", "bob")
    # Then
    assert approved.exit_code == 0, approved.output
    assert approved.output.startswith(f"approved s3://{first['image']['bucket']}/{first['image']['key']} "
                                      f"version {first['image']['version_id']} by alice at ")
    assert rejected.exit_code == 0, rejected.output
    assert stored_tags(s3, first["image"]) == [status("clean")]
    assert stored_tags(s3, second["image"]) == [BLOCK_TAG, status("blocked")]
    row = file_rt.store.get(first["work_id"])
    assert (row.review, row.reviewed_by, row.outcome) == ("approved", "alice", "blocked")
    assert [(r.decision, r.note) for r in file_rt.store.review_history(first["work_id"])] == [("approved", "false positive")]
    assert json.loads(review("list", "--format", "json").output) == []
    assert review("list").output == "nothing awaits review\n"


def test_bad_work_ids_exit_1_with_a_clear_message(s3: Any, file_rt: Runtime) -> None:
    clean = upload(s3, file_rt, "meadow.jpg")
    run_tasks(file_rt, clean)

    unknown = review("approve", "f" * 64, "--by", "alice")
    not_flagged = review("reject", clean["work_id"], "--by", "alice")

    assert (unknown.exit_code, not_flagged.exit_code) == (1, 1)
    assert f"no image with work id '{'f' * 64}'" in unknown.output
    assert f"work id {clean['work_id']} is clean, not flagged for review" in not_flagged.output
    assert file_rt.store.review_history(clean["work_id"]) == []


def test_a_decision_on_a_version_gone_since_is_recorded_and_leaves_the_list(s3: Any, file_rt: Runtime) -> None:
    # Given: a blocked version deleted since, and a newer upload of the key with its own row
    blocked = upload(s3, file_rt, "known-bad.jpg")
    run_tasks(file_rt, blocked)
    image = ImageRef.from_dict(blocked["image"])
    s3.delete_object(Bucket=image.bucket, Key=image.key, VersionId=image.version_id)
    newer = upload(s3, file_rt, "meadow.jpg", key=image.key)
    run_tasks(file_rt, newer)
    assert [item["work_id"] for item in json.loads(review("list", "--format", "json").output)] == [blocked["work_id"]]
    # When
    gone = review("approve", blocked["work_id"], "--by", "alice")
    # Then: exit 0, a line saying no tag changed and naming the newer row; nothing awaits review
    assert gone.exit_code == 0, gone.output
    assert gone.output.splitlines()[1] == (
        "no tag changed: the judged version was deleted (NoSuchVersion); the decision is recorded; "
        f"the newer upload is work id {newer['work_id']}")
    assert review("list").output == "nothing awaits review\n"
    assert file_rt.store.get(blocked["work_id"]).reviewed_by == "alice"
    assert stored_tags(s3, newer["image"]) == [status("clean")]
