"""The tracking server going down mid-search does not kill the search: it keeps evaluating, keeps every
result in candidates.jsonl, and syncs MLflow when the server is back. A real `mlflow server` (started and
stopped with infra/services.sh), a real search process (Prefect, lm-eval, zoo models)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from cli_runner import ROOT, ZOO_TWO_EXPERTS, search_command, search_env, write_search
from mlflow.tracking import MlflowClient
from services import Services

from flows.tracking import nested_runs

pytestmark = pytest.mark.integration


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_search_survives_the_tracking_server_going_down(zoo_dir: Path, tmp_path: Path) -> None:
    services = Services.under(tmp_path / "services")
    started = services.script("start", "mlflow")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"export MLFLOW_TRACKING_URI={services.mlflow_uri}" in started.stdout
    again = services.script("start", "mlflow")  # idempotent: the running server is left alone
    assert "mlflow already running" in again.stdout
    try:
        write_search(
            tmp_path,
            {
                "name": "outage",
                "seed": 1,
                "recipe": ZOO_TWO_EXPERTS,
                "genes": [
                    {"parameter": "weight", "model": m, "low": 0.0, "high": 1.5, "layer_groups": 2}
                    for m in ("zoo:add", "zoo:sort")
                ],
                "evaluation": {"tasks": ["evomerge_add", "evomerge_sort"], "held_out_tasks": []},
                "algorithm": {"population_size": 10, "generations": 40, "elite": 1},
                "budget": {"max_evaluations": 150},
            },
        )
        env = {
            **search_env(tmp_path, zoo_dir),
            "MLFLOW_TRACKING_URI": services.mlflow_uri,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
            "EVOMERGE_MLFLOW_WAIT": "300",
        }
        log = tmp_path / "out" / "candidates.jsonl"
        with (tmp_path / "stderr.log").open("w") as stderr:
            search = subprocess.Popen(
                search_command(tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
            try:
                wait_until(lambda: lines(log) >= 3, 300, "the first candidates")
                stopped = services.script("stop", "mlflow")
                assert "stopped mlflow" in stopped.stdout
                at_outage = lines(log)
                wait_until(lambda: lines(log) >= at_outage + 5 or search.poll() is not None, 300, "more candidates")
                during_outage = lines(log) - at_outage
                restarted = services.script("start", "mlflow")
                assert restarted.returncode == 0, restarted.stdout + restarted.stderr
                returncode = search.wait(timeout=600)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(search.pid, signal.SIGKILL)
        output = (tmp_path / "stderr.log").read_text()
        assert returncode == 0, output
        assert during_outage >= 5, "the search stopped evaluating while MLflow was down"
        assert "MLflow call failed" in output and "MLflow reachable again" in output

        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        records = [json.loads(line) for line in log.read_text().splitlines()]
        client = MlflowClient(services.mlflow_uri)
        search_run = client.get_run(summary["mlflow_run_id"])
        assert search_run.info.status == "FINISHED"
        assert search_run.data.tags["best.candidate_id"] == summary["best"]["candidate_id"]
        nested = nested_runs(client, search_run.info.experiment_id, search_run.info.run_id)
        assert Counter(run.data.tags["candidate_key"] for run in nested) == Counter(r["key"] for r in records)
        assert {run.info.status for run in nested} == {"FINISHED"}
        assert len(client.search_model_versions("name = 'outage'")) == 1
    finally:
        services.script("stop")
