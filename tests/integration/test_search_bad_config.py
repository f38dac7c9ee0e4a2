"""`evomerge search` refuses a config it can tell is wrong before it starts: one readable line, exit 2, no
traceback, nothing written. Each of these mistakes used to be found only later: a gene range outside its
parameter's range failed every candidate drawn there (16 of 81), a misspelt held-out task failed the final
report after the whole search, and a missing base model surfaced inside the Prefect flow with its traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_search, two_expert_search, write_search

pytestmark = pytest.mark.integration


def _with_density_gene(config: dict[str, object]) -> None:
    config["recipe"] = {**config["recipe"], "merge_method": "ties"}  # type: ignore[dict-item]
    config["genes"] = [*config["genes"], {"parameter": "density", "model": "zoo:add", "low": 0.2, "high": 1.5}]  # type: ignore[misc]


def _with_misspelt_held_out_task(config: dict[str, object]) -> None:
    config["evaluation"] = {**config["evaluation"], "held_out_tasks": ["evomerge_add_tset", "evomerge_sort_test"]}  # type: ignore[dict-item]


def _without_base_model(config: dict[str, object]) -> None:
    config["recipe"] = {key: value for key, value in config["recipe"].items() if key != "base_model"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("break_config", "message", "hint"),
    [
        (_with_density_gene, "genes.2.high: density: 1.5 is out of range (0, 1] (merge_method ties)", ""),
        (
            _with_misspelt_held_out_task,
            "evaluation: unknown lm-eval tasks ['evomerge_add_tset']",
            "(evomerge_add_tset: did you mean evomerge_add_test or evomerge_add?)",
        ),
        (_without_base_model, "recipe: base_model: required by merge_method task_arithmetic", ""),
    ],
)
def test_a_wrong_search_config_is_refused_before_the_search_starts(
    zoo_dir: Path, tmp_path: Path, break_config: object, message: str, hint: str
) -> None:
    config = two_expert_search("bad", seed=0, algorithm={"population_size": 4, "generations": 2}, limit=20)
    break_config(config)  # type: ignore[operator]
    write_search(tmp_path, config)
    result = run_search(tmp_path, zoo_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {tmp_path / 'search.yaml'}: {message}" in " ".join(result.stderr.split())
    assert hint in " ".join(result.stderr.split())
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()  # no output directory, no checkpoint
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run: the flow never started
