"""The seed scenario as a user runs it: `pipeline up --local`, a hash list holding an image, a copy
uploaded with `aws s3 cp`, the tag read back with `aws s3api get-object-tagging`, then Ctrl-C.
With the `model` extra installed (the test extra has it), the local model runs beside the hash list."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from pipeline.local.processes import free_port
from pipeline.report.store import ReportStore
from tests.integration.test_flower_auth import get

pytestmark = pytest.mark.e2e

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "demo" / "samples" / "waves.jpg"
START_TIMEOUT_SECONDS = 90
TAG_TIMEOUT_SECONDS = 30
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for_line(proc: subprocess.Popen, log: Path, marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if marker in text:
            return text
        assert proc.poll() is None, f"pipeline up exited early:\n{text}"
        time.sleep(0.3)
    pytest.fail(f"{marker!r} not printed within {timeout}s:\n{log.read_text()}")


def aws(endpoint: str, *args: str) -> str:
    env = {**os.environ, **AWS_ENV}
    done = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", endpoint, *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tags(endpoint: str, key: str) -> dict[str, str]:
    out = aws(endpoint, "s3api", "get-object-tagging", "--bucket", "moderation-uploads", "--key", key)
    return {t["Key"]: t["Value"] for t in json.loads(out)["TagSet"]}


def test_up_local_tags_a_copy_of_a_listed_image_and_stops_cleanly_on_ctrl_c(tmp_path: Path):
    # Given: the user's own hash list holding one image, and a resized, re-encoded copy of it
    hash_list, copy = tmp_path / "known-bad.json", tmp_path / "copy.jpg"
    subprocess.run([sys.executable, "-m", "pipeline", "hashlist", "add", str(SAMPLE), "--file", str(hash_list)],
                   check=True, capture_output=True)
    with Image.open(SAMPLE) as image:
        image.resize((image.width * 9 // 10, image.height * 9 // 10)).save(copy, quality=70)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    env.update(PIPELINE_HASHLIST_PATH=str(hash_list), PIPELINE_STATE_DIR=str(tmp_path / "state"),
               PIPELINE_FLOWER_PORT=str(free_port()), PIPELINE_METRICS_PORT=str(free_port()))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "up", "--local"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        banner = wait_for_line(proc, log, "export PIPELINE_", START_TIMEOUT_SECONDS)
        endpoint = next(line.split()[1] for line in banner.splitlines() if line.strip().startswith("s3_sqs"))
        children = psutil.Process(proc.pid).children(recursive=True)
        assert_flower_login_and_metrics(banner, tmp_path / "state")
        # When: the copy goes in with `aws s3 cp`, once under the prefix and once outside it
        aws(endpoint, "s3", "cp", str(copy), "s3://moderation-uploads/content/images/holiday copy.jpg")
        aws(endpoint, "s3", "cp", str(copy), "s3://moderation-uploads/drafts/holiday copy.jpg")
        deadline = time.monotonic() + TAG_TIMEOUT_SECONDS
        while tags(endpoint, "content/images/holiday copy.jpg") == {} and time.monotonic() < deadline:
            time.sleep(0.5)
        # Then: tagged, reported, sent for review; the other upload left alone
        assert tags(endpoint, "content/images/holiday copy.jpg") == {"BlockedContent": "true"}
        assert tags(endpoint, "drafts/holiday copy.jpg") == {}
        rows = ReportStore.from_url(f"sqlite:///{tmp_path / 'state' / 'pipeline.db'}").find()
        assert [(r.key, r.outcome) for r in rows] == [("content/images/holiday copy.jpg", "blocked")]
        # ... by the hash list, with the local model running beside it (the `model` extra, no AWS configured)
        assert "detectors     hashlist,local" in banner
        assert rows[0].detector == "hashlist+local"
        hash_version, model_version = rows[0].model_version.split("+")
        assert hash_version.startswith("hashlist-v1:") and model_version.startswith("nudenet-3.4.2:320n:")
        assert [(label["Name"], label["Detector"]) for label in rows[0].labels] == [("Known Bad Content", "hashlist")]
        review = json.loads(aws(endpoint, "sqs", "receive-message", "--queue-url",
                                f"{endpoint}/123456789012/moderation-review"))["Messages"]
        assert [json.loads(m["Body"])["key"] for m in review] == ["content/images/holiday copy.jpg"]
        # ... and the operator line the banner prints lets `pipeline sweep` and `pipeline status` reach this
        # stack from another shell, one with no PIPELINE_ variables of its own
        exports = next(line for line in banner.splitlines() if "export PIPELINE_" in line).split()[1:]
        other_shell = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
        other_shell.update({**AWS_ENV, **dict(item.split("=", 1) for item in exports)})
        sweep = subprocess.run([sys.executable, "-m", "pipeline", "sweep"], capture_output=True, text=True, timeout=120,
                               env=other_shell)
        assert sweep.returncode == 0, sweep.stderr
        assert json.loads(sweep.stdout.splitlines()[-1])["found"] == 0
        status = subprocess.run([sys.executable, "-m", "pipeline", "status", "--format", "json"], capture_output=True,
                                text=True, timeout=120, env=other_shell)
        assert json.loads(status.stdout)["limiter"] == {"available": True, "enabled": False, "state": "not used"}
        assert status.returncode == 0, status.stdout
    finally:
        # When: Ctrl-C
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    # Then: a clean exit, and nothing it started is left running
    assert code == 0, log.read_text()
    time.sleep(1)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert len(children) >= 5  # redis, moto, worker (+ its pool), bridge, flower


def get_status(url: str, credentials: str | None = None) -> int:
    return get(url, credentials)[0]


def assert_flower_login_and_metrics(banner: str, state: Path) -> None:
    """Flower's generated login: the user and the file are printed (never the password); metrics answer."""
    endpoints = dict(line.strip().split(None, 1) for line in banner.splitlines()
                     if line.startswith("  ") and len(line.split()) > 1)
    secret_file = state / "flower-credentials"
    assert endpoints["flower_login"] == f"user pipeline, password in {secret_file.resolve()}"
    credentials = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert credentials.split(":", 1)[1] not in banner
    assert get_status(endpoints["flower"] + "/api/workers") == 401
    assert get_status(endpoints["flower"] + "/api/workers", credentials) == 200
    assert get_status(endpoints["worker_metrics"]) == 200 and get_status(endpoints["bridge_metrics"]) == 200


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["terminal-closed", "supervisor-killed"])
def test_nothing_outlives_the_supervisor(tmp_path: Path, sig: signal.Signals):
    # Given: the local stack running
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    env.update(PIPELINE_STATE_DIR=str(tmp_path / "state"), PIPELINE_FLOWER_PORT=str(free_port()),
               PIPELINE_METRICS_PORT=str(free_port()))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "up", "--local"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_line(proc, log, "flower ", START_TIMEOUT_SECONDS)
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        # When: the terminal closes (SIGHUP) or the supervisor is killed outright
        proc.send_signal(sig)
        proc.wait(60)
    # Then: every process it started goes too
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert [p.pid for p in alive] == [], log.read_text()
    assert len(gone) >= 5
