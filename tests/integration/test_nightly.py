"""The nightly search against a real Prefect server (infra/services.sh): `evomerge serve` with a cron
schedule produces a scheduled flow run on its own, which completes and leaves its candidates in MLflow;
and infra/prefect.yaml deploys to a process work pool with its schedule and parameters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from cli_runner import EVOMERGE, ROOT, search_env, two_expert_search, write_search
from mlflow.tracking import MlflowClient
from services import Services, prefect_api

from flows.tracking import nested_runs

pytestmark = pytest.mark.integration
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("nightly-server")
    services = Services.under(work / "services")
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "2"  # the server inherits it
    try:
        started = services.script("start", "prefect")
    finally:
        del os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"]
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        with prefect_api(services.prefect_api_url):
            yield services
    finally:
        services.script("stop")


async def _runs_of(deployment_name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
        )


async def _deployment(name: str) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(name)


def test_a_scheduled_night_completes_and_leaves_its_candidates_in_mlflow(
    server: Services, zoo_dir: Path, tmp_path: Path
) -> None:
    algorithm = {"population_size": 4, "generations": 3, "elite": 1}
    write_search(tmp_path, two_expert_search("nightly-test", 0, algorithm, limit=20, held_out=False))
    env = {**search_env(tmp_path, zoo_dir), "PREFECT_API_URL": server.prefect_api_url}
    command = [*EVOMERGE, "serve", str(tmp_path / "search.yaml"), "--cron", "* * * * *", "--nightly", "new"]
    command += ["--evaluations-per-night", "5", "--out", str(tmp_path / "nights")]
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300  # the next minute, plus the run itself
        finished: list[Any] = []
        while not finished:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
            runs = asyncio.run(_runs_of("nightly-test"))
            finished = [run for run in runs if run.state and run.state.is_final()]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
    run = finished[0]
    assert run.state.type.value == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    assert run.auto_scheduled  # created by the server's scheduler, not by hand
    assert run.parameters["nightly"] == "new"
    date = run.expected_start_time.astimezone(UTC).date().isoformat()
    summary = json.loads((tmp_path / "nights" / date / "summary.json").read_text())
    assert summary["seed"] == int(date.replace("-", ""))
    assert summary["evaluations"] == 5
    assert summary["prefect_flow_run_id"] == str(run.id)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    search_run = client.get_run(summary["mlflow_run_id"])
    candidates = nested_runs(client, search_run.info.experiment_id, search_run.info.run_id)
    assert len(candidates) == 5 and {c.info.status for c in candidates} == {"FINISHED"}
    assert search_run.data.tags["prefect.flow_run_id"] == str(run.id)


def test_prefect_yaml_deploys_the_nightly_search_to_a_process_pool(server: Services, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": server.prefect_api_url, "EVOMERGE_ROOT": str(ROOT)}
    pool = subprocess.run(
        [PREFECT, "work-pool", "create", "evomerge-process", "--type", "process", "--overwrite"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    nightly = asyncio.run(_deployment("evomerge-search/nightly-demo"))
    assert nightly.work_pool_name == "evomerge-process"
    assert nightly.entrypoint == "flows/search.py:search"
    assert nightly.parameters == {
        "config_path": "configs/searches/demo.yaml",
        "nightly": "continue",
        "evaluations_per_night": 48,
        "timezone": "UTC",
    }
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "UTC" and schedule.active
    fresh = asyncio.run(_deployment("evomerge-search/nightly-demo-fresh"))
    assert fresh.parameters["nightly"] == "new" and not fresh.schedules[0].active
    assert (ROOT / nightly.parameters["config_path"]).is_file()


def test_continuing_nights_resume_one_search_with_a_raised_budget(zoo_dir: Path, tmp_path: Path) -> None:
    """Two nights of `nightly: continue` (the flow as a deployment calls it; embedded Prefect here): the
    second resumes the first's search in the same directory and MLflow run, 3 evaluations further."""
    algorithm = {"population_size": 3, "generations": 20, "elite": 1}
    write_search(tmp_path, two_expert_search("continue-test", 4, algorithm, limit=20, held_out=False))
    env = search_env(tmp_path, zoo_dir)
    night = (
        "import json, sys; from flows.search import search; "
        "s = search(sys.argv[1], sys.argv[2], nightly='continue', evaluations_per_night=3); "
        "print(json.dumps({k: getattr(s, k) for k in ('evaluations', 'mlflow_run_id', 'stop_reason', 'seed')}))"
    )
    nights = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", night, str(tmp_path / "search.yaml"), str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        nights.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first, second = nights
    assert (first["evaluations"], second["evaluations"]) == (3, 6)
    assert first["stop_reason"] == second["stop_reason"] == "max_evaluations"
    assert first["mlflow_run_id"] == second["mlflow_run_id"] and first["seed"] == second["seed"] == 4
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 6
