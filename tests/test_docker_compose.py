"""docker-compose.yml, docker/Dockerfile and .env.example, checked statically (no Docker engine needed).

The file follows the official Airflow 3 docker-compose.yaml: one x-airflow-common anchor shared by every Airflow
service, CeleryExecutor with Redis, PostgreSQL, an init job, health checks, plus the sandbox service.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
DAG_FILE = REPO / "dags" / "capi_pipelines.py"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
SHARED_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://airflow:airflow@postgres/airflow",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:airflow@postgres/airflow",
    "AIRFLOW__CORE__DAGS_FOLDER": "/opt/airflow/dags",
}
SHARED_ENV_KEYS = ["AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "CAPI_PIPELINES_DIR",
                   "AIRFLOW_CONN_META_CAPI", "CAPI_START_DATE"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # SafeLoader resolves the `<<:` merge keys


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


_DEFAULTED = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def default_of(value: str) -> str:
    """Every `${VAR:-default}` replaced by its default (what compose uses when .env does not set VAR)."""
    return _DEFAULTED.sub(lambda m: m.group(1), value)


def volume_map(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path, defaults substituted."""
    pairs = (default_of(v).split(":")[:2] for v in service.get("volumes", []))
    return {container: host for host, container in pairs}


def locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    [version] = [p["version"] for p in lock["package"] if p["name"] == package]
    return version


def test_services_present(services: dict[str, Any]) -> None:
    expected = {"postgres", "redis", "airflow-init", "capi-sandbox", "airflow-cli", *AIRFLOW_SERVICES}
    assert expected <= set(services)


@pytest.mark.parametrize(("name", "command"), sorted(AIRFLOW_SERVICES.items()))
def test_airflow_service(services: dict[str, Any], name: str, command: str) -> None:
    svc = services[name]
    assert svc["command"] == command
    assert svc["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
    assert svc["image"] == services["airflow-init"]["image"]
    assert "test" in svc["healthcheck"] and svc["restart"] == "always"
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    env = svc["environment"]
    for key, value in SHARED_ENV.items():
        assert env[key] == value, (name, key)
    for key in SHARED_ENV_KEYS:
        assert key in env, (name, key)


def test_worker_scales_and_waits_for_api_server(services: dict[str, Any]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale airflow-worker=N needs both absent
    assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"


def test_execution_api_url_points_at_the_api_server(services: dict[str, Any]) -> None:
    url = services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    host, port = re.match(r"http://([^:/]+):(\d+)/execution/$", url).groups()
    assert host in services and services[host]["command"] == "api-server"
    assert f"{port}:{port}" in services[host]["ports"]


def test_init_migrates_and_creates_the_user(services: dict[str, Any]) -> None:
    env = services["airflow-init"]["environment"]
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert services["airflow-init"]["user"] == "0:0"


def test_postgres_and_redis_health(services: dict[str, Any]) -> None:
    assert services["postgres"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "airflow"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_dag_folder_mount_holds_the_dag_file(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        mounts = volume_map(svc)
        dags_in_container = svc["environment"]["AIRFLOW__CORE__DAGS_FOLDER"]
        host = (REPO / mounts[dags_in_container]).resolve()
        assert host == DAG_FILE.parent, name


def test_pipelines_folder_mount(services: dict[str, Any]) -> None:
    from capi_pipeline.config import load_pipeline

    env = services["airflow-scheduler"]["environment"]
    container_dir = default_of(env["CAPI_PIPELINES_DIR"])
    mounts = volume_map(services["airflow-worker"])
    host_dir = REPO / mounts[container_dir]
    files = sorted(host_dir.glob("*.pipeline.yaml"))
    assert [f.name for f in files] == ["app_sample.pipeline.yaml", "offline_sample.pipeline.yaml"]
    pg = services["postgres"]["environment"]
    for f in files:
        cfg = load_pipeline(f)
        # the shared ledger is the compose Postgres, reached by its service name
        assert cfg.ledger == (f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
                              f"@postgres:5432/{pg['POSTGRES_DB']}")
        # data and reports live under a mounted folder
        work = next(c for c in mounts if c.endswith("/work"))
        assert cfg.source.path.startswith(work + "/") and cfg.output.startswith(work + "/")


@pytest.mark.parametrize("name", ["app_sample.pipeline.yaml", "offline_sample.pipeline.yaml"])
def test_docker_pipelines_differ_from_the_dag_examples_only_in_where_things_live(name: str) -> None:
    """docker/pipelines/ repeats dags/pipelines/ with container paths and the Postgres ledger; nothing else."""
    import dataclasses

    from capi_pipeline.config import load_pipeline

    local = load_pipeline(REPO / "dags" / "pipelines" / name)
    docker = load_pipeline(REPO / "docker" / "pipelines" / name)
    differ = {f.name for f in dataclasses.fields(local) if getattr(local, f.name) != getattr(docker, f.name)}
    assert differ == {"path", "source", "ledger", "output"}
    assert dataclasses.replace(local.source, path=docker.source.path) == docker.source


def test_sandbox_service_command_matches_cli(services: dict[str, Any]) -> None:
    from capi_pipeline.cli import build_parser

    svc = services["capi-sandbox"]
    command = svc["command"]
    assert command[:2] == ["capi-pipeline", "sandbox"]
    args = build_parser().parse_args(command[1:])  # raises SystemExit on an option the CLI does not have
    assert args.host == "0.0.0.0" and args.port == 8765
    assert f"{args.port}:{args.port}" in svc["ports"]
    assert str(args.port) in " ".join(svc["healthcheck"]["test"])
    assert svc["entrypoint"] == ["/usr/bin/dumb-init", "--"]  # not through /entrypoint, which prefixes airflow
    # the default Connection of the Airflow services targets this service
    conn = default_of(services["airflow-worker"]["environment"]["AIRFLOW_CONN_META_CAPI"])
    assert f"capi-sandbox%3A{args.port}" in conn


def test_dockerfile_matches_lock() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    [base] = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    python = (REPO / ".python-version").read_text(encoding="utf-8").strip()
    assert base == f"apache/airflow:{locked_version('apache-airflow')}-python{python}"
    for src in ("pyproject.toml", "uv.lock", "capi_pipeline/", "data_contracts/", "dags/"):
        assert re.search(rf"^COPY\b.*\s{re.escape(src)}", text, flags=re.M), src
    # the ledger's postgresql+psycopg:// URLs need psycopg: the `postgres` extra, pinned by the lock
    assert '-e ".[postgres]"' in text and "--extra postgres" in text
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text  # pip must keep the image's Airflow
    assert "uv export --frozen" in text


def test_env_example_covers_compose_variables() -> None:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip("'")
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}", text))  # no default: .env must set them
    assert used <= set(env) | {"AIRFLOW_UID"}, used - set(env)
    assert {"CAPI_PIPELINES_DIR", "AIRFLOW_CONN_META_CAPI", "CAPI_START_DATE"} <= set(env)
    conn = json.loads(env["AIRFLOW_CONN_META_CAPI"])
    assert conn["password"] and conn["extra"]["endpoint"] == "http://capi-sandbox:8765"
