"""The Docker files describe the same services as infra/services.sh: checked structurally here, and by
`docker compose config` where a Docker client with the compose plugin exists (no engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).parents[2] / "infra"
ROOT = INFRA.parent


def compose() -> dict:  # type: ignore[type-arg]
    loaded = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_both_servers_and_a_worker_that_waits_for_them() -> None:
    services = compose()["services"]
    assert set(services) == {"prefect", "mlflow", "worker"}
    assert "prefect server start" in services["prefect"]["command"]
    assert "mlflow server" in services["mlflow"]["command"] and "--serve-artifacts" in services["mlflow"]["command"]
    worker = services["worker"]
    assert "prefect worker start --pool evomerge-process" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["depends_on"] == {name: {"condition": "service_healthy"} for name in ("prefect", "mlflow")}
    for name in ("prefect", "mlflow"):
        assert "healthcheck" in services[name]
        assert services[name]["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}


def test_the_dockerfile_copies_files_that_exist_and_pins_cpu_torch() -> None:
    text = (INFRA / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    assert '"torch==2.13.0"' in text and "whl/cpu" in text


def test_prefect_yaml_names_a_real_flow_and_config() -> None:
    deployments = yaml.safe_load((INFRA / "prefect.yaml").read_text())["deployments"]
    for deployment in deployments:
        path, _, function = deployment["entrypoint"].partition(":")
        assert re.search(rf"^def {function}\(", (ROOT / path).read_text(), flags=re.MULTILINE)
        assert (ROOT / deployment["parameters"]["config_path"]).is_file()
        assert f"--pool {deployment['work_pool']['name']}" in compose()["services"]["worker"]["command"]


def test_services_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(INFRA / "services.sh")]).returncode == 0


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no Docker client with the compose plugin here; the structure is checked above")
    result = subprocess.run(
        [docker, "compose", "-f", str(INFRA / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
