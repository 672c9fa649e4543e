"""Ctrl-C during `pipeline backfill`, in a real child process on a moto server: one SIGINT stops after the
batch in hand, a second stops at once; both exit 130 (README: an interruption), never click's 1."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import provision
from pipeline.backfill.checkpoint import Checkpoint
from tests.integration.test_backfill import COMMAND_TIMEOUT_SECONDS, PREFIX, numbered
from tests.integration.test_provision_moto import drain_events

#: `pipeline backfill` whose every SendMessageBatch first says "sending" on stderr, then waits for the
#: file named by argv[1] to exist: the test interrupts it while a batch is in hand.
SLOW_SEND_CHILD = """
import sys, time
from pathlib import Path
from pipeline.backfill import run
from pipeline.cli import cli

release, real_send = Path(sys.argv[1]), run.send_batch

def slow_send(*args, **kwargs):
    print("sending", file=sys.stderr, flush=True)
    while not release.exists():
        time.sleep(0.05)
    return real_send(*args, **kwargs)

run.send_batch = slow_send
cli(sys.argv[2:], prog_name="pipeline")
"""


@pytest.fixture
def env(pipeline_env: dict[str, str], bucket: str) -> dict[str, str]:
    """The child's environment: this test's bucket, queues and report database."""
    return {**pipeline_env, "PIPELINE_BUCKET": bucket}


@pytest.fixture
def child(env: dict[str, str], bucket: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """The slow-send backfill of s3://bucket/content/images/, killed if it outlives the command timeout."""
    argv = [sys.executable, "-c", SLOW_SEND_CHILD, str(tmp_path / "release"), "backfill", f"s3://{bucket}/{PREFIX}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(COMMAND_TIMEOUT_SECONDS, proc.kill)
    guard.start()
    yield proc
    guard.cancel()
    proc.kill()
    proc.wait()


def wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    """Read the child's stderr until a line holding ``text``; fail if it ends first."""
    seen = []
    while line := proc.stderr.readline():
        seen.append(line)
        if text in line:
            return
    pytest.fail(f"the child ended without printing {text!r}: {''.join(seen)}")


def test_one_ctrl_c_sends_the_batch_in_hand_and_exits_130(
    s3: Any, sqs: Any, queues: provision.Queues, bucket: str, tmp_path: Path, child: subprocess.Popen[str],
) -> None:
    # Given: 25 objects, the child in its first send
    keys = numbered(s3, bucket, 25)
    wait_for_line(child, "sending")
    # When: Ctrl-C, then the send goes on
    child.send_signal(signal.SIGINT)
    wait_for_line(child, "stopping after the batch in hand")
    (tmp_path / "release").touch()
    out, err = child.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    # Then: that batch went out whole and the checkpoint names its last key
    assert child.returncode == 130, err
    assert out.splitlines() == ["listed 10, skipped decided 0, skipped filtered 0, sent 10, failed 0",
                                f"stopped (interrupted) after {keys[9]!r}; run the same command to continue"]
    assert sorted(event.key for event in drain_events(sqs, queues.events_url)) == keys[:10]
    assert Checkpoint.for_target(tmp_path / "state", bucket, PREFIX).last_key() == keys[9]


def test_a_second_ctrl_c_stops_at_once_exits_130_and_the_batch_is_sent_on_resume(
    s3: Any, sqs: Any, queues: provision.Queues, bucket: str, tmp_path: Path, env: dict[str, str],
    child: subprocess.Popen[str],
) -> None:
    # Given: 25 objects, the child in its first send
    keys = numbered(s3, bucket, 25)
    wait_for_line(child, "sending")
    # When: Ctrl-C twice
    child.send_signal(signal.SIGINT)
    wait_for_line(child, "stopping after the batch in hand")
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    # Then: 130 with a line saying why, not click's "Aborted!"; nothing sent, no checkpoint
    assert child.returncode == 130, err
    assert err.splitlines()[-1] == ("stopped now: the batch in hand may be sent again when you run the same "
                                    "command (harmless: the bridge drops duplicates)")
    assert "Aborted!" not in err and "Traceback" not in err
    assert drain_events(sqs, queues.events_url) == []
    assert Checkpoint.for_target(tmp_path / "state", bucket, PREFIX).last_key() is None
    # When: run again
    done = subprocess.run([sys.executable, "-m", "pipeline", "backfill", f"s3://{bucket}/{PREFIX}"], env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    # Then: every object is sent, the interrupted batch included
    assert done.returncode == 0, done.stderr
    assert sorted(event.key for event in drain_events(sqs, queues.events_url)) == keys
