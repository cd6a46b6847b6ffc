"""The Kubernetes manifests: deploy/kubernetes, a kustomize base and overlays dev and production.

No cluster runs where the suite runs, so nothing here is applied. Each overlay is built as an
operator builds it (`kubectl kustomize`), the result is validated against the Kubernetes API's
schemas (`kubernetes-validate --strict`: an unknown or misplaced field fails), and it is checked
against the code and against docker-compose.yml, the checked reference: the same commands as
the test suite runs, settings that exist (every name a manifest sets is one the service's
config.py reads) with the services' own defaults, the health checks as probes, only web
reachable, a Secret for every credential, and the rules an operator would otherwise find out
about on a cluster: limits, security contexts, network policies, the kernel's drain.

kubectl and kubernetes-validate come with the dev dependencies (`make install`): no machine
here is sure to have kubectl. Without them these tests fail (never skip).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import NoPermissionError
from ruamel.yaml import YAML

from cellbus_kernel.config import KernelSettings
from cellbus_protocol import acl
from cellbus_protocol.settings import env_names, settings_from_env

from ..support.private_redis import PrivateRedis
from .test_compose import (
    MODULES,
    SETTINGS,
    _modules_started_by_the_test_stack,
    _services,
)

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
BIN = Path(sys.executable).parent
NAMESPACE = "cellbus"

SAMPLE_SECRET = {
    "REDIS_PASSWORD": "k8sredisadminpassword",
    "REDIS_KERNEL_PASSWORD": "k8sredis4kernels",
    "REDIS_WEB_PASSWORD": "k8sredis4webservice",
    "REDIS_ACCOUNTS_PASSWORD": "k8sredis4accounts",
    "KERNEL_REDIS_URL": "redis://kernel:k8sredis4kernels@redis:6379/0",
    "WEB_REDIS_URL": "redis://web:k8sredis4webservice@redis:6379/0",
    "ACCOUNTS_REDIS_URL": "redis://accounts:k8sredis4accounts@redis:6379/0",
    "POSTGRES_PASSWORD": "k8s-postgres-password",
    "DATABASE_URL": "postgresql://cellbus@postgres:5432/cellbus",
    "PGPASSWORD": "k8s-postgres-password",
    "CELLBUS_SECRET": "k8scheckpointsecret",
}
"""Values for the keys of the Secret `cellbus`, to resolve what the pods would see."""

NOT_DEFAULTS: dict[str, set[tuple[str, str]]] = {
    "base": {
        # Fixed by the deployment, as in docker-compose.yml.
        ("kernel", "CELLBUS_SESSION_USER"),
        ("kernel", "CELLBUS_SESSIONS_DIR"),
        ("kernel", "CELLBUS_WORKSPACES_DIR"),
        ("kernel", "CELLBUS_PARALLEL_HOST"),
        ("web", "CELLBUS_HOST"),
        ("web", "CELLBUS_WORKSPACES_DIR"),
        # 0 means the node's cores, not the pod's: the container's CPU limit instead.
        ("kernel", "CELLBUS_PARALLEL_CORES"),
    },
    "dev": {
        ("kernel", "CELLBUS_MAX_SESSIONS"),
        ("kernel", "CELLBUS_MEMORY_LIMIT_MB"),
        ("kernel", "CELLBUS_PARALLEL_MAX_WORKERS"),
        ("kernel", "CELLBUS_PARALLEL_MAX_WORKERS_PER_USER"),
    },
    "production": {
        ("web", "CELLBUS_PUBLIC_ORIGINS"),
        ("web", "CELLBUS_SECURE_COOKIES"),
    },
}
"""Settings whose value differs from config.py's default on purpose (see the comments in the
kustomization files), per overlay on top of the base's."""

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
"""What the "baseline" Pod Security Standard lets a container add (the runtime's defaults)."""


# -- building --------------------------------------------------------------------------------


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make install` (a dev dependency of the project)")
    return path


@functools.cache
def _built_text(overlay: str) -> str:
    result = subprocess.run(
        [str(_tool("kubectl")), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _build(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(_built_text(overlay)) if doc]


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**_of_kind(docs, "Deployment"), **_of_kind(docs, "StatefulSet")}


def _pod(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    pod: dict[str, Any] = _of_kind(docs, "Deployment")[f"cellbus-{service}"]["spec"]["template"]
    return pod


def _container(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    containers = _pod(docs, service)["spec"]["containers"]
    assert len(containers) == 1, service
    container: dict[str, Any] = containers[0]
    return container


def _all_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(workload/container, container, is an init container) of every pod in the build."""
    for name, workload in _workloads(docs).items():
        spec = workload["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []):
            yield f"{name}/{container['name']}", container, True
        for container in spec["containers"]:
            yield f"{name}/{container['name']}", container, False


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the container's environment resolves to, the Secret's keys from SAMPLE_SECRET."""
    maps = _of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps come in whole: {source}"
        env.update(maps[source["configMapRef"]["name"]]["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "cellbus", entry
            env[entry["name"]] = SAMPLE_SECRET[ref["key"]]
    return env


def _config_map(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The data of generated ConfigMap `name` (built, its name has a hash of its contents)."""
    (data,) = [
        m["data"]
        for n, m in _of_kind(docs, "ConfigMap").items()
        if re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", n)
    ]
    return dict(data)


def _settings_map(docs: list[dict[str, Any]], service: str) -> dict[str, str]:
    return _config_map(docs, f"cellbus-{service}-settings")


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity (cpu or bytes) as a number."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# -- the validators --------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_builds_and_the_api_schemas_accept_it_strictly(
    overlay: str, tmp_path: Path
) -> None:
    built = tmp_path / f"{overlay}.yaml"
    built.write_text(_built_text(overlay))
    result = subprocess.run(
        [str(_tool("kubernetes-validate")), "--strict", "--quiet", str(built)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in _build(overlay)}
    assert {"Deployment", "Service", "Ingress", "PersistentVolumeClaim"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Namespace"} <= kinds
    assert {d["metadata"].get("namespace", NAMESPACE) for d in _build(overlay)} == {NAMESPACE}


def test_the_validator_rejects_what_the_api_would() -> None:
    """--strict must see a misplaced field, or the test above proves nothing."""
    bad = _built_text("dev").replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1)
    result = subprocess.run(
        [str(_tool("kubernetes-validate")), "--strict", "--quiet", "-"],
        input=bad, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout


# -- against the code and the compose file ---------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_run_exactly_the_commands_the_test_suite_runs(overlay: str) -> None:
    docs = _build(overlay)
    deployments = {n for n in _of_kind(docs, "Deployment") if n.startswith("cellbus-")}
    assert deployments == {f"cellbus-{name}" for name in MODULES}
    for name, module in MODULES.items():
        assert _container(docs, name)["command"] == ["python", "-P", "-m", module], name
    assert _modules_started_by_the_test_stack() == set(MODULES.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_set_is_one_the_service_reads_and_parses(overlay: str) -> None:
    """Each CELLBUS_* name a container gets is one its config.py reads, and every value
    converts; the ones a deployment must set are there, with compose's values."""
    docs = _build(overlay)
    settings: dict[str, Any] = {}
    for name, cls in SETTINGS.items():
        environment = _environment(docs, _container(docs, name))
        cellbus = {k for k in environment if k.startswith("CELLBUS_")}
        assert cellbus <= set(env_names(cls)), (name, cellbus - set(env_names(cls)))
        settings[name] = settings_from_env(cls, environment)  # raises on a wrong kind of value
        assert {"CELLBUS_REDIS_URL", "CELLBUS_NAMESPACE", "CELLBUS_LOG_LEVEL"} <= cellbus, name
    compose = {n: s["environment"] for n, s in _services().items()}
    web, kernel, accounts = settings["web"], settings["kernel"], settings["accounts"]
    assert (web.host, str(web.port)) == (compose["web"]["CELLBUS_HOST"], "8888")
    assert kernel.session_user == "cellbus-session"
    assert kernel.secret == SAMPLE_SECRET["CELLBUS_SECRET"]
    assert "CELLBUS_WORKER_ID" not in _environment(docs, _container(docs, "kernel"))
    for folder in ("CELLBUS_SESSIONS_DIR", "CELLBUS_WORKSPACES_DIR"):
        assert _settings_map(docs, "kernel")[folder] == compose["kernel"][folder]
    assert (
        _settings_map(docs, "web")["CELLBUS_WORKSPACES_DIR"]
        == (compose["web"]["CELLBUS_WORKSPACES_DIR"])
    )
    assert accounts.database_url == SAMPLE_SECRET["DATABASE_URL"]
    # One namespace for every service (and Redis's ACL patterns): one ConfigMap holds it.
    assert len({s.namespace for s in settings.values()}) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_values_are_the_services_defaults_but_those_changed_on_purpose(overlay: str) -> None:
    docs = _build(overlay)
    deliberate = NOT_DEFAULTS["base"] | NOT_DEFAULTS[overlay]
    checked = 0
    for name, cls in SETTINGS.items():
        defaults = {
            env: field.default
            for env, field in zip(env_names(cls), dataclasses.fields(cls), strict=True)
        }
        values = {**_settings_map(docs, name), **_config_map(docs, "cellbus-common")}
        for key, value in values.items():
            parsed = getattr(settings_from_env(cls, {key: value}), key[len("CELLBUS_") :].lower())
            if (name, key) in deliberate:
                assert parsed != defaults[key], f"{name}: {key} is the default: not deliberate"
                continue
            assert parsed == defaults[key], (name, key, value, defaults[key])
            checked += 1
    assert checked >= 50


# -- what the pods are ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_web_is_reachable_from_outside(overlay: str) -> None:
    docs = _build(overlay)
    services = _of_kind(docs, "Service")
    for name, service in services.items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
    selecting = {
        service["spec"]["selector"]["app.kubernetes.io/component"] for service in services.values()
    }
    assert selecting & set(MODULES) == {"web"}
    assert selecting - {"web"} == ({"redis", "postgres"} if overlay == "dev" else set())
    ingresses = list(_of_kind(docs, "Ingress").values())
    assert len(ingresses) == 1
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingresses[0]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"cellbus-web"}
    web = services["cellbus-web"]["spec"]["ports"]
    assert [p["targetPort"] for p in web] == ["http"]
    assert {p["name"]: p["containerPort"] for p in _container(docs, "web")["ports"]} == {
        "http": 8888
    }
    for workload in _workloads(docs).values():
        spec = workload["spec"]["template"]["spec"]
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), workload["metadata"]
        for container in spec["containers"]:
            assert all("hostPort" not in p for p in container.get("ports", []))
    # WebSocket-ready: idle sockets outlive the web's pings; bodies up to the upload limit.
    annotations = ingresses[0]["metadata"]["annotations"]
    ping = float(_settings_map(docs, "web")["CELLBUS_PING_INTERVAL"])
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) > 3 * ping
    upload_mb = int(_settings_map(docs, "web")["CELLBUS_MAX_UPLOAD_MB"])
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{upload_mb}m"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_and_limits(overlay: str) -> None:
    docs = _build(overlay)
    for name, container, init in _all_containers(docs):
        if not init:
            assert container.get("readinessProbe"), f"{name}: no readiness probe"
            assert container.get("livenessProbe"), f"{name}: no liveness probe"
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request = _quantity(resources["requests"][kind])
            limit = _quantity(resources["limits"][kind])
            assert 0 < request <= limit, (name, kind)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_the_services_health_checks(overlay: str) -> None:
    docs = _build(overlay)
    compose = _services()
    for name in ("accounts", "kernel"):
        command = compose[name]["healthcheck"]["test"][1:]  # without "CMD"
        container = _container(docs, name)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"] == command, (name, probe)
            # The check gives up after 5 s (CHECK_TIMEOUT); the probe must wait for that.
            assert container[probe]["timeoutSeconds"] > 5, (name, probe)
    web = _container(docs, "web")
    for probe in ("readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "http://127.0.0.1:8888/healthz" in " ".join(compose["web"]["healthcheck"]["test"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_are_as_tight_as_each_service_allows(overlay: str) -> None:
    docs = _build(overlay)
    for name, workload in _workloads(docs).items():
        spec = workload["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = {**spec["securityContext"], **container.get("securityContext", {})}
            where = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert not context.get("privileged"), where
            assert context["capabilities"]["drop"] == ["ALL"], where
            added = set(context["capabilities"].get("add", []))
            if name == "cellbus-kernel":
                assert added <= BASELINE_CAPABILITIES, where
                continue
            assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where
            assert not added, where
    # The kernel: root only to drop each session to cellbus-session, with only the
    # capabilities that takes; user code never gets them (docs/deploy.md).
    kernel = _container(docs, "kernel")
    assert set(kernel["securityContext"]["capabilities"]["add"]) == {
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID",
    }  # fmt: skip
    assert kernel["securityContext"]["runAsUser"] == 0
    assert _environment(docs, kernel)["CELLBUS_SESSION_USER"] == "cellbus-session"
    assert _services()["kernel"]["user"] == "root"
    namespace = _of_kind(docs, "Namespace")[NAMESPACE]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kernel_and_web_share_one_read_write_many_workspaces_volume(overlay: str) -> None:
    docs = _build(overlay)
    claims = _of_kind(docs, "PersistentVolumeClaim")
    assert claims["cellbus-workspaces"]["spec"]["accessModes"] == ["ReadWriteMany"]
    kernel_image = (ROOT / "services/kernel/Dockerfile").read_text()
    session_uid = re.search(r"useradd [^&]*--uid (\d+)[^&]* cellbus-session", kernel_image)
    assert session_uid is not None
    for name in ("kernel", "web", "accounts"):
        pod = _pod(docs, name)["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {
            m["mountPath"]: volumes[m["name"]]
            for c in pod.get("initContainers", []) + pod["containers"]
            for m in c.get("volumeMounts", [])
        }
        folder = _environment(docs, _container(docs, name)).get("CELLBUS_WORKSPACES_DIR")
        if name == "accounts":
            assert folder is None
            assert all("persistentVolumeClaim" not in v for v in volumes.values())
            continue
        assert folder is not None
        assert mounts[folder]["persistentVolumeClaim"]["claimName"] == "cellbus-workspaces"
    # The web reads and writes the workspaces as the session user (as in compose).
    web_user = _pod(docs, "web")["spec"]["securityContext"]["runAsUser"]
    assert f"{web_user}:{web_user}" == _services()["web"]["user"]
    assert str(web_user) == session_uid.group(1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_stopping_kernel_has_the_time_to_hand_its_sessions_over(overlay: str) -> None:
    """SIGTERM drains: cells get CELLBUS_DRAIN_TIMEOUT, then every session is checkpointed and
    handed over. The pod must not be killed before (compose gives 20 s beyond the drain)."""
    docs = _build(overlay)
    pod = _pod(docs, "kernel")["spec"]
    drain = float(_settings_map(docs, "kernel")["CELLBUS_DRAIN_TIMEOUT"])
    compose_grace = int(_services()["kernel"]["stop_grace_period"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] >= max(drain + 20, compose_grace)
    assert "preStop" not in _container(docs, "kernel").get("lifecycle", {})
    strategy = _of_kind(docs, "Deployment")["cellbus-kernel"]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0  # somewhere to hand over to


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_kernel_pods_sessions_fit_in_its_container(overlay: str) -> None:
    """A session may use less memory than the container has (or the node's OOM killer ends
    the worker before the worker's own limit speaks), and Dask gets the CPUs it is given."""
    docs = _build(overlay)
    limits = _container(docs, "kernel")["resources"]["limits"]
    kernel = settings_from_env(KernelSettings, _settings_map(docs, "kernel"))
    assert 0 < kernel.memory_limit_mb * 2**20 < _quantity(limits["memory"])
    assert 1 <= kernel.parallel_cores <= _quantity(limits["cpu"])


def test_production_autoscales_web_and_kernel_and_dev_runs_one_of_each() -> None:
    production = _build("production")
    autoscalers = _of_kind(production, "HorizontalPodAutoscaler")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers.values()}
    assert targets == {"cellbus-web", "cellbus-kernel"}
    deployments = _of_kind(production, "Deployment")
    for hpa in autoscalers.values():
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        # kubectl apply would reset the autoscaler's count to a `replicas` of the manifest.
        assert "replicas" not in target["spec"], target["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        for metric in hpa["spec"]["metrics"]:  # utilization is of the requests
            resource = metric["resource"]["name"]
            for container in target["spec"]["template"]["spec"]["containers"]:
                assert resource in container["resources"]["requests"]
    assert deployments["cellbus-accounts"]["spec"]["replicas"] >= 2
    dev = _build("dev")
    assert not _of_kind(dev, "HorizontalPodAutoscaler")
    assert {n: w["spec"]["replicas"] for n, w in _workloads(dev).items()} == {
        "cellbus-web": 1, "cellbus-kernel": 1, "cellbus-accounts": 1, "redis": 1, "postgres": 1,
    }  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_disruption_budget_that_lets_a_node_drain(overlay: str) -> None:
    docs = _build(overlay)
    budgets = list(_of_kind(docs, "PodDisruptionBudget").values())
    for name in MODULES:
        labels = _pod(docs, name)["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, name
        # maxUnavailable: a single replica (dev) can still be evicted.
        assert matching[0]["spec"]["maxUnavailable"] >= 1, name


# -- secrets ------------------------------------------------------------------------------------


def _make_dev_secret(tmp_path: Path) -> dict[str, str]:
    """Run overlays/dev/make-secret.sh with a kubectl that keeps the env file it is given."""
    fake = tmp_path / "kubectl"
    kept = tmp_path / "secret.env"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/calls\n'
        'case "$*" in *"get namespace"*) exit 1;; esac\n'
        'for arg in "$@"; do case "$arg" in --from-env-file=*) '
        f'cp "${{arg#--from-env-file=}}" {kept};; esac; done\n'
    )
    fake.chmod(0o755)
    script = KUBERNETES / "overlays" / "dev" / "make-secret.sh"
    result = subprocess.run(
        ["bash", str(script)], env={**os.environ, "KUBECTL": str(fake)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text()
    assert "create namespace cellbus" in calls
    assert f"--namespace {NAMESPACE} create secret generic cellbus" in calls
    return dict(line.split("=", 1) for line in kept.read_text().splitlines() if line)


def _secret_keys(docs: list[dict[str, Any]]) -> set[str]:
    keys = set()
    for _, container, _ in _all_containers(docs):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "cellbus" and not ref.get("optional"), entry
                keys.add(ref["key"])
    return keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_only_from_the_secret_the_operator_creates(overlay: str) -> None:
    docs = _build(overlay)
    assert not _of_kind(docs, "Secret"), "a Secret in the manifests would be in git"
    text = _built_text(overlay)
    assert not re.search(r"redis://\w+:[^@\s]+@", text), "a Redis password in the manifests"
    for _, container, _ in _all_containers(docs):
        for entry in container.get("env", []):
            secretive = re.search(r"PASSWORD|SECRET|_URL|AUTH", entry["name"])
            if secretive and entry["name"] != "CELLBUS_PUBLIC_ORIGINS":
                assert "secretKeyRef" in entry.get("valueFrom", {}), entry
    # Each service logs in to Redis as its own user.
    for name in MODULES:
        url = [e for e in _container(docs, name)["env"] if e["name"] == "CELLBUS_REDIS_URL"]
        assert url[0]["valueFrom"]["secretKeyRef"]["key"] == f"{name.upper()}_REDIS_URL"
    # docs/deploy.md lists every key the overlay needs.
    deploy_md = (ROOT / "docs" / "deploy.md").read_text()
    for key in _secret_keys(docs):
        assert f"`{key}`" in deploy_md, f"docs/deploy.md does not list the Secret's key {key}"


def test_the_dev_secret_script_makes_every_key_dev_needs_consistently(tmp_path: Path) -> None:
    secret = _make_dev_secret(tmp_path)
    assert set(secret) == _secret_keys(_build("dev"))
    for service in acl.Service:
        password = secret[service.password_variable]
        assert secret[f"{service.name}_REDIS_URL"] == acl.redis_url(service, password)
    assert secret["PGPASSWORD"] == secret["POSTGRES_PASSWORD"]
    assert secret["DATABASE_URL"] == _services()["accounts"]["environment"]["CELLBUS_DATABASE_URL"]
    assert len(set(secret.values())) == len(secret) - 1  # fresh and distinct (but PGPASSWORD)
    again = tmp_path / "again"
    again.mkdir()
    assert _make_dev_secret(again)["REDIS_PASSWORD"] != secret["REDIS_PASSWORD"]


def test_dev_redis_gets_the_acl_users_generated_from_acl_py(tmp_path: Path) -> None:
    """The dev Redis reads its users from a file its init container writes with
    cellbus_protocol.acl: run that command as the pod would, start a redis-server on the file
    as the pod does, and log in as each service with the URL its pods get."""
    docs = _build("dev")
    pod = _of_kind(docs, "StatefulSet")["redis"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server_container,) = pod["containers"]
    assert init["image"] == _container(docs, "accounts")["image"]  # has cellbus_protocol
    assert init["command"][:2] == ["sh", "-c"]
    script = init["command"][2]
    match = re.fullmatch(r"python -P -m cellbus_protocol\.acl aclfile > (\S+)", script)
    assert match is not None, script
    path = match.group(1)
    aclfile = server_container["command"][server_container["command"].index("--aclfile") + 1]
    assert aclfile == path
    init_mount = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    redis_mount = {m["mountPath"]: m["name"] for m in server_container["volumeMounts"]}
    folder = str(Path(path).parent)
    assert init_mount[folder] == redis_mount[folder]
    # Run it: the init container's environment, the file in a folder of ours.
    environment = _environment(docs, init)
    local = tmp_path / "users.acl"
    result = subprocess.run(
        [sys.executable, "-P", "-m", "cellbus_protocol.acl", "aclfile"],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    local.write_text(result.stdout)
    server_args = server_container["command"][1:]
    server_args[server_args.index("--aclfile") + 1] = str(local)
    for option in ("--dir", "--appendonly"):  # the test's own folder, nothing kept
        at = server_args.index(option)
        del server_args[at : at + 2]
    server = PrivateRedis(
        tmp_path, server_args, admin_user="default", admin_password=SAMPLE_SECRET["REDIS_PASSWORD"]
    )
    try:
        assert sorted(
            u.decode() if isinstance(u, bytes) else str(u) for u in server.admin.acl_users()
        ) == [
            "accounts", "default", "kernel", "web",
        ]  # fmt: skip
        for name in MODULES:
            url = _environment(docs, _container(docs, name))["CELLBUS_REDIS_URL"]
            user, password = re.fullmatch(r"redis://(\w+):(\w+)@redis:6379/0", url).groups()  # type: ignore[union-attr]  # fullmatch asserted by the URL's form
            client = server.client(user, password)
            assert client.ping(), name
            client.close()
        # A kernel's credential cannot write the accounts request stream.
        kernel = server.client("kernel", SAMPLE_SECRET["REDIS_KERNEL_PASSWORD"])
        with pytest.raises(NoPermissionError):
            kernel.xadd(f"{environment['CELLBUS_NAMESPACE']}:accounts:requests", {"x": "1"})
        kernel.close()
    finally:
        server.close()


# -- network policies ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Peer:
    """A pod of the namespace (its component) or an address outside it."""

    component: str = ""
    address: str = ""


def _selects(selector: dict[str, Any], peer: Peer) -> bool:
    if not peer.component:
        return False
    labels = {"app.kubernetes.io/name": "cellbus", "app.kubernetes.io/component": peer.component}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _peer_matches(entry: dict[str, Any], peer: Peer) -> bool:
    if "podSelector" in entry:
        assert "namespaceSelector" not in entry, entry
        return _selects(entry["podSelector"], peer)
    block = entry["ipBlock"]
    if not peer.address:
        return False  # pods of the namespace are reached by selector here
    address = ipaddress.ip_address(peer.address)
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))


def _port_matches(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(
        p.get("protocol", "TCP") == "TCP" and p["port"] <= port <= p.get("endPort", p["port"])
        for p in ports
    )


def _allowed(docs: list[dict[str, Any]], source: Peer, target: Peer, port: int) -> bool:
    """Whether the namespace's NetworkPolicies let `source` open a TCP connection to `target`
    (egress of the source, ingress of the target, when they are pods of the namespace)."""
    policies = [p["spec"] for p in _of_kind(docs, "NetworkPolicy").values()]

    def direction(pod: Peer, kind: str, rules: str, peers: str, other: Peer) -> bool:
        if not pod.component:
            return True  # outside the namespace: not ours to police
        selecting = [
            p for p in policies if kind in p["policyTypes"] and _selects(p["podSelector"], pod)
        ]
        if not selecting:
            return True
        return any(
            _port_matches(rule, port)
            and (not rule.get(peers) or any(_peer_matches(e, other) for e in rule[peers]))
            for policy in selecting
            for rule in policy.get(rules, [])
        )

    return direction(source, "Egress", "egress", "to", target) and direction(
        target, "Ingress", "ingress", "from", source
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_what_must_talk_to_redis_and_postgresql_can(overlay: str) -> None:
    docs = _build(overlay)
    internal = overlay == "dev"
    redis = Peer("redis") if internal else Peer(address="10.20.0.5")
    postgres = Peer("postgres") if internal else Peer(address="10.20.0.6")
    web, kernel, accounts = Peer("web"), Peer("kernel"), Peer("accounts")
    for client in (web, kernel, accounts):
        assert _allowed(docs, client, redis, 6379), client
    assert _allowed(docs, accounts, postgres, 5432)
    assert not _allowed(docs, kernel, postgres, 5432), "user code could reach the database"
    assert not _allowed(docs, web, postgres, 5432)
    if internal:
        assert not _allowed(docs, Peer("postgres"), redis, 6379)
        assert not _allowed(docs, Peer("redis"), postgres, 5432)
        assert not _allowed(docs, Peer(address="203.0.113.9"), redis, 6379)
    # Nothing connects to accounts or the kernels' services; anyone to web's port only.
    assert not _allowed(docs, web, accounts, 8888)
    assert _allowed(docs, Peer(address="203.0.113.9"), web, 8888)
    assert not _allowed(docs, kernel, web, 8888), "sessions' code reaching the API directly"
    # Parallel cells: kernels reach each other's Dask, web the dashboards; sessions the web.
    assert _allowed(docs, kernel, kernel, 47000) and _allowed(docs, kernel, kernel, 47299)
    assert _allowed(docs, web, kernel, 47300) and not _allowed(docs, web, kernel, 47000)
    assert not _allowed(docs, kernel, kernel, 47300), "a session reaching a dashboard"
    assert _allowed(docs, kernel, Peer(address="203.0.113.9"), 443)
    for private in ("10.0.0.1", "169.254.169.254", "192.168.1.1"):
        assert not _allowed(docs, kernel, Peer(address=private), 80), private
    assert not _allowed(docs, kernel, Peer(address="203.0.113.9"), 22)
    ports = _settings_map(docs, "kernel")["CELLBUS_SESSION_PORTS"]
    assert {int(p) for p in ports.split(",")} == {80, 443}  # what the kernel's policy lets out


def test_production_leaves_redis_cluster_an_option_of_the_operator() -> None:
    """CELLBUS_REDIS_CLUSTER is offered (commented) in production only; no build sets it."""
    production = (KUBERNETES / "overlays/production/kustomization.yaml").read_text()
    assert re.search(r"^\s*#\s*- CELLBUS_REDIS_CLUSTER=true$", production, re.MULTILINE)
    for overlay in OVERLAYS:
        assert "CELLBUS_REDIS_CLUSTER" not in _built_text(overlay)
    assert "REDIS_CLUSTER" not in (KUBERNETES / "overlays/dev/kustomization.yaml").read_text()


def test_the_kernel_pods_volume_roots_are_made_as_the_kernel_image_makes_them() -> None:
    docs = _build("dev")
    (init,) = _pod(docs, "kernel")["spec"]["initContainers"]
    script = init["command"][2]
    image = (ROOT / "services/kernel/Dockerfile").read_text()
    workspaces = re.search(
        r"install -d -o cellbus-session -g cellbus-session -m 0(\d+) (\S+)", image
    )
    sessions = re.search(r"install -d -o root -g root -m 0(\d+) (/var/lib/cellbus/sessions)", image)
    assert workspaces is not None and sessions is not None
    assert f"w={workspaces.group(2)}" in script and f"s={sessions.group(2)}" in script
    assert f"10002:10002:{workspaces.group(1)}" in script
    assert f"0:0:{sessions.group(1)}" in script
    # It runs as the shell would: the script parses.
    result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
