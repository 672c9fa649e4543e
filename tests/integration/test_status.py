"""``pipeline status`` against the test's own Redis (broker and limiter), moto's SQS and a SQLite file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline import provision
from pipeline.local.processes import free_port
from pipeline.ratelimit import RateLimiter, redis_client as limiter_redis
from pipeline.report.store import ReportStore
from tests.integration.test_sweeper import pending_rows

STATUS_TIMEOUT_SECONDS = 60
#: So slow that the halved rate is still 25.0 calls/s (to 3 decimals) when status reads it.
RECOVERY_SECONDS = 10_000_000


def run_status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "status", *args], env=env, capture_output=True,
                          text=True, timeout=STATUS_TIMEOUT_SECONDS)


@pytest.fixture
def status_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return {**pipeline_env, "PIPELINE_RATELIMIT_RECOVERY_SECONDS": str(RECOVERY_SECONDS)}


@pytest.fixture
def known_state(pipeline_app: Any, redis_url: str, report_db_url: str, sqs: Any, queues: provision.Queues) -> None:
    """3 tasks waiting in the detect queue (no worker), 2 pending rows, 1 review message, a confirmed throttle."""
    for n in range(3):
        pipeline_app.send_task("pipeline.detect", args=[{"work_id": f"w{n}"}])
    store = ReportStore.from_url(report_db_url)
    try:
        pending_rows(store, 2, age=120)
    finally:
        store.dispose()
    sqs.send_message(QueueUrl=queues.review_url, MessageBody="{}")
    limiter = RateLimiter(limiter_redis(redis_url), rate=50.0, recovery_seconds=RECOVERY_SECONDS)
    limiter.report_throttle()
    assert limiter.report_throttle() == "cut"  # two throttles within a second: the shared rate is halved


def test_status_json_shows_the_known_state(status_env, known_state):
    # When
    done = run_status(status_env, "--format", "json")
    # Then
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert {role: q["depth"] for role, q in status["broker_queues"]["queues"].items()} == {"detect": 3, "default": 0}
    assert {role: q["depth"] for role, q in status["sqs_queues"]["queues"].items()} == {
        "events": 0, "dead_letter": 0, "review": 1}
    assert status["workers"] == {"available": True, "online": 0, "names": []}
    limiter = status["limiter"]
    assert (limiter["enabled"], limiter["configured_rate"], limiter["current_rate"]) == (True, 50.0, 25.0)
    assert 0 <= limiter["last_cut_age_seconds"] < 60 and 0 <= limiter["last_throttle_age_seconds"] < 60
    assert status["pending"]["rows"] == 2 and 110 < status["pending"]["oldest_age_seconds"] < 600


def test_status_table_shows_the_same_values(status_env, known_state):
    done = run_status(status_env)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert ["broker_queues", "detect", "3", "(detect)"] in lines
    assert ["sqs_queues", "review", "1"] == next(line for line in lines if line[:2] == ["sqs_queues", "review"])[:3]
    assert ["workers", "online", "0"] in lines
    assert ["limiter", "rate", "25", "of", "50", "calls/s"] in lines
    assert ["pending", "rows", "2"] in lines


def test_unreachable_parts_are_shown_with_the_reason_and_exit_1(pipeline_env):
    # Given: the broker (and the limiter's Redis with it) and SQS on ports nothing listens on
    closed = free_port()
    env = {**pipeline_env, "PIPELINE_BROKER_URL": f"redis://:s3cret@127.0.0.1:{closed}/0",
           "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{closed}"}
    # When
    done = run_status(env, "--format", "json")
    # Then: every part that needs them is unavailable, with why; the database still answers
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    for part in ("broker_queues", "sqs_queues", "workers", "limiter"):
        assert status[part]["available"] is False, part
    assert "Connection refused" in status["broker_queues"]["reason"]
    assert status["workers"]["reason"].startswith("broker unreachable")
    assert "Could not connect to the endpoint URL" in status["sqs_queues"]["reason"]
    assert status["pending"] == {"available": True, "rows": 0, "oldest_age_seconds": None}
    assert "Traceback" not in done.stderr and "s3cret" not in done.stdout + done.stderr



def test_one_unreadable_queue_is_shown_on_its_own_and_exits_1(pipeline_env):
    # Given: a review queue that does not exist (as one the role may not read looks to status)
    env = {**pipeline_env, "PIPELINE_REVIEW_QUEUE": pipeline_env["PIPELINE_REVIEW_QUEUE"] + "-missing"}
    # When
    done = run_status(env, "--format", "json")
    table = run_status(env)
    # Then
    assert done.returncode == table.returncode == 1, done.stderr
    queues = json.loads(done.stdout)["sqs_queues"]["queues"]
    assert (queues["events"]["depth"], queues["dead_letter"]["depth"]) == (0, 0)
    assert queues["review"]["available"] is False and "NonExistentQueue" in queues["review"]["reason"]
    review = next(line for line in table.stdout.splitlines() if line.split()[:2] == ["sqs_queues", "review"])
    assert review.split()[2] == "unavailable" and "NonExistentQueue" in review


def test_a_broker_that_does_not_answer_times_out_and_exits_1(pipeline_env, stopped_redis):
    # Given: the broker (and the limiter's Redis with it) accepts connections and never answers
    env = {**pipeline_env, "PIPELINE_BROKER_URL": stopped_redis}
    # When: the subprocess timeout is only the guard against a hang
    done = run_status(env, "--format", "json")
    # Then
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    assert status["broker_queues"]["available"] is False
    assert status["broker_queues"]["reason"].startswith("timed out"), status["broker_queues"]
    assert status["workers"]["reason"].startswith("broker unreachable (timed out")
    assert status["limiter"]["available"] is False and status["limiter"]["reason"].startswith("timed out")
    assert status["sqs_queues"]["available"] is True and status["pending"]["available"] is True
    assert "Traceback" not in done.stderr


def test_without_rekognition_the_limiter_is_not_used_and_the_exit_code_is_0(pipeline_env, tmp_path):
    # Given: a hash-list-only pipeline, as `pipeline up --local` runs it
    hashlist = tmp_path / "hashes.txt"
    hashlist.write_text("")
    env = {**pipeline_env, "PIPELINE_DETECTORS": "hashlist", "PIPELINE_HASHLIST_PATH": str(hashlist)}
    # When
    done, table = run_status(env, "--format", "json"), run_status(env)
    # Then
    assert done.returncode == table.returncode == 0, done.stderr
    assert json.loads(done.stdout)["limiter"] == {"available": True, "enabled": False, "state": "not used"}
    assert ["limiter", "not", "used", "(no", "rekognition", "in", "PIPELINE_DETECTORS)"] in [
        line.split() for line in table.stdout.splitlines()]


def test_a_database_url_that_cannot_work_is_the_pending_part_unavailable(pipeline_env):
    # Given
    env = {**pipeline_env, "PIPELINE_DATABASE_URL": "nonsense"}
    # When
    done = run_status(env, "--format", "json")
    # Then: one line naming the variable; the other parts are still read
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    assert status["pending"]["available"] is False
    assert status["pending"]["reason"].startswith("ConfigurationError: PIPELINE_DATABASE_URL is not usable: ")
    assert "\n" not in status["pending"]["reason"]
    assert status["broker_queues"]["available"] is True and status["sqs_queues"]["available"] is True
    assert "Traceback" not in done.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never accepts: connections complete in the kernel, nothing ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_sqs_and_a_database_that_do_not_answer_time_out_and_exit_1(pipeline_env, silent_port):
    # Given: SQS and PostgreSQL endpoints that accept the connection and never answer
    env = {**pipeline_env, "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{silent_port}",
           "PIPELINE_DATABASE_URL": f"postgresql+psycopg://moderator:s3cret@127.0.0.1:{silent_port}/pipeline"}
    # When: the subprocess timeout is only the guard against a hang
    done = run_status(env, "--format", "json")
    # Then
    assert done.returncode == 1, done.stderr
    status = json.loads(done.stdout)
    assert status["sqs_queues"]["available"] is False and status["sqs_queues"]["reason"].startswith("timed out")
    assert status["pending"]["available"] is False and status["pending"]["reason"].startswith("timed out")
    assert status["broker_queues"]["available"] is True
    assert "s3cret" not in done.stdout + done.stderr
