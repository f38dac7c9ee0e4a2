"""The property the demo search exists for: task arithmetic over the add and sort experts finds children
better than every parent. Plain torch on the state dicts (independent of the merge engine), scored with
the same Evaluator a search uses."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tasks.evaluate import EvaluationConfig, Evaluator

pytestmark = pytest.mark.integration

TASKS = ("evomerge_add", "evomerge_sort")
WEIGHTS = (0.6, 0.8, 1.0)


def test_task_arithmetic_of_add_and_sort_beats_every_parent(zoo_dir: Path) -> None:
    evaluator = Evaluator(EvaluationConfig(tasks=TASKS))
    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / "base")
    names = ("base", "add", "sort")
    states = {name: AutoModelForCausalLM.from_pretrained(zoo_dir / name).state_dict() for name in names}

    def skill_scores(model: torch.nn.Module) -> tuple[float, float]:
        scores = evaluator.evaluate(model, tokenizer)
        return scores["evomerge_add"]["exact_match"], scores["evomerge_sort"]["exact_match"]

    parents = {}
    for name in states:
        parents[name] = skill_scores(AutoModelForCausalLM.from_pretrained(zoo_dir / name))
    child = AutoModelForCausalLM.from_pretrained(zoo_dir / "base")
    grid = {}
    with torch.no_grad():
        for add_weight, sort_weight in itertools.product(WEIGHTS, WEIGHTS):
            for key, tensor in child.state_dict().items():
                base = states["base"][key]
                add_delta, sort_delta = states["add"][key] - base, states["sort"][key] - base
                tensor.copy_(base + add_weight * add_delta + sort_weight * sort_delta)
            grid[add_weight, sort_weight] = skill_scores(child)

    best_point, best = max(grid.items(), key=lambda item: sum(item[1]))
    best_parent_mean = max(sum(scores) / 2 for scores in parents.values())
    assert sum(best) / 2 >= 0.74, grid
    assert min(best) >= 0.65, grid
    assert sum(best) / 2 >= best_parent_mean + 0.1, (best_point, best, parents)
    # Plain averaging (0.5/0.5 of the deltas) is not the optimum: the weights are worth searching.
    assert sum(best) > sum(grid[0.6, 0.6])
