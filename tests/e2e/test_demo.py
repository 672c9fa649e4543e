"""`pipeline demo` as a new user runs it: the whole local stack, then the table, then exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT_SECONDS = 240


def test_demo_blocks_the_known_bad_copy_and_passes_the_rest(tmp_path):
    # Given: a working directory of its own and no AWS or broker settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    # When
    done = subprocess.run([sys.executable, "-m", "pipeline", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS)
    # Then
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.startswith(("content/", "elsewhere/"))}
    assert rows == {
        "content/images/demo/known-bad-copy.jpg": "blocked",
        "content/images/demo/meadow.jpg": "clean",
        "content/images/demo/sunset.jpg": "clean",
        "content/images/demo/tiles.png": "clean",
        "content/images/demo/waves.jpg": "clean",
        "elsewhere/known-bad-copy.jpg": "(left",
    }
    blocked = next(line for line in done.stdout.splitlines() if line.startswith("content/images/demo/known-bad-copy.jpg"))
    assert "BlockedContent=true" in blocked and "owner=demo-user" in blocked
    assert "demo passed" in done.stdout
    assert not list(tmp_path.iterdir()), "the demo leaves nothing behind in the working directory"
