"""A real search: a Prefect flow run (embedded server), real MLflow (SQLite), real lm-eval, zoo models.

The search is small (6 evaluations on 2 tasks) but runs the same code as the demo. What it proves: one
finished MLflow nested run per evaluation; every candidate's `recipe.yaml`, merged again by
`evomerge merge`, gives exactly the tensors that were evaluated; the winner on disk is that candidate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import ZOO_TWO_EXPERTS, run_search, search_env, write_search
from mlflow.tracking import MlflowClient

from tasks.merge.writer import model_dir_sha256

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def finished_search(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("search")
    config = {
        "name": "itest",
        "seed": 3,
        "recipe": ZOO_TWO_EXPERTS,
        "genes": [
            {"parameter": "weight", "model": "zoo:add", "low": 0.0, "high": 1.5},
            {"parameter": "weight", "model": "zoo:sort", "low": 0.0, "high": 1.5, "layer_groups": 2},
        ],
        "evaluation": {"tasks": ["evomerge_add", "evomerge_sort"], "limit": 50},
        "algorithm": {"population_size": 4, "generations": 3, "elite": 1},
        "budget": {"max_evaluations": 6},
    }
    write_search(work, config)
    env = search_env(work, zoo_dir)
    uri = env["MLFLOW_TRACKING_URI"]
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((work / "out" / "summary.json").read_text())
    return {"work": work, "uri": uri, "summary": summary, "stdout": result.stdout, "env": env}


def candidate_runs(finished: dict[str, object]) -> list:  # type: ignore[type-arg]
    client = MlflowClient(str(finished["uri"]))
    summary = finished["summary"]
    assert isinstance(summary, dict)
    parent = client.get_run(summary["mlflow_run_id"])
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=1000,
    )


def test_summary_contract(finished_search: dict[str, object]) -> None:
    summary = finished_search["summary"]
    assert isinstance(summary, dict)
    assert summary["evaluations"] == 6
    assert set(summary["parents"]) == {"zoo:base", "zoo:add", "zoo:sort"}
    for scores in summary["parents"].values():
        assert set(scores) == {"evomerge_add", "evomerge_sort"}
    best = summary["best"]
    assert set(best) >= {"candidate_id", "recipe", "scores", "fitness"}
    assert best["fitness"] == pytest.approx(sum(best["scores"].values()) / 2)
    lines = (Path(str(finished_search["work"])) / "out" / "candidates.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 6
    assert best["fitness"] == max(r["fitness"] for r in records)
    assert "parents vs evolved child" in str(finished_search["stdout"])


def test_one_finished_nested_run_per_evaluation(finished_search: dict[str, object]) -> None:
    runs = candidate_runs(finished_search)
    assert len(runs) == 6
    assert {run.info.status for run in runs} == {"FINISHED"}
    keys = {run.data.tags["candidate_key"] for run in runs}
    assert len(keys) == 6  # no candidate was evaluated twice
    for run in runs:
        assert {"generation", "candidate_id", "genetic_parents", "recipe_sha256", "tensors_sha256"} <= set(
            run.data.tags
        )
        assert set(run.data.params) == {"weight/zoo:add", "weight/zoo:sort/g0", "weight/zoo:sort/g1"}
        assert run.data.metrics["fitness"] == pytest.approx(
            (run.data.metrics["evomerge_add/exact_match"] + run.data.metrics["evomerge_sort/exact_match"]) / 2
        )
    later = [run for run in runs if run.data.tags["generation"] != "0"]
    assert later and all(run.data.tags["genetic_parents"] for run in later)


def test_recorded_recipes_merge_again_to_the_evaluated_tensors(finished_search: dict[str, object]) -> None:
    client = MlflowClient(str(finished_search["uri"]))
    work = Path(str(finished_search["work"]))
    for run in candidate_runs(finished_search):
        recipe_path = Path(client.download_artifacts(run.info.run_id, "recipe.yaml", str(work / run.info.run_id)))
        out = work / "remerged" / run.data.tags["candidate_id"]
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "merge", str(recipe_path), str(out), "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
            env=finished_search["env"],
            cwd=ROOT,  # type: ignore[arg-type]
        )
        assert result.returncode == 0, result.stderr
        assert model_dir_sha256(out) == run.data.tags["tensors_sha256"]


def test_winner_on_disk_is_the_evaluated_candidate(finished_search: dict[str, object]) -> None:
    from tasks.evaluate import EvaluationConfig, evaluate_model_dir

    summary = finished_search["summary"]
    assert isinstance(summary, dict)
    best_dir = Path(summary["best"]["model_dir"])
    assert model_dir_sha256(best_dir) == summary["best"]["tensors_sha256"]
    scores = evaluate_model_dir(best_dir, EvaluationConfig(tasks=("evomerge_add", "evomerge_sort"), limit=50))
    assert {task: values["exact_match"] for task, values in scores.items()} == summary["best"]["scores"]
