"""The pure parts of monitoring: Flower's arguments and credentials, liveness, lag, JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.errors import ConfigurationError
from pipeline.logging_setup import formatter
from pipeline.monitoring.flower import flower_argv, local_credentials
from pipeline.monitoring.liveness import Liveness
from pipeline.monitoring.metrics import seconds_since
from pipeline.settings import Settings


def test_flower_gets_basic_auth_from_the_setting() -> None:
    argv = flower_argv(Settings(flower_basic_auth="ops:pw1,viewer:pw2", flower_port=5600))
    assert argv == ["flower", "--address=127.0.0.1", "--port=5600", "--basic-auth=ops:pw1,viewer:pw2"]


def test_flower_without_auth_needs_the_explicit_opt_out() -> None:
    with pytest.raises(ConfigurationError) as caught:
        flower_argv(Settings())
    assert "PIPELINE_FLOWER_BASIC_AUTH" in str(caught.value) and "PIPELINE_FLOWER_UNAUTHENTICATED" in str(caught.value)
    assert flower_argv(Settings(flower_unauthenticated=True)) == ["flower", "--address=127.0.0.1", "--port=5555"]


def test_local_credentials_are_random_private_and_kept(tmp_path: Path) -> None:
    # When: made twice in the same state directory, and once in another
    (tmp_path / "other").mkdir()
    first, again = local_credentials(tmp_path), local_credentials(tmp_path)
    other = local_credentials(tmp_path / "other")
    # Then
    assert first == again and first.user == "pipeline" and len(first.password) >= 32
    assert other.password != first.password
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert first.path.read_text() == f"pipeline:{first.password}\n"
    assert first.password not in repr(first)


def test_liveness_is_dead_before_the_first_beat_and_after_max_age() -> None:
    now = [100.0]
    liveness = Liveness(30.0, clock=lambda: now[0])
    assert not liveness.alive()
    liveness.beat(sender="heart")  # a Celery signal receiver takes arguments
    now[0] += 30.0
    assert liveness.alive()
    now[0] += 0.5
    assert not liveness.alive()


@pytest.mark.parametrize(("event_time", "expected"), [
    ("2024-05-14T09:30:00.000Z", 2.5),
    ("2024-05-14T09:30:02.500Z", 0.0),
    ("2024-05-14T09:30:05Z", 0.0),  # the event's clock ahead of ours: never negative
    ("yesterday", None),
])
def test_seconds_since_an_s3_event_time(event_time: str, expected: float | None) -> None:
    now = datetime(2024, 5, 14, 9, 30, 2, 500000, tzinfo=timezone.utc)
    assert seconds_since(event_time, now) == expected


def test_json_log_lines_carry_the_extra_fields() -> None:
    # Given
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("test.monitoring.json")
    logger.addHandler(handler)
    logger.propagate = False
    # When
    logger.warning("decision %s s3://b/k", "blocked",
                   extra={"bucket": "b", "key": "photos/é 1.jpg", "version_id": None, "outcome": "blocked", "work_id": "w1"})
    # Then
    line = json.loads(out.getvalue())
    assert (line["message"], line["level"], line["logger"]) == ("decision blocked s3://b/k", "WARNING", "test.monitoring.json")
    assert {k: line[k] for k in ("bucket", "key", "version_id", "outcome", "work_id")} == {
        "bucket": "b", "key": "photos/é 1.jpg", "version_id": None, "outcome": "blocked", "work_id": "w1"}
    assert "time" in line and "process" in line
