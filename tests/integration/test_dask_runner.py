"""Searches on a real Dask cluster (`dask scheduler`, `dask worker` processes on 127.0.0.1) against the same
search on the local runner: the same candidates, scores and winner, whatever happens to the workers.

Real Prefect (ephemeral), real MLflow (SQLite), real lm-eval, zoo models. Workers are started as a user
starts them, with no nanny, so a killed worker stays dead as a lost machine does. Faults come from
`EVOMERGE_FAULT` (tasks/faults.py) in one process's environment: a worker that kills itself as it starts
scoring its 5th model (at most 3 are parents), a search that kills itself as it writes its 2nd checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_runner import ROOT, run_search, search_command, search_env, two_expert_search, write_search
from dask_cluster import dask_cluster, free_port
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

CONFIG = two_expert_search(
    "dask",
    5,
    {"name": "ga", "population_size": 6, "generations": 4, "elite": 1},
    limit=40,
    held_out=False,
    budget={"max_evaluations": 18},
)
SLOW = "sleep:evaluate:1.0"
"""Every worker takes a second longer per candidate: the search lasts long enough for a worker to join."""


def records(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "out" / "candidates.jsonl").read_text().splitlines()]


def summary(work: Path) -> dict[str, Any]:
    return dict(json.loads((work / "out" / "summary.json").read_text()))


def start_search(work: Path, zoo_dir: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`evomerge search` in its own session, output to files (a killed search leaves its Prefect server)."""
    command = [*search_command(work), *flags]
    stdout, stderr = (work / "stdout.log").open("w"), (work / "stderr.log").open("w")
    environment = {**search_env(work, zoo_dir), **(env or {})}
    return subprocess.Popen(
        command, stdout=stdout, stderr=stderr, env=environment, cwd=ROOT, start_new_session=True, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 900) -> int:
    try:
        return process.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def log(work: Path) -> str:
    return (work / "stdout.log").read_text() + (work / "stderr.log").read_text()


def wait_for(condition: Any, process: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the search ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def logged_lines(work: Path) -> int:
    path = work / "out" / "candidates.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def assert_same_search(work: Path, reference: Path) -> None:
    """The same candidates (ids, keys, scores, tensors) in the same order, and the same winner."""
    mine, theirs = records(work), records(reference)
    fields = ("candidate_id", "key", "scores", "tensors_sha256", "fitness")
    assert [{f: r[f] for f in fields} for r in mine] == [{f: r[f] for f in fields} for r in theirs]
    assert summary(work)["best"] == {**summary(reference)["best"], "model_dir": summary(work)["best"]["model_dir"]}


def assert_one_finished_run_per_candidate(work: Path) -> None:
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
    nested = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert Counter(run.data.tags["candidate_key"] for run in nested) == Counter(r["key"] for r in records(work))
    assert {run.info.status for run in nested} == {"FINISHED"}
    by_key = {r["key"]: r["worker"] for r in records(work)}
    assert all(run.data.tags.get("worker") == by_key[run.data.tags["candidate_key"]] for run in nested)


@pytest.fixture(scope="module")
def local_search(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("local")
    write_search(work, CONFIG)
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return work


def test_a_killed_worker_loses_nothing_and_a_joining_worker_is_set_up(
    local_search: Path, zoo_dir: Path, tmp_path: Path
) -> None:
    """Dask gives up on the candidates of the killed worker at once (allowed failures 0: `KilledWorker`);
    Prefect retries each, on the workers left. A third worker joins mid-search and scores too."""
    write_search(tmp_path, CONFIG)
    with dask_cluster(tmp_path / "cluster", [], {"EVOMERGE_FAULT": SLOW}, allowed_failures=0) as cluster:
        cluster.start_worker("w1")
        cluster.start_worker("w2", env={"EVOMERGE_FAULT": f"{SLOW},kill:evaluate:5"})
        cluster.wait_for_workers(2)
        search = start_search(tmp_path, zoo_dir, "--address", cluster.address)
        wait_for(lambda: logged_lines(tmp_path) >= 1, search)
        cluster.start_worker("w3")
        assert finish(search) == 0, log(tmp_path)[-5000:]
        assert cluster.workers["w2"].poll() == -signal.SIGKILL  # it died mid-candidate, as planned
    assert_same_search(tmp_path, local_search)
    assert_one_finished_run_per_candidate(tmp_path)
    workers = Counter(r["worker"] for r in records(tmp_path))
    assert workers["w3"] >= 1 and workers["w1"] >= 1, workers
    text = log(tmp_path)
    assert "Dask gave up on it (KilledWorker" in text and "Prefect retries it" in text, text[-5000:]
    report = summary(tmp_path)["runner"]
    assert report["name"] == "dask" and report["resubmitted"] >= 1
    assert sum(w["candidates"] for w in report["workers"].values()) == len(records(tmp_path))


def test_a_killed_search_resumes_on_the_cluster_still_up(local_search: Path, zoo_dir: Path, tmp_path: Path) -> None:
    write_search(tmp_path, CONFIG)
    with dask_cluster(tmp_path / "cluster", ["w1", "w2"]) as cluster:
        killed = start_search(
            tmp_path, zoo_dir, "--address", cluster.address, env={"EVOMERGE_FAULT": "kill:checkpoint:2"}
        )
        assert finish(killed) == -signal.SIGKILL, log(tmp_path)[-3000:]
        before = records(tmp_path)
        assert 0 < len(before) < 18
        resumed = start_search(tmp_path, zoo_dir, "--address", cluster.address)
        assert finish(resumed) == 0, log(tmp_path)[-5000:]
        assert "resuming" in log(tmp_path)
    assert records(tmp_path)[: len(before)] == before  # nothing scored twice, nothing rewritten
    assert_same_search(tmp_path, local_search)
    assert_one_finished_run_per_candidate(tmp_path)


def test_one_local_dask_worker_gives_the_same_search(local_search: Path, zoo_dir: Path, tmp_path: Path) -> None:
    write_search(tmp_path, CONFIG)
    search = start_search(tmp_path, zoo_dir, "--runner", "dask", "--workers", "1")
    assert finish(search) == 0, log(tmp_path)[-5000:]
    assert_same_search(tmp_path, local_search)
    assert {r["worker"] for r in records(tmp_path)} == {"evomerge-0"}


def test_a_worker_that_cannot_read_a_parent_fails_the_search_naming_it(zoo_dir: Path, tmp_path: Path) -> None:
    write_search(tmp_path, CONFIG)
    elsewhere = tmp_path / "not-mounted"
    with dask_cluster(tmp_path / "cluster", []) as cluster:
        cluster.start_worker("far", env={"EVOMERGE_PATH_MAP": f"{zoo_dir.resolve()}={elsewhere}"})
        cluster.wait_for_workers(1)
        search = start_search(tmp_path, zoo_dir, "--address", cluster.address)
        assert finish(search, timeout=300) != 0
    text = log(tmp_path)
    assert "worker far cannot read parent zoo:base" in text and str(elsewhere / "base") in text, text[-3000:]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_an_address_where_no_scheduler_listens_is_refused_naming_it(zoo_dir: Path, tmp_path: Path) -> None:
    write_search(tmp_path, CONFIG)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    search = start_search(tmp_path, zoo_dir, "--address", address)
    assert finish(search, timeout=300) == 2, log(tmp_path)[-3000:]
    text = log(tmp_path)
    assert f"runner address {address}: no Dask scheduler answered" in text, text[-3000:]
    assert not (tmp_path / "out" / "summary.json").exists()
