"""Read the deployment files (Dockerfile, docker-compose.yml, deploy/kubernetes/) for their tests.

No Docker engine or cluster runs here: the tests read the files, validate them against their
schemas and check them against the code (CLI commands, settings, timeouts) they must agree with.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.aws import REKOGNITION_CONFIG
from pipeline.settings import Settings, documented_variables

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"

#: Seconds allowed for the tag and report tasks a worker may hold beside a detection (an S3 tagging
#: read and write, a database write and an SQS send: each well under a second when AWS answers).
TAG_AND_REPORT_SECONDS = 10

#: How long a worker or a bridge may take from start to its first healthy /healthz: imports, the
#: schema check and the broker connection (README: "Probes"). Startup budgets must cover it.
START_UP_ALLOWANCE_SECONDS = 60
#: The shortest probe timeout: a Python /healthz under load can take longer than Kubernetes' default 1 s.
MIN_PROBE_TIMEOUT_SECONDS = 2

_VARIABLE = re.compile(r"\bPIPELINE_[A-Z0-9_]+\b")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments on lines of their own, as the examples keep them)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as Compose reads it (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def load_kubernetes() -> dict[str, list[dict[str, Any]]]:
    """Every manifest file of deploy/kubernetes/ (kustomization.yaml apart), file name -> documents."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        for path in sorted(KUBERNETES_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def kubernetes_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object of deploy/kubernetes/, by (kind, name)."""
    return {(doc["kind"], doc["metadata"]["name"]): doc for docs in load_kubernetes().values() for doc in docs}


def pipeline_variables(text: str) -> set[str]:
    """Every ``PIPELINE_*`` name a file mentions."""
    return set(_VARIABLE.findall(text))


def known_variables() -> set[str]:
    """Every variable pipeline.settings reads."""
    return {name for name, _ in documented_variables()}


def cli_commands() -> set[str]:
    """The sub-commands registered on the ``pipeline`` group."""
    from pipeline.cli import cli

    return set(cli.commands)


def longest_task_seconds(settings: Settings) -> float:
    """How long a worker's task in hand can take: the longest rate-limit wait, one Rekognition call
    at its timeouts (botocore makes one attempt), then tag and report."""
    rekognition = REKOGNITION_CONFIG.connect_timeout + REKOGNITION_CONFIG.read_timeout
    return settings.ratelimit_max_wait + rekognition + TAG_AND_REPORT_SECONDS


def worker_cap(rate: float, latency: float, concurrency: int) -> int:
    """Workers worth running against the quota: calls in flight at the full rate, per worker's threads."""
    return math.ceil(rate * latency / concurrency)


def option_value(args: list[str], option: str) -> str:
    """The value after ``option`` in a command's arguments."""
    assert option in args, f"{option} missing from {args}"
    return args[args.index(option) + 1]


def boto3_region(env: dict[str, str], monkeypatch: Any) -> str | None:
    """The region boto3 picks in a process with exactly ``env``'s AWS variables (botocore reads
    AWS_DEFAULT_REGION; it ignores AWS_REGION)."""
    import os

    import boto3

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # no profile's region either
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return boto3.session.Session().region_name


def embeds_beat(args: list[str]) -> bool:
    """True when a ``pipeline worker`` command line asks Celery to run beat inside the worker
    (``-B``, also among combined short flags such as ``-EB``, or ``--beat``)."""
    return any(arg == "--beat" or arg.startswith("--beat=") or (re.fullmatch(r"-[A-Za-z]+", arg) and "B" in arg)
               for arg in args)


def duration_seconds(value: str) -> float:
    """A Compose duration such as ``60s``, ``1m30s`` or ``2m``."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert parts and value, f"not a Compose duration: {value!r}"
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Fill Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` from ``env``."""
    def fill(match: re.Match[str]) -> str:
        name, operator, word = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        assert operator is None or "?" not in operator, f"Compose would stop: {name} unset ({word})"
        return word if operator else ""

    return _INTERPOLATION.sub(fill, value)


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    env: dict[str, str] = {}
    for command in final_stage_commands():
        if command.cmd == "ENV":
            pairs = command.value
            env.update({pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)})
    return env


def final_stage_commands() -> list[Any]:
    """The Dockerfile's instructions from its last FROM on."""
    import dockerfile

    commands = list(dockerfile.parse_file(str(DOCKERFILE)))
    return commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM"):]


def image_user() -> tuple[int, int]:
    """The numeric uid and gid of the final stage's ``USER uid:gid``."""
    (user,) = [c.value[0] for c in final_stage_commands() if c.cmd == "USER"]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid)


def image_venv() -> str:
    """The virtual environment the build stage creates (``RUN python -m venv <path>``)."""
    import dockerfile

    (venv,) = [m[1] for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd == "RUN"
               for m in [re.fullmatch(r"python -m venv (\S+)", c.value[0])] if m]
    return venv


def container_environment(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """What a pipeline container of docker-compose.yml sees: the image's ENV, then its ``environment``
    filled from .env (no service reads .env whole: ``env_file`` is not used)."""
    assert "env_file" not in service, "env_file would hand the container every secret in it"
    env = {k: v for k, v in image_environment().items() if k.startswith("PIPELINE_")}
    env.update({key: interpolate(str(value), dotenv) for key, value in service.get("environment", {}).items()})
    return env


def pod_environment(container: dict[str, Any], config: dict[str, str], secret: dict[str, str]) -> dict[str, str]:
    """What a Kubernetes container sees: its ConfigMaps (``envFrom``), then its ``env`` (a Secret's keys)."""
    assert all("configMapRef" in source for source in container.get("envFrom", [])), "envFrom a Secret: every key"
    env = dict(config)
    for variable in container.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "pipeline-secrets", variable
        env[variable["name"]] = secret[ref["key"]]
    return env


def secret_keys(container: dict[str, Any]) -> set[str]:
    """The keys of a Secret a Kubernetes container reads."""
    return {v["name"] for v in container.get("env", []) if "secretKeyRef" in v.get("valueFrom", {})}
