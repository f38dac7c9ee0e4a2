"""Rerunning a failed stage, against a real Prefect server (started with infra/services.sh) and a real
served deployment (`evomerge serve`): a search whose evaluation crashes on its first attempt leaves a
Failed flow run; retrying that same flow run, once as the UI's Retry button does
(`set_flow_run_state(..., Scheduled(name="AwaitingRetry"))`) and once with `prefect flow-run retry`,
completes it, and the downloads and the finished merge come back `Cached` (task-run states, not logs)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import EVOMERGE, ROOT, search_env, two_expert_search, write_search
from services import Services, prefect_api

pytestmark = pytest.mark.integration
DEPLOYMENT = "evomerge-search/retry-test"


def prefect_env(services: Services, work: Path, zoo_dir: Path) -> dict[str, str]:
    return {
        **search_env(work, zoo_dir),
        "PREFECT_API_URL": services.prefect_api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "EVOMERGE_FAULT": "crash:evaluate:5",  # parents take the first 3 evaluations,
        "EVOMERGE_FAULT_MARKER": str(work / "faults-fired"),
    }


async def _wait_for_state(flow_run_id: Any, wanted: set[str], timeout: float) -> Any:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in wanted:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} still {run.state} after {timeout} s")
            await asyncio.sleep(1)


async def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )


async def _start_run(output_dir: Path, config_path: Path) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 180
    async with get_client() as client:  # `evomerge serve` registers the deployment once it has started
        while True:
            try:
                await client.read_deployment_by_name(DEPLOYMENT)
                break
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
    return (
        await run_deployment(
            DEPLOYMENT, parameters={"output_dir": str(output_dir), "config_path": str(config_path)}, timeout=0
        )
    ).id


async def _retry_like_the_ui(flow_run_id: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    async with get_client() as client:
        await client.set_flow_run_state(flow_run_id, Scheduled(name="AwaitingRetry"), force=True)


@pytest.fixture(scope="module")
def served(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("retry")
    services = Services.under(work / "services")
    started = services.script("start", "prefect")
    assert started.returncode == 0, started.stdout + started.stderr
    algorithm = {"population_size": 4, "generations": 2, "elite": 1}
    search = two_expert_search("retry-test", 2, algorithm, limit=20, held_out=False)
    write_search(work, search)
    # a second search with its own seed: the first one's results are cached under content keys, so the
    # same candidates would be Cached rather than crash
    (work / "second.yaml").write_text(yaml.safe_dump({**search, "seed": 3}))
    env = prefect_env(services, work, zoo_dir)
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen(
        [*EVOMERGE, "serve", str(work / "search.yaml"), "--name", "retry-test"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        with prefect_api(services.prefect_api_url):
            yield work
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
        services.script("stop")


def _fail_then_retry(work: Path, name: str, retry: str, config: str) -> tuple[Any, list[Any]]:
    flow_run_id = asyncio.run(_start_run(work / name, work / config))
    failed = asyncio.run(_wait_for_state(flow_run_id, {"FAILED", "CRASHED", "COMPLETED"}, 600))
    assert failed.state.type.value == "FAILED", (work / "serve.log").read_text()[-3000:]
    if retry == "ui":
        asyncio.run(_retry_like_the_ui(flow_run_id))
    else:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), "flow-run", "retry", str(flow_run_id)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )
        assert result.returncode == 0, result.stdout + result.stderr
    done = asyncio.run(_wait_for_state(flow_run_id, {"FAILED", "CRASHED", "COMPLETED"}, 600))
    assert done.state.type.value == "COMPLETED", (work / "serve.log").read_text()[-3000:]
    assert done.run_count == 2
    return done, asyncio.run(_task_runs(flow_run_id))


def _check_cached(task_runs: list[Any], work: Path, name: str) -> None:
    states: dict[str, Counter[str]] = {}
    for run in task_runs:  # task runs are named <stage>-<candidate or parent>
        states.setdefault(run.name, Counter())[run.state.name] += 1
    downloads = [run for run in task_runs if run.name.startswith("download-")]
    # first attempt: the 3 parents were downloaded; the retry found all 3 Cached
    assert Counter(run.state.name for run in downloads) == Counter({"Completed": 3, "Cached": 3}), states
    crashed = [run.name.removeprefix("evaluate-") for run in task_runs if run.state.name == "Failed"]
    assert len(crashed) == 1 and crashed[0].startswith("g00-"), states
    # the crashed candidate's merge had finished: the retry found it Cached and merged nothing twice
    assert states[f"merge-{crashed[0]}"] == Counter({"Completed": 1, "Cached": 1}), states
    assert states[f"evaluate-{crashed[0]}"] == Counter({"Failed": 1, "Completed": 1}), states
    merges = {stage: counts for stage, counts in states.items() if stage.startswith("merge-")}
    assert all(counts["Completed"] == 1 for counts in merges.values()), merges
    assert (work / name / "summary.json").is_file()


def test_retry_like_the_ui_button(served: Path) -> None:
    _, task_runs = _fail_then_retry(served, "ui", "ui", "search.yaml")
    _check_cached(task_runs, served, "ui")


def test_retry_with_the_prefect_cli(served: Path) -> None:
    _, task_runs = _fail_then_retry(served, "cli", "cli", "second.yaml")
    _check_cached(task_runs, served, "cli")
