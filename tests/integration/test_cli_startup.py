"""Start-up checks: a wrong setting stops a command at once with one line naming the variable."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.local.processes import LOOPBACK

START_TIMEOUT_SECONDS = 60


def run_pipeline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT_SECONDS)


@pytest.mark.parametrize(
    ("command", "variable"),
    [("bridge", "PIPELINE_EVENTS_QUEUE"), ("bridge", "PIPELINE_DEAD_LETTER_QUEUE"), ("worker", "PIPELINE_REVIEW_QUEUE")],
)
def test_a_missing_queue_stops_start_up_naming_its_variable(pipeline_env, command, variable):
    # Given: every setting right but one queue name
    env = {**pipeline_env, variable: "no-such-queue", "PIPELINE_DETECTORS": "rekognition"}
    # When
    done = run_pipeline(env, command)
    # Then
    assert done.returncode == 2
    assert f"{variable}=no-such-queue" in done.stderr and "NonExistentQueue" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PIPELINE_HASHLIST_PATH": "/nonexistent/list.json"}, "PIPELINE_HASHLIST_PATH='/nonexistent/list.json'"),
        ({"PIPELINE_BLOCK_CATEGORIES": "Explict"}, "PIPELINE_BLOCK_CATEGORIES: Explict not a top-level category"),
        ({"PIPELINE_MIN_CONFIDENCE": "abc"}, "PIPELINE_MIN_CONFIDENCE='abc' is invalid"),
        ({"PIPELINE_DATABASE_URL": "notaurl"}, "PIPELINE_DATABASE_URL is not usable"),
        ({"PIPELINE_DATABASE_URL": "sqlite:////nonexistent/dir/x.db"},
         "PIPELINE_DATABASE_URL=sqlite:////nonexistent/dir/x.db: cannot open the report database"),
        ({"PIPELINE_DATABASE_URL": "postgresql+psycopg://moderator:s3cret@127.0.0.1:1/x"},
         "PIPELINE_DATABASE_URL=postgresql+psycopg://moderator:***@127.0.0.1:1/x: cannot open the report database"),
        ({"PIPELINE_BROKER_URL": "redis://:s3cret@127.0.0.1:1/0"},
         "PIPELINE_BROKER_URL=redis://:**@127.0.0.1:1/0: cannot reach the broker"),
        ({"PIPELINE_STATE_DIR": __file__}, "not a directory"),
        ({"PIPELINE_HASHLIST_MAX_DISTANCE": "64"}, "PIPELINE_HASHLIST_MAX_DISTANCE=64 would match every image"),
    ],
)
def test_up_local_refuses_bad_settings_before_starting_anything(pipeline_env, extra, message):
    env = {k: v for k, v in pipeline_env.items() if not k.startswith("PIPELINE_BROKER")} | extra
    done = run_pipeline(env, "up", "--local")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr  # passwords never reach the terminal or logs
    assert "is up" not in done.stdout


def test_hashlist_add_refuses_a_parent_outside_the_taxonomy(tmp_path, pipeline_env):
    image = Path(__file__).resolve().parents[2] / "pipeline" / "demo" / "samples" / "sunset.jpg"
    target = tmp_path / "list.json"
    done = run_pipeline(pipeline_env, "hashlist", "add", str(image), "--file", str(target), "--parent", "Explict")
    assert done.returncode == 2
    assert "'Explict' is not in the moderation taxonomy" in done.stderr
    assert not target.exists()


def test_hashlist_add_with_pdq_writes_a_256_bit_entry_and_refuses_a_flat_image(tmp_path, pipeline_env):
    # Given
    from PIL import Image

    image = Path(__file__).resolve().parents[2] / "pipeline" / "demo" / "samples" / "sunset.jpg"
    flat = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(flat)
    target = tmp_path / "list.json"
    # When
    added = run_pipeline(pipeline_env, "hashlist", "add", str(image), "--file", str(target), "--algorithm", "pdq")
    refused = run_pipeline(pipeline_env, "hashlist", "add", str(flat), "--file", str(target), "--algorithm", "pdq")
    unknown = run_pipeline(pipeline_env, "hashlist", "add", str(image), "--file", str(target), "--algorithm", "md5")
    # Then
    assert added.returncode == 0, added.stderr
    entries = json.loads(target.read_text())["entries"]
    assert [(e["algorithm"], len(e["hash"])) for e in entries] == [("pdq", 64)]
    assert refused.returncode == 1 and "PDQ quality 0 is under 50" in refused.stderr
    assert unknown.returncode == 2 and "unknown hash algorithm 'md5'" in unknown.stderr
    assert len(json.loads(target.read_text())["entries"]) == 1


def test_up_local_refuses_a_flower_port_in_use(pipeline_env):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_pipeline({**pipeline_env, "PIPELINE_FLOWER_PORT": str(port)}, "up", "--local")
    assert done.returncode == 2
    assert f"PIPELINE_FLOWER_PORT={port}: {LOOPBACK}:{port} cannot be bound (in use?)" in done.stderr


@pytest.mark.parametrize("args", [("setup", "--dry-run"), ("status",), ("bridge",)])
def test_no_aws_region_is_one_line_naming_aws_default_region(pipeline_env, tmp_path, args):
    # Given: no region in the environment nor in any AWS config file
    env = {name: value for name, value in pipeline_env.items() if name not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    # When
    done = run_pipeline(env, *args)
    # Then
    assert done.returncode == 2
    assert "configuration error: no AWS region: set AWS_DEFAULT_REGION" in done.stderr
    assert "Traceback" not in done.stderr
