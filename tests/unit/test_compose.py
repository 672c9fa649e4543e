"""docker-compose.yml and .env.example: the Compose schema, and agreement with the CLI and the settings.

No Docker engine runs here, so the file is validated against the Compose specification's schema
(check-jsonschema's bundled copy, offline) and read for what the code expects of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from celery.beat import Scheduler

from pipeline.monitoring.liveness import BRIDGE_MAX_AGE_SECONDS, WORKER_MAX_AGE_SECONDS
from pipeline.settings import Settings
from tests.deployment import (
    COMPOSE_FILE,
    MIN_PROBE_TIMEOUT_SECONDS,
    START_UP_ALLOWANCE_SECONDS,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    boto3_region,
    cli_commands,
    container_environment,
    duration_seconds,
    embeds_beat,
    image_user,
    interpolate,
    known_variables,
    load_compose,
    longest_task_seconds,
    pipeline_variables,
    read_env_file,
)

PIPELINE_IMAGE = "s3-moderation-pipeline"
#: The entry points a deployment runs (contract between the parts of issue 5).
DEPLOYED_COMMANDS = {"worker", "bridge", "flower", "beat", "migrate", "setup"}
BROKER, DATABASE, FLOWER_AUTH = "PIPELINE_BROKER_URL", "PIPELINE_DATABASE_URL", "PIPELINE_FLOWER_BASIC_AUTH"
AWS_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
SECRETS = {BROKER, DATABASE, FLOWER_AUTH, "POSTGRES_PASSWORD", "AWS_SESSION_TOKEN", *AWS_KEYS}
#: The secrets each pipeline process reads (beat only sends the sweeper task; the workers run it).
SECRETS_BY_SERVICE = {
    "worker": {BROKER, DATABASE, *AWS_KEYS},
    "bridge": {BROKER, DATABASE, *AWS_KEYS},
    "beat": {BROKER},
    "flower": {BROKER, FLOWER_AUTH},
    "migrate": {DATABASE},
    "setup": AWS_KEYS,
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def pipeline_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").startswith(PIPELINE_IMAGE)}


def is_one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def healthcheck_url(service: dict) -> str:
    (url,) = re.findall(r"http://[^'\"]+", " ".join(service["healthcheck"]["test"]))
    return url


def test_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_every_pipeline_service_runs_a_registered_cli_command(compose):
    commands = {name: svc["command"][0] for name, svc in pipeline_services(compose).items()}
    assert set(commands.values()) == DEPLOYED_COMMANDS
    registered = cli_commands()
    for name, command in commands.items():
        assert command in registered, f"service {name} runs `pipeline {command}`, which is not a command"


def test_pipeline_services_run_as_the_images_user(compose):
    uid, gid = image_user()  # the Dockerfile's USER
    users = {name: svc.get("user") for name, svc in pipeline_services(compose).items()}
    assert {name: user for name, user in users.items() if user not in (None, f"{uid}:{gid}")} == {}


def test_beat_runs_only_in_the_beat_service(compose):
    commands = {name: svc["command"] for name, svc in pipeline_services(compose).items()}
    assert [name for name, command in commands.items() if command[0] == "beat"] == ["beat"]
    workers = [command for command in commands.values() if command[0] == "worker"]
    assert workers and not [command for command in workers if embeds_beat(command)]


def test_embedded_beat_is_recognised():
    assert embeds_beat(["worker", "-B"]) and embeds_beat(["worker", "-EB"]) and embeds_beat(["worker", "--beat"])
    assert not embeds_beat(["worker", "--pool", "threads", "-E", "--concurrency", "4"])


@pytest.mark.parametrize("service", ["worker", "bridge", "setup"])
def test_the_aws_processes_get_the_region_from_env_example(compose, dotenv, service, monkeypatch):
    assert "AWS_REGION" not in dotenv  # botocore ignores it: Rekognition would have no region
    env = container_environment(compose["services"][service], dotenv)
    assert boto3_region(env, monkeypatch) == dotenv["AWS_DEFAULT_REGION"] == "us-east-1"


def test_every_pipeline_variable_is_a_real_setting():
    known = known_variables()
    for path in (COMPOSE_FILE, ENV_EXAMPLE, DOCKERFILE):
        unknown = pipeline_variables(path.read_text(encoding="utf-8")) - known
        assert not unknown, f"{path.name} names variables pipeline.settings does not read: {sorted(unknown)}"


def test_every_pipeline_container_gets_valid_settings_pointing_at_the_stack(compose, dotenv):
    for name, service in pipeline_services(compose).items():
        env = container_environment(service, dotenv)
        settings = Settings.from_env(env)
        if BROKER in env:
            assert settings.broker_url == "redis://redis:6379/0", name
        if DATABASE in env:
            assert settings.database_url == "postgresql+psycopg://pipeline:change-me@postgres:5432/pipeline", name
        assert settings.state_dir == "/var/lib/pipeline", name
        assert (settings.bucket, settings.events_queue) == (dotenv["PIPELINE_BUCKET"], dotenv["PIPELINE_EVENTS_QUEUE"]), name


def test_each_container_gets_only_the_secrets_its_process_reads(compose, dotenv):
    received = {name: {key for key, value in container_environment(service, dotenv).items() if key in SECRETS and value}
                for name, service in compose["services"].items() if name in SECRETS_BY_SERVICE}
    assert received == SECRETS_BY_SERVICE
    assert set(pipeline_services(compose)) == set(SECRETS_BY_SERVICE)
    assert not [name for name, service in compose["services"].items() if "env_file" in service]
    # Temporary credentials' token (empty in the example) travels with the keys, and only there
    with_token = {name for name, service in compose["services"].items() if "AWS_SESSION_TOKEN" in service.get("environment", {})}
    assert with_token == {name for name, keys in SECRETS_BY_SERVICE.items() if AWS_KEYS <= keys}


def test_every_setting_in_the_example_reaches_the_containers(compose, dotenv):
    # No env_file: a setting in .env that docker-compose.yml does not name would be dropped silently.
    common = compose["x-pipeline-environment"]
    settings = {key for key in dotenv if key.startswith(("PIPELINE_", "AWS_"))} - SECRETS
    assert settings <= set(common), sorted(settings - set(common))
    assert {key: common[key] for key in settings} == {key: f"${{{key}:-}}" for key in settings}


def test_worker_and_bridge_healthchecks_ask_healthz_on_the_metrics_port(compose, dotenv):
    for name in ("worker", "bridge"):
        service = compose["services"][name]
        settings = Settings.from_env(container_environment(service, dotenv))
        assert healthcheck_url(service) == f"http://127.0.0.1:{settings.metrics_port}/healthz"
        assert settings.metrics_port == 9808 and settings.metrics_address == "0.0.0.0"


def test_flower_healthcheck_and_port_are_flowers_own(compose, dotenv):
    flower = compose["services"]["flower"]
    settings = Settings.from_env(container_environment(flower, dotenv))
    assert healthcheck_url(flower) == f"http://127.0.0.1:{settings.flower_port}/healthcheck"
    assert settings.flower_address == "0.0.0.0"  # inside the container; the host side is loopback
    # Flower's /metrics has no authentication: only this host's loopback reaches it.
    (published,) = flower["ports"]
    assert interpolate(published, dotenv) == f"127.0.0.1:5555:{settings.flower_port}"
    assert settings.flower_basic_auth == dotenv["PIPELINE_FLOWER_BASIC_AUTH"]


@pytest.mark.parametrize("name, max_age", [("worker", WORKER_MAX_AGE_SECONDS), ("bridge", BRIDGE_MAX_AGE_SECONDS)])
def test_healthcheck_timing_leaves_room_for_start_up_and_the_healthz_max_age(compose, name, max_age):
    check = compose["services"][name]["healthcheck"]
    assert duration_seconds(check["start_period"]) >= START_UP_ALLOWANCE_SECONDS
    assert duration_seconds(check["interval"]) * check["retries"] > max_age


def test_every_healthcheck_allows_a_slow_answer_and_gives_up_before_docker_does(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        if "test" not in check:
            continue
        timeout = duration_seconds(check["timeout"])
        assert timeout >= MIN_PROBE_TIMEOUT_SECONDS, name
        # The check's own HTTP timeout ends first, so a slow answer fails cleanly rather than being killed.
        for own in re.findall(r"timeout=(\d+)", " ".join(check["test"])):
            assert int(own) < timeout, name


def test_every_service_has_a_healthcheck_and_waits_on_the_right_condition(compose):
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if is_one_shot(service):
            assert check == {"disable": True}, f"{name} is a one-shot: it is waited for, not health-checked"
        else:
            assert check.get("test"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
        for dependency, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if is_one_shot(services[dependency]) else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"


def test_pipeline_processes_start_after_broker_database_schema_and_local_setup(compose):
    for name in ("worker", "bridge", "beat"):
        depends = compose["services"][name]["depends_on"]
        assert set(depends) == {"redis", "postgres", "migrate", "setup"}, name
        assert depends["setup"]["required"] is False, f"{name}: setup exists only in the local profile"
    assert set(compose["services"]["migrate"]["depends_on"]) == {"postgres"}


def test_redis_persists_its_data_and_postgres_keeps_a_volume(compose):
    redis, postgres = compose["services"]["redis"], compose["services"]["postgres"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["volumes"] == ["redis-data:/data"] and redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert set(compose["volumes"]) == {"redis-data", "postgres-data"}


def test_beat_runs_exactly_once_and_worker_replicas_are_settable(compose, dotenv):
    assert compose["services"]["beat"]["deploy"]["replicas"] == 1
    replicas = compose["services"]["worker"]["deploy"]["replicas"]
    assert interpolate(replicas, dotenv) == dotenv["WORKER_REPLICAS"] == "2"
    assert interpolate(replicas, {}) == "2"


def test_beat_healthcheck_reads_the_schedule_file_within_celerys_sync_interval(compose, dotenv):
    beat = compose["services"]["beat"]
    settings = Settings.from_env(container_environment(beat, dotenv))
    script = beat["healthcheck"]["test"][-1]
    assert f"'{settings.state_dir}/celerybeat-schedule*'" in script
    (bound,) = re.findall(r"< (\d+)", script)
    # Beat rewrites the file every sync_every seconds, checked after each wake-up (at most an interval).
    assert int(bound) > Scheduler.sync_every + settings.sweep_interval


def test_worker_stop_grace_period_covers_a_task_in_hand(compose, dotenv):
    worker = compose["services"]["worker"]
    settings = Settings.from_env(container_environment(worker, dotenv))
    assert duration_seconds(worker["stop_grace_period"]) >= longest_task_seconds(settings) == 55
    assert duration_seconds(compose["services"]["bridge"]["stop_grace_period"]) == 30


def test_worker_mounts_the_hash_list_its_settings_name(compose, dotenv):
    worker = compose["services"]["worker"]
    settings = Settings.from_env(container_environment(worker, dotenv))
    (mount,) = worker["volumes"]
    source, target, mode = interpolate(mount, dotenv).split(":")
    assert target == settings.hashlist_path and mode == "ro"
    assert (ROOT / source).is_file()


def test_local_profile_runs_moto_5_creates_the_bucket_and_runs_setup(compose, dotenv):
    services = compose["services"]
    local = {name for name, svc in services.items() if "local" in svc.get("profiles", [])}
    assert local == {"moto", "bucket", "setup"}
    assert re.fullmatch(r"motoserver/moto:5\.\d+\.\d+", services["moto"]["image"])
    assert interpolate(services["moto"]["ports"][0], {}) == "127.0.0.1:5000:5000"
    assert services["setup"]["command"] == ["setup"]
    assert services["setup"]["depends_on"] == {"bucket": {"condition": "service_completed_successfully"}}
    assert services["bucket"]["depends_on"] == {"moto": {"condition": "service_healthy"}}
    assert interpolate(services["bucket"]["command"][0], dotenv) == Settings.from_env(dotenv).bucket
    # The example as it stands is the local profile: moto's endpoint, and detectors that need no AWS.
    assert dotenv["AWS_ENDPOINT_URL_S3"] == dotenv["AWS_ENDPOINT_URL_SQS"] == "http://moto:5000"
    assert "AWS_ENDPOINT_URL" not in dotenv  # it would send Rekognition calls to moto
    assert Settings.from_env(dotenv).detectors == ("hashlist", "local")
    assert "model" in dotenv["EXTRAS"].split(",")


def test_example_holds_placeholders_and_git_ignores_the_real_files(dotenv):
    assert dotenv["POSTGRES_PASSWORD"] == "change-me"
    assert dotenv["PIPELINE_FLOWER_BASIC_AUTH"].endswith(":change-me")
    ignored = subprocess.run(["git", "check-ignore", ".env", "deploy/kubernetes/secrets.env"], cwd=ROOT,
                             capture_output=True, text=True)
    assert ignored.stdout.split() == [".env", "deploy/kubernetes/secrets.env"]
    tracked = subprocess.run(["git", "ls-files", ".env.example", ".env"], cwd=ROOT, capture_output=True, text=True)
    assert [Path(p).name for p in tracked.stdout.split()] == [".env.example"]
