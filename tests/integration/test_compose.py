"""The deployment files: docker-compose.yml, the Dockerfiles, .dockerignore and .env.example.

No Docker engine runs where the suite runs, so nothing here builds or starts a container.
Instead the files are checked by the two validators a deployment would trip over first
(Compose itself, `docker-compose config`, and the Compose Specification's JSON schema), and
against the code: the compose topology must be the one the test suite starts
(`tests.support.stack.ServicesStack`), every default it spells out must be the service's own,
and .env.example must list exactly the settings the services read. So a setting added to a
config.py, or a service started differently by the tests, fails here until the deployment
follows.

`docker-compose` comes from Debian's package; `make test` installs it with
scripts/ensure-compose-tools.sh. Without it these tests fail (never skip).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from cellbus_accounts.config import AccountsSettings
from cellbus_kernel.config import KernelSettings
from cellbus_protocol.settings import env_names, settings_from_env
from cellbus_web.config import WebSettings

from ..support import dockerfiles, stack, workers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "REDIS_PASSWORD": "testredispassword",
    "REDIS_KERNEL_PASSWORD": "testredis4kernels",
    "REDIS_WEB_PASSWORD": "testredis4webservice",
    "REDIS_ACCOUNTS_PASSWORD": "testredis4accounts",
    "CELLBUS_SECRET": "testcheckpointsecret",
}

SETTINGS = {"accounts": AccountsSettings, "web": WebSettings, "kernel": KernelSettings}
"""The cellbus services of the compose file and the settings class each one reads."""
MODULES = {name: f"cellbus_{name}" for name in SETTINGS}
DEPENDS_ON = {
    "accounts": {"postgres", "redis"},
    "web": {"redis", "accounts"},
    "kernel": {"redis"},
    "redis": set(),
    "postgres": set(),
}
NOT_SET_BY_COMPOSE = {
    ("kernel", "CELLBUS_WORKER_ID"),
    ("web", "CELLBUS_STATIC_DIR"),
    *((name, "CELLBUS_REDIS_CLUSTER") for name in SETTINGS),
}
"""Settings docker-compose.yml leaves alone: replicas need distinct worker ids (the default),
the web image sets where its frontend is, and compose runs one Redis, not a Redis Cluster
(deploy/kubernetes's production overlay is where a cluster is chosen)."""
DELIBERATE_DEFAULTS = {("kernel", "CELLBUS_SESSION_USER"): "cellbus-session"}
"""Where docker-compose.yml's default differs from config.py's, on purpose (see its comments)."""

INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = YAML(typ="safe").load(COMPOSE_FILE.read_text())
    return compose


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _interpolations() -> list[re.Match[str]]:
    """Every ``${...}`` in the file's values (not in its comments)."""

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for key, value in node.items() for s in strings(key) + strings(value)]
        if isinstance(node, list):
            return [s for item in node for s in strings(item)]
        return [node] if isinstance(node, str) else []

    return [m for text in strings(_compose()) for m in INTERPOLATION.finditer(text)]


def _docker_compose(*args: str, secrets: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml ...`` with an empty env file and no CELLBUS_* or
    password from the caller's environment, so only the file (and `secrets`) decide."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed; run `bash scripts/ensure-compose-tools.sh` "
            "(make test does) to install Debian's package"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBUS_")}
    for name in SECRETS:
        env.pop(name, None)
    if secrets:
        env.update(SECRETS)
    with tempfile.NamedTemporaryFile(suffix=".env") as empty_env_file:
        return subprocess.run(
            [executable, "--env-file", empty_env_file.name, "-f", str(COMPOSE_FILE), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


# -- the validators ------------------------------------------------------------------------------


def test_docker_compose_v1_accepts_the_file() -> None:
    result = _docker_compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_file_refuses_to_run_without_its_secrets() -> None:
    result = _docker_compose("config", "-q", secrets=False)
    assert result.returncode != 0
    assert "set REDIS_PASSWORD" in result.stderr or "set POSTGRES_PASSWORD" in result.stderr


def test_the_compose_specification_schema_accepts_the_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_resolved_setting_is_one_the_service_reads_and_parses() -> None:
    """Compose's own resolution of the file (defaults filled in) passes each service every
    setting its config.py reads (but those it must leave alone), no other CELLBUS_* name, and
    only values that convert."""
    result = _docker_compose("config")
    assert result.returncode == 0, result.stderr
    resolved = YAML(typ="safe").load(result.stdout)["services"]
    settings: dict[str, Any] = {}
    for name, cls in SETTINGS.items():
        environment = {k: str(v) for k, v in resolved[name]["environment"].items()}
        cellbus = {k for k in environment if k.startswith("CELLBUS_")}
        expected = {env for env in env_names(cls) if (name, env) not in NOT_SET_BY_COMPOSE}
        assert cellbus == expected, {"missing": expected - cellbus, "unknown": cellbus - expected}
        settings[name] = settings_from_env(cls, environment)  # raises on a wrong kind of value
    assert (settings["web"].host, settings["web"].port) == ("0.0.0.0", 8888)
    assert settings["kernel"].session_user == "cellbus-session"
    assert settings["accounts"].database_url == "postgresql://cellbus@postgres:5432/cellbus"
    assert resolved["accounts"]["environment"]["PGPASSWORD"] == SECRETS["POSTGRES_PASSWORD"]


# -- the topology, against what the test suite starts --------------------------------------------


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def _modules_started_by_the_test_stack() -> set[str]:
    """The ``cellbus_*`` modules that `ServicesStack` (with `WorkerProcess`) runs with -m."""
    found = set()
    for obj in (stack.ServicesStack, workers.WorkerProcess):
        for node in ast.walk(ast.parse(inspect.getsource(obj))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"cellbus_[a-z]+", node.value):
                    found.add(node.value)
    return found


def test_services_run_exactly_the_commands_the_test_suite_runs() -> None:
    services = _services()
    assert set(services) == set(DEPENDS_ON)
    for name, module in MODULES.items():
        assert _command(services[name]) == ["python", "-P", "-m", module], name
    assert _modules_started_by_the_test_stack() == set(MODULES.values())
    assert '"-P", "-m", "cellbus_kernel"' in inspect.getsource(workers.WorkerProcess)
    assert '"-P", "-m", module' in inspect.getsource(stack.ServiceProcess)


def test_each_cellbus_service_is_built_from_its_own_dockerfile() -> None:
    services = _services()
    for name in MODULES:
        build = services[name]["build"]
        assert build == {"context": ".", "dockerfile": f"services/{name}/Dockerfile"}, name
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:15")


def test_web_is_the_only_service_that_publishes_a_port() -> None:
    services = _services()
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"web"}
    assert services["web"]["ports"] == ["${CELLBUS_PORT:-8888}:8888"]


def test_kernel_has_two_replicas_and_nothing_that_stops_scaling() -> None:
    kernel = _services()["kernel"]
    assert kernel["deploy"]["replicas"] == 2
    assert "container_name" not in kernel and "ports" not in kernel
    assert "CELLBUS_WORKER_ID" not in kernel["environment"]


def test_kernel_and_web_share_one_workspaces_volume_as_the_session_user() -> None:
    """Every worker and the web see the same workspaces (a session's files follow it to any
    worker; the web serves them), and the web reads and writes them as the user sessions run
    as, whose folders they are (mode 0700): the uid cellbus-session has in the kernel image."""
    services = _services()
    mounts = {}
    for name in ("kernel", "web"):
        service = services[name]
        folder = service["environment"]["CELLBUS_WORKSPACES_DIR"]
        assert f"workspaces:{folder}" in service["volumes"], name
        mounts[name] = folder
        quota = INTERPOLATION.fullmatch(service["environment"]["CELLBUS_WORKSPACE_QUOTA_MB"])
        assert quota is not None and quota.group(1) == "CELLBUS_WORKSPACE_QUOTA_MB", name
    assert mounts["kernel"] == mounts["web"]
    assert "workspaces" in _compose()["volumes"]
    assert "workspaces" not in str(services["accounts"].get("volumes", []))
    kernel_image = (ROOT / "services/kernel/Dockerfile").read_text()
    session_uid = re.search(r"useradd [^&]*--uid (\d+)[^&]* cellbus-session", kernel_image)
    assert session_uid is not None
    uid = session_uid.group(1)
    assert services["web"]["user"] == f"{uid}:{uid}"
    # The volume's root starts the same in either image: the session user's, mode 0711.
    web_image = (ROOT / "services/web/Dockerfile").read_text()
    assert f"install -d -o {uid} -g {uid} -m 0711 {mounts['web']}" in web_image
    assert f"-m 0711 {mounts['kernel']}" in kernel_image


def test_the_kernel_image_installs_the_deployments_session_requirements() -> None:
    requirements = ROOT / "services/kernel/session-requirements.txt"
    assert requirements.is_file()
    final = dockerfiles.instructions(ROOT / "services/kernel/Dockerfile")
    installs = [i.arguments for i in final if i.keyword == "RUN" and "pip install" in i.arguments]
    assert any(
        "--requirement /tmp/src/services/kernel/session-requirements.txt" in run
        and "--constraint" in run
        for run in installs
    ), installs


def test_every_service_has_a_health_check_and_starts_after_its_dependencies_are_healthy() -> None:
    services = _services()
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert set(depends_on) == DEPENDS_ON[name], name
        for dependency, condition in depends_on.items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    checks = {name: services[name]["healthcheck"]["test"] for name in MODULES}
    assert checks["accounts"] == ["CMD", "python", "-P", "-m", "cellbus_accounts.healthcheck"]
    assert checks["kernel"] == ["CMD", "python", "-P", "-m", "cellbus_kernel.healthcheck"]
    assert "http://127.0.0.1:8888/healthz" in " ".join(checks["web"])


def test_secrets_come_only_from_the_environment_and_are_required() -> None:
    for match in _interpolations():
        name, operator, _ = match.groups()
        if name in SECRETS:
            assert operator == "?", f"{match.group(0)}: a secret must be required, not defaulted"
    services = _services()
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    for name in MODULES:  # each service its own Redis user (tests/security/test_redis_acls.py)
        url = services[name]["environment"]["CELLBUS_REDIS_URL"]
        assert url.startswith(f"redis://{name}:${{REDIS_{name.upper()}_PASSWORD:?"), name
    assert services["kernel"]["environment"]["CELLBUS_SECRET"].startswith("${CELLBUS_SECRET:?")
    command = services["redis"]["command"]
    default_user = command[command.index("default") :][:3]
    assert default_user == [
        "default",
        "on",
        ">${REDIS_PASSWORD:?set REDIS_PASSWORD (letters and digits)}",
    ]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or key == "REDISCLI_AUTH":
                assert str(value).startswith("${"), f"{name}: {key} is a literal"


def test_defaults_in_the_file_are_the_services_own() -> None:
    """``${CELLBUS_X:-default}`` must say what config.py says, or a deployment would silently
    run with other settings than a service started by hand."""
    services = _services()
    checked = 0
    for name, cls in SETTINGS.items():
        defaults = {
            env: getattr(cls(), field.name)
            for env, field in zip(env_names(cls), dataclasses.fields(cls), strict=True)
        }
        for key, value in services[name]["environment"].items():
            match = INTERPOLATION.fullmatch(str(value))
            if match is None or match.group(2) != "-":
                continue
            variable, _, default = match.groups()
            assert variable == key, f"{name}: {key} is read from {variable}"
            if (name, key) in DELIBERATE_DEFAULTS:
                assert default == DELIBERATE_DEFAULTS[name, key]
                continue
            parsed = getattr(settings_from_env(cls, {key: default}), key[len("CELLBUS_") :].lower())
            assert parsed == defaults[key], (name, key, default, defaults[key])
            checked += 1
    assert checked >= 25


def test_user_code_cannot_reach_the_database_and_runs_as_its_own_user() -> None:
    services = _services()
    assert not set(services["kernel"]["networks"]) & set(services["postgres"]["networks"])
    assert _compose()["networks"]["db"]["internal"] is True
    # The kernel runs as root only to drop session processes to a user of its image.
    kernel = services["kernel"]
    assert kernel["user"] == "root"
    session_user = INTERPOLATION.fullmatch(kernel["environment"]["CELLBUS_SESSION_USER"])
    assert session_user is not None and session_user.group(3) == "cellbus-session"
    assert "cellbus-session" in (ROOT / "services/kernel/Dockerfile").read_text()


# -- the Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(MODULES))
def test_dockerfile_uses_a_pinned_slim_base_and_runs_as_a_user(service: str) -> None:
    path = ROOT / "services" / service / "Dockerfile"
    assert path.is_file(), f"{path} is missing"
    instructions = dockerfiles.instructions(path)
    bases = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    assert bases, path
    for base in bases:
        tag = base.partition(":")[2]
        assert tag and tag != "latest" and "slim" in tag, base
    assert bases[-1].startswith("python:3.11-slim")
    final = instructions[max(n for n, i in enumerate(instructions) if i.keyword == "FROM") :]
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), f"{path}: runs as root"
    commands = [i.arguments for i in final if i.keyword == "CMD"]
    assert commands and json.loads(commands[-1]) == ["python", "-P", "-m", MODULES[service]]
    for instruction in instructions:
        if instruction.keyword == "RUN" and "pip install" in instruction.arguments:
            assert "--no-cache-dir" in instruction.arguments, instruction
        if instruction.keyword == "RUN":
            assert "apt-get" not in instruction.arguments, "an apt-get needs its lists cleaned"
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            for source in instruction.arguments.split()[:-1]:
                assert (ROOT / source).exists(), f"{path}: COPY {source}: no such file"
    installed = " ".join(i.arguments for i in final if i.keyword == "RUN")
    assert "/src/shared/protocol" in installed and f"/src/services/{service}" in installed
    others = set(MODULES) - {service}
    assert not any(f"services/{other}" in installed for other in others), "another service"


def test_the_web_image_serves_the_built_frontend() -> None:
    instructions = dockerfiles.instructions(ROOT / "services/web/Dockerfile")
    runs = [i.arguments for i in instructions if i.keyword == "RUN"]
    assert any("npm ci" in run for run in runs) and any("npm run build" in run for run in runs)
    assert any(i.keyword == "FROM" and i.arguments.startswith("node:20") for i in instructions)
    envs = " ".join(i.arguments for i in instructions if i.keyword == "ENV")
    static_dir = re.search(r"CELLBUS_STATIC_DIR=(\S+)", envs)
    assert static_dir is not None
    copies = [i.arguments for i in instructions if i.keyword == "COPY"]
    assert f"--from=frontend /src/frontend/web/dist {static_dir.group(1)}" in copies


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".tools", ".git", "artifacts", ".env"):
        assert required in patterns, required
    for anywhere in ("node_modules", "dist", "__pycache__"):
        assert f"**/{anywhere}" in patterns, anywhere


# -- .env.example --------------------------------------------------------------------------------

ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def _env_example() -> dict[str, str]:
    """Variable -> value of each ``NAME=value`` or ``# NAME=value`` line, each of which must
    follow a comment line that says what it is."""
    entries: dict[str, str] = {}
    previous = ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            name, value = match.groups()
            assert name not in entries, f"{name} is listed twice"
            assert previous.startswith("# ") and not ENV_LINE.match(previous), (
                f"{name} has no comment line before it"
            )
            entries[name] = value
        previous = line
    return entries


def test_env_example_lists_exactly_the_settings_the_services_read() -> None:
    listed = {name for name in _env_example() if name.startswith("CELLBUS_")}
    read = {name for cls in SETTINGS.values() for name in env_names(cls)}
    assert listed == read, {"missing": read - listed, "unknown": listed - read}


def test_env_example_shows_each_settings_default() -> None:
    entries = _env_example()
    for cls in SETTINGS.values():
        for env, field in zip(env_names(cls), dataclasses.fields(cls), strict=True):
            parsed = getattr(settings_from_env(cls, {env: entries[env]}), field.name)
            assert parsed == field.default, (env, entries[env], field.default)


def test_env_example_lists_every_variable_the_compose_file_reads_and_no_secret_value() -> None:
    entries = _env_example()
    read = {m.group(1) for m in _interpolations()}
    assert {*SECRETS, "CELLBUS_PORT"} <= read
    assert read <= set(entries), read - set(entries)
    for secret in SECRETS:
        assert entries[secret] == "", f"{secret} must have no value in .env.example"
