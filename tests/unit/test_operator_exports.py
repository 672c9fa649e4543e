"""The ``export ...`` line of ``pipeline up --local``: another shell that runs it sees the stack's settings."""

from __future__ import annotations

import shlex
from pathlib import Path

from pipeline.cli import _print_endpoints
from pipeline.local.stack import LocalStack
from pipeline.monitoring.snapshot import LIMITER_NOT_USED, limiter_absent
from pipeline.settings import Settings

ENDPOINTS = {"s3_sqs": "http://127.0.0.1:4566", "redis": "redis://127.0.0.1:6390/0", "bucket": "s3://uploads/content/"}


def test_the_export_line_carries_every_setting_operator_commands_need(tmp_path: Path, capsys) -> None:
    # Given: a local stack (hash list detector) started from a shell with a prefix of its own and two secrets
    base_env = {"PATH": "/usr/bin", "PIPELINE_STATE_DIR": str(tmp_path), "PIPELINE_PREFIX": "photos/",
                "PIPELINE_FLOWER_BASIC_AUTH": "ops:s3cret", "PIPELINE_RATELIMIT_URL": "redis://:s3cret@10.0.0.1:6379/1"}
    stack = LocalStack(Settings.from_env(base_env, local=True), base_env)
    stack.endpoints = dict(ENDPOINTS)
    # When
    _print_endpoints(ENDPOINTS, True, operator_env=stack.operator_env())
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("export PIPELINE_")]
    exported = dict(item.split("=", 1) for item in shlex.split(line)[1:])
    # Then: another shell with only these variables reads the stack's settings
    other_shell = Settings.from_env(exported)
    assert other_shell.detectors == stack.settings.detectors and "rekognition" not in other_shell.detectors
    assert other_shell.database_url == stack.settings.database_url
    assert other_shell.hashlist_path == str(Path(stack.settings.hashlist_path).resolve())
    assert other_shell.effective_broker_url == ENDPOINTS["redis"]
    assert (exported["AWS_ENDPOINT_URL_S3"], exported["AWS_ENDPOINT_URL_SQS"]) == (ENDPOINTS["s3_sqs"],) * 2
    assert limiter_absent(other_shell) == LIMITER_NOT_USED
    assert other_shell.prefix == "photos/"
    assert "s3cret" not in line and not {"PIPELINE_FLOWER_BASIC_AUTH", "PIPELINE_RATELIMIT_URL"} & set(exported)
