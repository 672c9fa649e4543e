"""deploy/kubernetes/: strict schema validation offline, the KEDA fields, and agreement with the code.

No cluster and no kustomize here: kubernetes-validate checks each manifest against the Kubernetes
schemas it bundles; KEDA's custom resources, which it has no schema for, are checked field by field.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from pipeline.monitoring.liveness import BRIDGE_MAX_AGE_SECONDS, WORKER_MAX_AGE_SECONDS
from pipeline.settings import Settings
from tests.deployment import (
    KUBERNETES_DIR,
    MIN_PROBE_TIMEOUT_SECONDS,
    START_UP_ALLOWANCE_SECONDS,
    ROOT,
    boto3_region,
    cli_commands,
    embeds_beat,
    image_user,
    kubernetes_objects,
    known_variables,
    load_kubernetes,
    longest_task_seconds,
    option_value,
    pipeline_variables,
    pod_environment,
    read_env_file,
    secret_keys,
    worker_cap,
)

KEDA_API = "keda.sh/v1alpha1"
#: The redis (lists) scaler's trigger metadata, from KEDA's docs (keda.sh/docs/scalers/redis-lists/,
#: "Parameter list"); hosts, ports and addresses are the cluster and sentinel variants' spellings.
KEDA_REDIS_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "hosts", "ports", "addresses",
    "username", "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "databaseIndex", "enableTLS", "unsafeSsl",
}
STATE_DIR = "/var/lib/pipeline"
DEPLOYED_COMMANDS = {"worker", "bridge", "flower", "beat", "migrate"}
BROKER, DATABASE, FLOWER_AUTH = "PIPELINE_BROKER_URL", "PIPELINE_DATABASE_URL", "PIPELINE_FLOWER_BASIC_AUTH"
#: The secrets each process reads. Beat only sends the sweeper task (the workers run it), so it
#: needs no database; KEDA reads REDIS_PASSWORD from the Secret itself.
SECRETS_BY_POD = {
    "pipeline-worker": {BROKER, DATABASE},
    "pipeline-bridge": {BROKER, DATABASE},
    "pipeline-beat": {BROKER},
    "pipeline-flower": {BROKER, FLOWER_AUTH},
    "pipeline-migrate": {DATABASE},
}


@pytest.fixture(scope="module")
def objects() -> dict:
    return kubernetes_objects()


@pytest.fixture(scope="module")
def environment(objects) -> dict[str, str]:
    """What the worker container gets: the ConfigMap, then its keys of the Secret made from the example."""
    return pod_environment(container(objects, "pipeline-worker"), objects["ConfigMap", "pipeline-settings"]["data"],
                           read_env_file(KUBERNETES_DIR / "secrets.env.example"))


@pytest.fixture(scope="module")
def settings(environment) -> Settings:
    return Settings.from_env(environment)


def pod_specs(objects) -> dict[str, dict]:
    return {name: obj["spec"]["template"]["spec"] for (kind, name), obj in objects.items() if kind in ("Deployment", "Job")}


def container(objects, deployment: str) -> dict:
    (only,) = objects["Deployment", deployment]["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(objects, deployment: str) -> dict[str, str]:
    return objects["Deployment", deployment]["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_kustomization_lists_every_manifest_and_nothing_missing():
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (KUBERNETES_DIR / resource).is_file(), f"kustomization.yaml lists {resource}, which does not exist"
    assert set(resources) == set(load_kubernetes()), "a manifest file kustomization.yaml does not list"
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == "pipeline-secrets" and generator["envs"] == ["secrets.env"]
    assert (KUBERNETES_DIR / "secrets.env.example").is_file()


def test_every_manifest_passes_strict_validation():
    version = kubernetes_validate.latest_version()
    checked = 0
    for name, docs in load_kubernetes().items():
        for doc in docs:
            if doc["apiVersion"] == KEDA_API:
                continue  # no schema bundled for KEDA's custom resources: test_keda_* check them
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked == 17


def test_a_misspelt_field_fails_strict_validation(objects):
    # Strict means unknown fields are errors, so the test above would catch a typo.
    worker = yaml.safe_load(yaml.safe_dump(objects["Deployment", "pipeline-worker"]))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, kubernetes_validate.latest_version(), strict=True)


def test_every_container_runs_a_registered_cli_command(objects):
    registered = cli_commands()
    commands = set()
    for name, spec in pod_specs(objects).items():
        for c in spec["containers"]:
            assert c["image"] == "s3-moderation-pipeline", name  # kustomization.yaml's images: sets the registry
            assert c["args"][0] in registered, f"{name} runs `pipeline {c['args'][0]}`, which is not a command"
            commands.add(c["args"][0])
    assert commands == DEPLOYED_COMMANDS


def test_beat_runs_only_in_the_beat_deployment(objects):
    args = {name: c["args"] for name, spec in pod_specs(objects).items() for c in spec["containers"]}
    assert [name for name, a in args.items() if a[0] == "beat"] == ["pipeline-beat"]
    workers = [a for a in args.values() if a[0] == "worker"]
    assert workers and not [a for a in workers if embeds_beat(a)]


def test_every_pipeline_variable_is_a_real_setting():
    for path in KUBERNETES_DIR.iterdir():
        unknown = pipeline_variables(path.read_text(encoding="utf-8")) - known_variables()
        assert not unknown, f"{path.name} names variables pipeline.settings does not read: {sorted(unknown)}"


def test_each_container_gets_only_the_secrets_its_process_reads(objects):
    secret = read_env_file(KUBERNETES_DIR / "secrets.env.example")
    assert set(secret) == {BROKER, DATABASE, FLOWER_AUTH, "REDIS_PASSWORD"}
    specs = pod_specs(objects)
    assert {name: secret_keys(c) for name, spec in specs.items() for c in spec["containers"]} == SECRETS_BY_POD
    config = objects["ConfigMap", "pipeline-settings"]["data"]
    for name, spec in specs.items():
        for c in spec["containers"]:
            env = pod_environment(c, config, secret)
            Settings.from_env(env)  # each process's settings are valid with only its own secrets
            assert not {key for key in env if key in secret} - SECRETS_BY_POD[name], name


def test_the_configmap_holds_no_secret(objects):
    config = objects["ConfigMap", "pipeline-settings"]["data"]
    secret = read_env_file(KUBERNETES_DIR / "secrets.env.example")
    assert not set(config) & set(secret)
    assert not [key for key in config if re.search(r"PASSWORD|SECRET|TOKEN|BASIC_AUTH|BROKER_URL|DATABASE_URL|RATELIMIT_URL", key)]
    assert not [value for value in config.values() if "change-me" in value or re.search(r"://[^/]*@", value)]


def test_every_aws_process_gets_its_region_from_the_configmap(objects, monkeypatch):
    config = objects["ConfigMap", "pipeline-settings"]["data"]
    assert "AWS_REGION" not in config  # botocore ignores it: Rekognition would have no region
    for name in ("pipeline-worker", "pipeline-bridge"):
        env = pod_environment(container(objects, name), config, read_env_file(KUBERNETES_DIR / "secrets.env.example"))
        assert boto3_region(env, monkeypatch) == config["AWS_DEFAULT_REGION"] == "us-east-1", name


def test_configmap_and_secret_make_valid_settings(settings):
    assert settings.detectors == ("rekognition",)
    assert urlsplit(settings.broker_url).scheme in ("redis", "rediss")
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.state_dir == STATE_DIR and settings.metrics_address == "0.0.0.0"


def test_worker_and_bridge_probe_healthz_on_the_metrics_port(objects, settings):
    for name in ("pipeline-worker", "pipeline-bridge"):
        c = container(objects, name)
        assert c["ports"] == [{"name": "metrics", "containerPort": settings.metrics_port}]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, f"{name} {probe}"
    flower = container(objects, "pipeline-flower")
    assert flower["ports"] == [{"name": "http", "containerPort": settings.flower_port}]
    assert flower["livenessProbe"]["httpGet"] == flower["readinessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "http"}


#: Kubernetes' probe defaults (PodSpec reference).
PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}


def probe(c: dict, kind: str) -> dict:
    return {**PROBE_DEFAULTS, **c[kind]}


def window(p: dict) -> int:
    """Seconds of consecutive failures before the kubelet acts."""
    return p["periodSeconds"] * p["failureThreshold"]


@pytest.mark.parametrize("deployment, max_age", [("pipeline-worker", WORKER_MAX_AGE_SECONDS),
                                                 ("pipeline-bridge", BRIDGE_MAX_AGE_SECONDS)])
def test_probe_timing_leaves_room_for_start_up_and_the_healthz_max_age(objects, deployment, max_age):
    c = container(objects, deployment)
    assert window(probe(c, "startupProbe")) >= START_UP_ALLOWANCE_SECONDS
    # A stuck loop turns /healthz to 503 only after max_age; the kubelet must not act on less.
    assert window(probe(c, "livenessProbe")) > max_age


def test_every_probe_allows_a_slow_answer(objects):
    for name, spec in pod_specs(objects).items():
        for c in spec["containers"]:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind in c:
                    assert probe(c, kind)["timeoutSeconds"] >= MIN_PROBE_TIMEOUT_SECONDS, f"{name} {kind}"


def test_beat_probe_matches_composes_and_its_state_dir(objects, settings):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    probe = container(objects, "pipeline-beat")["livenessProbe"]["exec"]["command"]
    assert probe == compose["services"]["beat"]["healthcheck"]["test"][1:]
    assert f"'{settings.state_dir}/celerybeat-schedule*'" in probe[-1]


def test_every_pod_runs_locked_down_with_writable_emptydirs(objects):
    for name, spec in pod_specs(objects).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        uid, gid = image_user()  # the Dockerfile's USER
        security = spec["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (uid, gid, gid), name
        assert spec["serviceAccountName"].startswith("pipeline"), name
        emptydirs = {v["name"] for v in spec["volumes"] if v.get("emptyDir") == {}}
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert set(c["resources"]) == {"requests", "limits"}, name
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/tmp"] in emptydirs, name
            if name != "pipeline-migrate":
                assert mounts[STATE_DIR] in emptydirs, name


def test_worker_grace_period_covers_a_task_in_hand(objects, settings):
    worker = objects["Deployment", "pipeline-worker"]["spec"]["template"]["spec"]
    # 10 s rate-limit wait + 5 s connect + 30 s read for Rekognition + 10 s for tag and report.
    assert longest_task_seconds(settings) == 55
    assert worker["terminationGracePeriodSeconds"] >= longest_task_seconds(settings)
    assert objects["Deployment", "pipeline-bridge"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_beat_is_one_pod_replaced_by_recreate(objects):
    beat = objects["Deployment", "pipeline-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}


def test_disruption_budgets_cover_workers_and_bridges(objects):
    worker = objects["PodDisruptionBudget", "pipeline-worker"]["spec"]
    bridge = objects["PodDisruptionBudget", "pipeline-bridge"]["spec"]
    assert worker["maxUnavailable"] == 1 and bridge["minAvailable"] == 1
    assert selects(worker["selector"]["matchLabels"], pod_labels(objects, "pipeline-worker"))
    assert selects(bridge["selector"]["matchLabels"], pod_labels(objects, "pipeline-bridge"))
    assert not selects(worker["selector"]["matchLabels"], pod_labels(objects, "pipeline-bridge"))
    assert objects["Deployment", "pipeline-bridge"]["spec"]["replicas"] > bridge["minAvailable"]


def test_unready_pods_never_block_a_node_drain(objects):
    # A broker outage makes every worker and bridge unready: with the default policy (IfHealthyBudget)
    # the budgets would then refuse every eviction.
    budgets = {name: obj["spec"] for (kind, name), obj in objects.items() if kind == "PodDisruptionBudget"}
    assert {name: spec.get("unhealthyPodEvictionPolicy") for name, spec in budgets.items()} == {
        "pipeline-worker": "AlwaysAllow", "pipeline-bridge": "AlwaysAllow"}


def ingress_ports(policy: dict) -> set[int]:
    return {port["port"] for rule in policy["spec"].get("ingress", []) for port in rule["ports"]}


def container_ports(objects, deployment: str) -> set[int]:
    return {port["containerPort"] for port in container(objects, deployment).get("ports", [])}


def test_network_policies_let_only_the_monitoring_namespace_in_and_only_to_served_ports(objects, settings):
    policies = {name: obj for (kind, name), obj in objects.items() if kind == "NetworkPolicy"}
    deployments = [name for kind, name in objects if kind == "Deployment"]
    # Every pipeline pod is isolated for ingress: the namespace-wide policy has no rule at all
    deny = policies.pop("pipeline-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Each other policy: from the monitoring namespace only, to exactly the ports its pods serve
    reached = {}
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"], name
        for rule in spec["ingress"]:
            assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
            assert {port["protocol"] for port in rule["ports"]} == {"TCP"}, name
        for deployment in deployments:
            if selects(spec["podSelector"]["matchLabels"], pod_labels(objects, deployment)):
                assert ingress_ports(policy) == container_ports(objects, deployment), f"{name} -> {deployment}"
                reached[deployment] = ingress_ports(policy)
    assert reached == {"pipeline-worker": {settings.metrics_port}, "pipeline-bridge": {settings.metrics_port},
                       "pipeline-flower": {settings.flower_port}}


def test_worker_and_bridge_roles_come_from_irsa(objects):
    for name in ("pipeline-worker", "pipeline-bridge"):
        account = objects["ServiceAccount", name]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
        assert objects["Deployment", name]["spec"]["template"]["spec"]["serviceAccountName"] == name
    assert "annotations" not in objects["ServiceAccount", "pipeline"]["metadata"]  # beat, Flower, migrate


def test_metrics_service_is_scraped_on_every_worker_and_bridge_pod(objects, settings):
    service = objects["Service", "pipeline-metrics"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert service["spec"]["clusterIP"] == "None"
    selector = service["spec"]["selector"]
    assert [d for d in ("pipeline-worker", "pipeline-bridge", "pipeline-flower", "pipeline-beat")
            if selects(selector, pod_labels(objects, d))] == ["pipeline-worker", "pipeline-bridge"]
    flower = objects["Service", "pipeline-flower"]["spec"]
    assert flower["type"] == "ClusterIP" and selects(flower["selector"], pod_labels(objects, "pipeline-flower"))


def test_keda_scales_the_worker_deployment_on_the_detect_queue(objects, settings, environment):
    scaled = objects["ScaledObject", "pipeline-worker"]
    assert scaled["apiVersion"] == KEDA_API
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"name": "pipeline-worker"}
    assert "replicas" not in objects["Deployment", "pipeline-worker"]["spec"]  # KEDA's to set; apply would reset it
    assert spec["minReplicaCount"] == 1  # tag, report and the sweeper need a worker even with detect empty
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["listName"] == environment["PIPELINE_DETECT_QUEUE"] == settings.detect_queue
    assert int(metadata["listLength"]) > 0
    # The broker's Redis: same host, port and database as PIPELINE_BROKER_URL.
    broker = urlsplit(settings.broker_url)
    assert metadata["address"] == f"{broker.hostname}:{broker.port}"
    assert metadata["databaseIndex"] == broker.path.lstrip("/")
    assert trigger["authenticationRef"] == {"name": "pipeline-redis"}


def test_keda_speaks_tls_exactly_when_the_broker_url_does(objects, settings):
    (trigger,) = objects["ScaledObject", "pipeline-worker"]["spec"]["triggers"]
    tls = {"rediss": "true", "redis": "false"}[urlsplit(settings.broker_url).scheme]
    assert trigger["metadata"].get("enableTLS", "false") == tls
    assert tls == "true"  # the example is ElastiCache's: AUTH needs TLS
    # ... with the certificate checked: kombu's Redis transport would skip the check without it
    assert parse_qs(urlsplit(settings.broker_url).query) == {"ssl_cert_reqs": ["required"]}


def test_keda_trigger_names_only_documented_metadata(objects):
    (trigger,) = objects["ScaledObject", "pipeline-worker"]["spec"]["triggers"]
    unknown = set(trigger["metadata"]) - KEDA_REDIS_METADATA
    assert not unknown, f"keda.yaml: the redis scaler does not read {sorted(unknown)} (a misspelt key is ignored)"
    assert {"listName", "listLength"} <= set(trigger["metadata"])  # the scaler's required keys


def test_keda_reads_the_redis_password_from_the_pipeline_secret(objects):
    auth = objects["TriggerAuthentication", "pipeline-redis"]
    assert auth["apiVersion"] == KEDA_API
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password" and ref["name"] == "pipeline-secrets"
    secret = read_env_file(KUBERNETES_DIR / "secrets.env.example")
    assert urlsplit(secret["PIPELINE_BROKER_URL"]).password == secret[ref["key"]]


def test_worker_cap_is_where_more_workers_would_only_wait_on_the_quota(objects, settings):
    spec = objects["ScaledObject", "pipeline-worker"]["spec"]
    latency = float(objects["ScaledObject", "pipeline-worker"]["metadata"]["annotations"][
        "s3-moderation-pipeline/rekognition-latency-seconds"])
    concurrency = int(option_value(container(objects, "pipeline-worker")["args"], "--concurrency"))
    assert (settings.ratelimit_rate, latency, concurrency) == (50.0, 0.3, 4)
    assert spec["maxReplicaCount"] == worker_cap(settings.ratelimit_rate, latency, concurrency) == 4


def test_worker_cap_formula():
    assert worker_cap(50, 0.3, 4) == 4  # 15 calls in flight / 4 threads = 3.75
    assert worker_cap(50, 0.3, 8) == 2
    assert worker_cap(200, 0.5, 4) == 25
    assert worker_cap(48, 0.25, 4) == 3
