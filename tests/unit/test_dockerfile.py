"""The Dockerfile, linted by hadolint and read with BuildKit's parser (no Docker engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import dockerfile
import pytest

from pipeline.monitoring.liveness import BRIDGE_MAX_AGE_SECONDS, WORKER_MAX_AGE_SECONDS
from pipeline.settings import Settings
from tests.deployment import (
    DOCKERFILE,
    ENV_EXAMPLE,
    MIN_PROBE_TIMEOUT_SECONDS,
    ROOT,
    START_UP_ALLOWANCE_SECONDS,
    cli_commands,
    duration_seconds,
    image_environment,
    image_venv,
    read_env_file,
)

#: Names that would put a secret into an image layer or its history.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|AUTH|ACCESS_KEY|BROKER_URL|DATABASE_URL", re.I)


@pytest.fixture(scope="module")
def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def final_stage(commands: list[dockerfile.Command]) -> list[dockerfile.Command]:
    starts = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    return commands[starts[-1]:]


def only(commands: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    (found,) = [c for c in commands if c.cmd == cmd]
    return found


def build_arg_defaults(commands: list[dockerfile.Command]) -> dict[str, str]:
    return dict(c.value[0].split("=", 1) for c in commands if c.cmd == "ARG" and "=" in c.value[0])


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: install the test extra"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_is_python_311_slim(commands):
    assert build_arg_defaults(commands)["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [c.value[0] for c in commands if c.cmd == "FROM"] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_runs_as_a_numeric_non_root_user(commands):
    user = only(final_stage(commands), "USER").value[0]
    uid, gid = user.split(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) >= 1000


def test_the_venv_comes_first_on_path_and_is_what_the_final_stage_copies(commands):
    venv = image_venv()
    assert venv == "/opt/pipeline"
    assert image_environment()["PATH"].split(":")[0] == f"{venv}/bin"  # `pipeline` and `python` are the venv's
    copies = [c.value for c in final_stage(commands) if c.cmd == "COPY" and c.flags == ("--from=build",)]
    assert copies == [(venv, venv)]


def test_entrypoint_is_the_pipeline_command_and_cmd_a_registered_one(commands):
    stage = final_stage(commands)
    entrypoint, cmd = only(stage, "ENTRYPOINT"), only(stage, "CMD")
    assert entrypoint.json and entrypoint.value == ("pipeline",)
    assert cmd.json and cmd.value[0] in cli_commands()


def test_extras_come_from_a_build_arg_defaulting_to_postgres(commands):
    assert build_arg_defaults(commands)["EXTRAS"] == "postgres"
    installs = [c.value[0] for c in commands if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert installs == ['/opt/pipeline/bin/pip install ".[${EXTRAS}]"']
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for chosen in ("postgres", read_env_file(ENV_EXAMPLE)["EXTRAS"]):
        assert set(chosen.split(",")) <= set(extras), chosen


def test_no_secret_is_baked_in(commands):
    for command in commands:
        if command.cmd in ("ENV", "ARG", "LABEL"):
            names = command.value[::2] if command.cmd != "ARG" else [command.value[0].split("=")[0]]
            assert not [n for n in names if SECRET_NAME.search(n)], command.original
    copies = [c.value for c in commands if c.cmd == "COPY" and not c.flags]
    assert copies == [("pyproject.toml", "README.md", "./"), ("pipeline", "./pipeline"), ("bridge", "./bridge")]
    # The build context itself holds nothing else (.env, secrets.env, .venv and .git stay out).
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!pipeline/", "!bridge/"}


def test_healthcheck_asks_healthz_on_the_default_metrics_port(commands):
    healthcheck = only(final_stage(commands), "HEALTHCHECK")
    script = healthcheck.value[-1]
    assert "/healthz" in script and "urllib.request" in script
    (default,) = re.findall(r"'PIPELINE_METRICS_PORT', '(\d+)'", script)
    assert int(default) == Settings().metrics_port


def test_healthcheck_timing_covers_start_up_and_the_longest_healthz_max_age(commands):
    healthcheck = only(final_stage(commands), "HEALTHCHECK")
    options = dict(re.findall(r"--([a-z-]+)=(\w+)", healthcheck.original))
    assert duration_seconds(options["start-period"]) >= START_UP_ALLOWANCE_SECONDS
    assert duration_seconds(options["interval"]) * int(options["retries"]) > max(WORKER_MAX_AGE_SECONDS,
                                                                                 BRIDGE_MAX_AGE_SECONDS)
    assert duration_seconds(options["timeout"]) >= MIN_PROBE_TIMEOUT_SECONDS


def test_containers_listen_on_every_interface_and_keep_state_where_volumes_go():
    env = image_environment()
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("PIPELINE_")})
    assert settings.metrics_address == settings.flower_address == "0.0.0.0"
    assert settings.state_dir == "/var/lib/pipeline"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only in Kubernetes


def test_the_build_context_builds_the_whole_package(tmp_path):
    # Given: only what .dockerignore lets into the build context (its `!` lines), as `docker build` sends it
    context = tmp_path / "context"
    allowed = [p[1:].rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines() if p.startswith("!")]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=ignore)
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(source, context / name)
    # When: the Dockerfile's pip install builds it (here as a wheel, with this venv's setuptools, offline)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp_path / "dist"), str(context)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Then: the code, the migrations and the `pipeline` command are all in it
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        assert "pipeline = pipeline.cli:main" in archive.read(entry_points).decode()
    assert {"pipeline/cli.py", "bridge/poller.py", "pipeline/report/alembic.ini",
            "pipeline/demo/known-bad-hashes.json"} <= names
    migrations = {n for n in names if n.startswith("pipeline/report/migrations/versions/") and n.endswith(".py")}
    in_repo = {str(p.relative_to(ROOT)) for p in (ROOT / "pipeline/report/migrations/versions").glob("*.py")}
    assert migrations == in_repo and migrations
