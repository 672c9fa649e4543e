"""``pipeline beat`` with PIPELINE_LOG_FORMAT=json: every line it writes is one JSON object (no start-up banner)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.local.processes import Child, python_module

#: Only a guard: beat logs that it is starting within a second or two.
START_GUARD_SECONDS = 60


def test_beat_writes_only_json_lines(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    # Given
    log_path = tmp_path / "beat.log"
    beat = Child("beat", python_module("pipeline", "beat"), {**pipeline_env, "PIPELINE_LOG_FORMAT": "json"},
                 log_path).start()
    # When: it has started (it logs "beat: Starting...") and is stopped
    try:
        deadline = time.monotonic() + START_GUARD_SECONDS
        while "Starting..." not in log_path.read_text() and beat.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        beat.stop()
    # Then
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert any("Starting..." in line for line in lines), lines
    records = [json.loads(line) for line in lines]  # a plain-text line fails here
    assert {"time", "level", "logger", "message"} <= set(records[0])
