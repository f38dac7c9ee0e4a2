"""The shipped example recipes merged on the real demo zoo: transformers loads and runs every child, and
the task-arithmetic child is better on average than each of its parents (what makes the zoo worth
searching)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
RECIPES = sorted((ROOT / "configs" / "recipes").glob("demo-*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_zoo_recipe_merges_into_a_model_transformers_runs(recipe: Path, zoo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / recipe.stem
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "merge", str(recipe), str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "EVOMERGE_ZOO_DIR": str(zoo_dir)},
    )
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = tokenizer("ecbda>", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer and set(answer) <= set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_task_arithmetic_child_beats_each_parent_on_average(zoo_dir: Path, tmp_path: Path) -> None:
    from tasks.evaluate import EvaluationConfig, evaluate_model_dir

    out = tmp_path / "child"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "merge",
            str(ROOT / "configs/recipes/demo-task-arithmetic.yaml"),
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "EVOMERGE_ZOO_DIR": str(zoo_dir)},
    )
    assert result.returncode == 0, result.stderr
    config = EvaluationConfig(tasks=("evomerge_add", "evomerge_sort"))

    def mean_score(model_dir: Path) -> float:
        scores = evaluate_model_dir(model_dir, config)
        return sum(values["exact_match"] for values in scores.values()) / len(scores)

    child = mean_score(out)
    parents = {name: mean_score(zoo_dir / name) for name in ("base", "add", "sort")}
    assert all(child > score for score in parents.values()), (child, parents)
