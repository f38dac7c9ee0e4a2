"""The guard against forgetting, on the zoo: a search scored on add and sort with the base's copy format as
guard. Every candidate's retention is recorded (candidates.jsonl, MLflow, summary); a candidate that falls
more than `max_drop` below the base on copy is infeasible and never wins, however fit; with NSGA-II the
retention can be an objective instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_search, search_env, two_expert_search, write_search
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

GUARD = {"tasks": ["evomerge_copy"], "max_drop": 0.02, "reference": "base"}


def _search(work: Path, zoo_dir: Path, algorithm: dict[str, Any], guard: dict[str, Any]) -> dict[str, Any]:
    write_search(work, two_expert_search("guarded", 2, algorithm, limit=40, held_out=False, guard=guard))
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (work / "out" / "candidates.jsonl").read_text().splitlines()]
    return {"summary": json.loads((work / "out" / "summary.json").read_text()), "records": records}


def test_an_infeasible_candidate_never_wins_and_every_retention_is_kept(zoo_dir: Path, tmp_path: Path) -> None:
    ran = _search(tmp_path, zoo_dir, {"population_size": 8, "generations": 2, "elite": 1}, GUARD)
    summary, records = ran["summary"], ran["records"]
    base_copy = summary["parents"]["zoo:base"]["evomerge_copy"]
    assert summary["guard"]["reference"] == "zoo:base" and summary["guard"]["reference_score"] == base_copy
    for record in records:
        retention = record["scores"]["evomerge_copy"]["exact_match"] - base_copy
        assert record["retention"] == pytest.approx(retention)
        assert record["feasible"] == (retention >= -0.02 - 1e-9)
    infeasible = [r for r in records if not r["feasible"]]
    assert infeasible and summary["guard"]["infeasible"] == len(infeasible)  # the guard did bind here
    best = summary["best"]
    assert best["retention"] >= -0.02 - 1e-9
    feasible = [r for r in records if r["feasible"]]
    assert best["fitness"] == max(r["fitness"] for r in feasible)
    assert best["scores"]["evomerge_copy"] >= base_copy - 0.02 - 1e-9
    fitter = [r for r in infeasible if r["fitness"] > best["fitness"]]
    leaders = {leader["candidate_id"]: leader for leader in summary["leaderboard"]}
    for record in fitter:  # fitter, but they forgot: ranked below every feasible one, kept with their retention
        if record["candidate_id"] in leaders:
            assert leaders[record["candidate_id"]]["feasible"] is False
    client = MlflowClient(search_env(tmp_path, zoo_dir)["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("evomerge/guarded")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.candidate_id != ''")
    logged = {run.data.tags["candidate_id"]: run for run in runs}
    assert set(logged) == {r["candidate_id"] for r in records}
    for record in records:
        run = logged[record["candidate_id"]]
        assert run.data.metrics["retention"] == pytest.approx(record["retention"])
        assert run.data.tags["feasible"] == str(record["feasible"]).lower()


def test_nsga2_can_take_retention_as_an_objective(zoo_dir: Path, tmp_path: Path) -> None:
    guard = {**GUARD, "objective": True}
    ran = _search(tmp_path, zoo_dir, {"name": "nsga2", "population_size": 4, "generations": 2}, guard)
    summary, records = ran["summary"], ran["records"]
    assert summary["guard"]["objective"] is True and summary["guard"]["infeasible"] == 0
    assert all(r["feasible"] and r["retention"] is not None for r in records)
    front = {member["candidate_id"] for member in summary["pareto_front"]}
    by_id = {r["candidate_id"]: r for r in records}
    # retention is an objective: no candidate retains more than the front's best retainer (it would be
    # undominated on that objective and so on the front)
    assert max(by_id[c]["retention"] for c in front) == max(r["retention"] for r in records)
    assert all(
        set(member["scores"]) == {"evomerge_add", "evomerge_sort", "evomerge_copy"}
        for member in summary["pareto_front"]
    )


def test_a_guard_no_candidate_keeps_is_a_clear_error(zoo_dir: Path, tmp_path: Path) -> None:
    guard = {"tasks": [{"task": "evomerge_copy", "limit": 60}], "max_drop": 0.0, "reference": "base"}
    write_search(
        tmp_path,
        two_expert_search("strict", 2, {"population_size": 2, "generations": 1, "elite": 0}, 40, False, guard=guard),
    )
    result = run_search(tmp_path, zoo_dir)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "error: no candidate kept the guard: all 2 scored ones fell more than 0 below the reference" in message
    assert len((tmp_path / "out" / "candidates.jsonl").read_text().splitlines()) == 2  # both kept, with retention
