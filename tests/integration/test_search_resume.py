"""kill -9 a real search at chosen moments, rerun it each time, and compare with a search never stopped.

Real Prefect (ephemeral), real MLflow (SQLite), real lm-eval, zoo models. The kills come from the search
process itself (`EVOMERGE_FAULT`, tasks/faults.py): as a candidate's merge starts, as its evaluation starts,
in the middle of logging a candidate to MLflow (after its line is in candidates.jsonl), and between writing a new
checkpoint and renaming it into place. Each resume must repeat no finished candidate; the finished search
must equal the uninterrupted one: the same winner, the same set of evaluated candidate keys, and MLflow
holding exactly one finished nested run per key.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_runner import ROOT, search_command, search_env, two_expert_search, write_search
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

CONFIG = two_expert_search(
    "resume",
    11,
    {"name": "ga", "population_size": 4, "generations": 3, "elite": 1},
    limit=30,
    budget={"max_evaluations": 9},
)
KILLS = ["kill:merge:3", "kill:evaluate:3", "kill:checkpoint:1", "kill:record:2"]
"""Logging runs beside the search (flows/tracking_queue.py), so `record` comes last: a search killed there may
have got further than its MLflow log, and a checkpoint kill after it might find no checkpoint left to write."""


def run_search(work: Path, zoo_dir: Path, fault: str | None) -> subprocess.CompletedProcess[str]:
    """One `evomerge search` process in its own session. A SIGKILLed search leaves its ephemeral Prefect
    server behind (a child process holding the output pipes), so output goes to files and the whole
    session is killed once the search process has ended."""
    env = search_env(work, zoo_dir)
    env.pop("EVOMERGE_FAULT", None)
    if fault:
        env["EVOMERGE_FAULT"] = fault
    command = search_command(work)
    with (work / "stdout.log").open("w") as stdout, (work / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=ROOT, start_new_session=True)
        try:
            returncode = process.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(
        command, returncode, (work / "stdout.log").read_text(), (work / "stderr.log").read_text()
    )


def nested_runs(work: Path) -> list[Any]:
    """The candidates' runs under the search's run (the only search in this store)."""
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs(
        [experiment.experiment_id for experiment in client.search_experiments()], max_results=5000
    )
    return [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def finished_state(work: Path) -> dict[str, object]:
    summary = json.loads((work / "out" / "summary.json").read_text())
    records = [json.loads(line) for line in (work / "out" / "candidates.jsonl").read_text().splitlines()]
    runs = nested_runs(work)
    assert {run.data.tags["mlflow.parentRunId"] for run in runs} == {summary["mlflow_run_id"]}
    return {"summary": summary, "records": records, "runs": runs}


@pytest.fixture(scope="module")
def searches(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    straight = tmp_path_factory.mktemp("straight")
    killed = tmp_path_factory.mktemp("killed")
    for work in (straight, killed):
        write_search(work, CONFIG)
    result = run_search(straight, zoo_dir, None)
    assert result.returncode == 0, result.stdout + result.stderr
    for fault in KILLS:
        result = run_search(killed, zoo_dir, fault)
        assert result.returncode == -signal.SIGKILL, f"{fault} did not kill the search:\n{result.stderr}"
        assert not (killed / "out" / "summary.json").exists()
        if fault.startswith("kill:record"):  # killed mid-logging: a nested run was left unfinished
            assert "RUNNING" in {run.info.status for run in nested_runs(killed)}
    result = run_search(killed, zoo_dir, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming" in result.stderr
    return {"straight": finished_state(straight), "killed": finished_state(killed)}


def test_the_killed_search_finds_the_same_winner(searches: dict[str, dict[str, object]]) -> None:
    straight, killed = searches["straight"]["summary"], searches["killed"]["summary"]
    assert isinstance(straight, dict) and isinstance(killed, dict)
    assert killed["best"] == {**straight["best"], "model_dir": killed["best"]["model_dir"]}
    assert killed["evaluations"] == straight["evaluations"]
    assert killed["stop_reason"] == straight["stop_reason"]
    assert killed["history"] == straight["history"]


def test_no_candidate_was_evaluated_twice(searches: dict[str, dict[str, object]]) -> None:
    straight, killed = searches["straight"]["records"], searches["killed"]["records"]
    assert isinstance(straight, list) and isinstance(killed, list)
    keys = [record["key"] for record in killed]
    assert len(keys) == len(set(keys))
    assert set(keys) == {record["key"] for record in straight}
    by_key = {record["key"]: record for record in straight}
    for record in killed:  # same candidate, same scores: the evaluation is deterministic
        assert record["scores"] == by_key[record["key"]]["scores"]
        assert record["candidate_id"] == by_key[record["key"]]["candidate_id"]


def test_mlflow_holds_one_finished_run_per_candidate_key(searches: dict[str, dict[str, object]]) -> None:
    for name in ("straight", "killed"):
        runs = searches[name]["runs"]
        records = searches[name]["records"]
        assert isinstance(runs, list) and isinstance(records, list)
        per_key = Counter(run.data.tags["candidate_key"] for run in runs)
        assert per_key == Counter(record["key"] for record in records), name
        assert {run.info.status for run in runs} == {"FINISHED"}, name


def test_rerunning_a_finished_search_evaluates_nothing(
    searches: dict[str, dict[str, object]], zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    summary = searches["killed"]["summary"]
    assert isinstance(summary, dict)
    work = Path(summary["best"]["model_dir"]).parents[1]
    log_before = (work / "out" / "candidates.jsonl").read_bytes()
    result = run_search(work, zoo_dir, "kill:record:1")  # a newly evaluated candidate would die here
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "out" / "candidates.jsonl").read_bytes() == log_before
    again = json.loads((work / "out" / "summary.json").read_text())
    assert again["best"] == summary["best"] and again["evaluations"] == summary["evaluations"]
