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


def _with_misspelt_builtin_task(config: dict[str, object]) -> None:
    config["evaluation"] = {**config["evaluation"], "tasks": ["evomerge_add", "gsm8kk"]}  # type: ignore[dict-item]


def _with_metric_not_reported(config: dict[str, object]) -> None:
    tasks = ["evomerge_add", {"task": "evomerge_add_choice", "metric": "exact_match"}]
    config["evaluation"] = {**config["evaluation"], "tasks": tasks}  # type: ignore[dict-item]


def _with_zero_weight(config: dict[str, object]) -> None:
    tasks = ["evomerge_add", {"task": "evomerge_sort", "weight": 0}]
    config["evaluation"] = {**config["evaluation"], "tasks": tasks}  # type: ignore[dict-item]


def _with_unknown_entry_key(config: dict[str, object]) -> None:
    tasks = ["evomerge_add", {"task": "evomerge_sort", "wieght": 2}]
    config["evaluation"] = {**config["evaluation"], "tasks": tasks}  # type: ignore[dict-item]


def _with_guard_on_an_unknown_parent(config: dict[str, object]) -> None:
    config["guard"] = {"tasks": ["evomerge_copy"], "reference": "zoo:reverse"}


def _with_missing_include_folder(config: dict[str, object]) -> None:
    config["evaluation"] = {**config["evaluation"], "include_path": "my_taks"}  # type: ignore[dict-item]


def _without_base_model(config: dict[str, object]) -> None:
    config["recipe"] = {key: value for key, value in config["recipe"].items() if key != "base_model"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("break_config", "message", "hint"),
    [
        (_with_density_gene, "genes.2.high: density: 1.5 is out of range (0, 1] (merge_method ties)", ""),
        (
            _with_misspelt_held_out_task,
            "evaluation: unknown lm-eval tasks ['evomerge_add_tset']",
            "(evomerge_add_tset: did you mean evomerge_add_test",
        ),
        (_without_base_model, "recipe: base_model: required by merge_method task_arithmetic", ""),
        (_with_misspelt_builtin_task, "evaluation: unknown lm-eval tasks ['gsm8kk']", "(gsm8kk: did you mean gsm8k"),
        (
            _with_metric_not_reported,
            "evaluation.tasks[1] (evomerge_add_choice): metric 'exact_match' is not one the task reports",
            "(it reports: acc, acc_norm)",
        ),
        (_with_zero_weight, "evaluation.tasks.1.weight", "greater than 0"),
        (_with_unknown_entry_key, "evaluation.tasks.1.wieght: unknown key", ""),
        (_with_guard_on_an_unknown_parent, "guard: reference 'zoo:reverse' is not 'base', 'best_parent'", ""),
        (_with_missing_include_folder, "evaluation.include_path: lm-eval task folder not found", "my_taks"),
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
