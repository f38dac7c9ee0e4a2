"""Lineage and reproduction from MLflow alone, after a real search (Prefect, MLflow SQLite, lm-eval, zoo).

`evomerge lineage` must walk the winner's genetic parents back to generation 0 and name the parent models
with the content hashes the search read; `evomerge reproduce` must rebuild the winner from the record into
a model whose tensors hash to the recorded value, and refuse (leaving nothing) when a parent changed. The
winner is registered in the Model Registry under the search's name with its scores as tags.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from cli_runner import EVOMERGE, ROOT, run_search, search_env, two_expert_search, write_search
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from tasks.merge.writer import model_dir_sha256

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def search(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("lineage")
    algorithm = {"population_size": 4, "generations": 3, "elite": 1}
    write_search(work, two_expert_search("lineage-test", 5, algorithm, limit=40, held_out=False))
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((work / "out" / "summary.json").read_text())
    return {"work": work, "env": search_env(work, zoo_dir), "summary": summary}


def evomerge(search: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    env = search["env"]
    assert isinstance(env, dict)
    return subprocess.run([*EVOMERGE, *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def client_of(search: dict[str, object]) -> MlflowClient:
    env = search["env"]
    assert isinstance(env, dict)
    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def test_lineage_walks_back_to_generation_zero(search: dict[str, object]) -> None:
    summary = search["summary"]
    assert isinstance(summary, dict)
    result = evomerge(search, "lineage", summary["mlflow_run_id"], "--format", "json")
    assert result.returncode == 0, result.stderr
    lineage = json.loads(result.stdout)
    assert lineage["candidate"]["candidate_id"] == summary["best"]["candidate_id"]
    assert lineage["candidate"]["tensors_sha256"] == summary["best"]["tensors_sha256"]
    assert lineage["seed"] == "5" and lineage["algorithm"] == "ga"
    assert lineage["evomerge_version"] == summary["evomerge_version"]
    assert lineage["libraries"]["torch"] == torch.__version__
    records = {
        json.loads(line)["candidate_id"]: json.loads(line)
        for line in (Path(str(search["work"])) / "out" / "candidates.jsonl").read_text().splitlines()
    }
    # the ancestors are exactly the transitive genetic parents in the search's own log
    expected: set[str] = set()
    waiting = list(records[summary["best"]["candidate_id"]]["genetic_parents"])
    while waiting:
        name = waiting.pop()
        if name not in expected:
            expected.add(name)
            waiting.extend(records[name]["genetic_parents"])
    assert set(lineage["ancestors"]) == expected
    for node in [lineage["candidate"], *lineage["ancestors"].values()]:
        if not node["genetic_parents"]:
            assert node["generation"] == 0
    search_tags = client_of(search).get_run(summary["mlflow_run_id"]).data.tags
    assert lineage["parent_models"] == {
        k.removeprefix("parent_model_sha256/"): v
        for k, v in search_tags.items()
        if k.startswith("parent_model_sha256/")
    }
    assert set(lineage["parent_models"]) == {"zoo:base", "zoo:add", "zoo:sort"}

    dot = evomerge(search, "lineage", summary["mlflow_run_id"], "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph lineage {")
    for name in expected:
        assert f'"{name}"' in dot.stdout
    tree = evomerge(search, "lineage", lineage["candidate"]["run_id"])
    assert tree.returncode == 0 and summary["best"]["candidate_id"] in tree.stdout and "merge_method" in tree.stdout


def test_reproduce_rebuilds_the_winner_bit_for_bit(search: dict[str, object], tmp_path: Path) -> None:
    summary = search["summary"]
    assert isinstance(summary, dict)
    out = tmp_path / "rebuilt"
    result = evomerge(search, "reproduce", summary["mlflow_run_id"], str(out))
    assert result.returncode == 0, result.stderr
    assert model_dir_sha256(out) == summary["best"]["tensors_sha256"]
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == 865_152


def test_reproduce_refuses_a_changed_parent_and_leaves_nothing(
    search: dict[str, object], zoo_dir: Path, tmp_path: Path
) -> None:
    summary = search["summary"]
    assert isinstance(summary, dict)
    changed_zoo = tmp_path / "zoo"
    shutil.copytree(zoo_dir, changed_zoo)
    weights = changed_zoo / "sort" / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    out = tmp_path / "rebuilt"
    result = evomerge(search, "reproduce", summary["mlflow_run_id"], str(out), "--zoo-dir", str(changed_zoo))
    assert result.returncode == 2
    assert "'zoo:sort'" in result.stderr and "not the one the search merged" in result.stderr
    assert not out.exists()


def test_the_winner_is_registered_with_its_scores(search: dict[str, object]) -> None:
    summary = search["summary"]
    assert isinstance(summary, dict)
    versions = client_of(search).search_model_versions("name = 'lineage-test'")
    assert len(versions) == 1
    version = versions[0]
    assert version.run_id == summary["mlflow_run_id"]
    assert version.tags["candidate_id"] == summary["best"]["candidate_id"]
    assert version.tags["tensors_sha256"] == summary["best"]["tensors_sha256"]
    assert float(version.tags["fitness"]) == pytest.approx(summary["best"]["fitness"], abs=1e-6)
    assert float(version.tags["evomerge_add/exact_match"]) == pytest.approx(summary["best"]["scores"]["evomerge_add"])
    assert "merge_method: task_arithmetic" in version.description
