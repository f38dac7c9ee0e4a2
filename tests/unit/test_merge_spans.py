"""Runs of tensors merged as one (tasks/merge/spans.py) give, tensor for tensor and bit for bit, what the
engine gives merging them one at a time; only elementwise methods are grouped, and a run never joins
tensors whose parameter values differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tasks.merge.engine import iter_merged_tensors
from tasks.merge.plan import plan_merge
from tasks.merge.recipe import parse_recipe
from tasks.merge.spans import flatten_parents, group_spans, iter_span_tensors

RECIPES = {
    "task_arithmetic, per-layer gradients": """
merge_method: task_arithmetic
base_model: base
models:
  - {model: a, parameters: {weight: [0.2, 1.3]}}
  - {model: b, parameters: {weight: [0.9, -0.4, 0.7]}}
parameters: {lambda: 0.8}
""",
    "task_arithmetic, normalised, filtered by tensor": """
merge_method: task_arithmetic
base_model: base
models:
  - {model: a, parameters: {weight: [{filter: mlp, value: 0.5}, {value: 1.0}]}}
  - {model: b, parameters: {weight: 0.25}}
parameters: {normalize: true}
""",
    "linear in float16": """
merge_method: linear
dtype: float16
models:
  - {model: a, parameters: {weight: [1.0, 0.0]}}
  - {model: b, parameters: {weight: 0.5}}
""",
    "nearswap": """
merge_method: nearswap
base_model: base
models:
  - {model: a}
parameters: {t: 0.01}
""",
}


@pytest.mark.parametrize("text", RECIPES.values(), ids=RECIPES.keys())
def test_spans_merge_bit_for_bit_as_the_engine(tiny_models: dict[str, Path], text: str) -> None:
    plan = plan_merge(parse_recipe(yaml.safe_load(text)), tiny_models, "test recipe")
    flat = flatten_parents(plan)
    expected = dict(iter_merged_tensors(plan))
    merged = dict(iter_span_tensors(plan, flat))
    assert list(merged) == [job.output_name for job in plan.jobs]
    for name, tensor in expected.items():
        assert merged[name].dtype == tensor.dtype and merged[name].shape == tensor.shape
        assert torch.equal(merged[name].view(torch.uint8), tensor.view(torch.uint8)), name
    spans = group_spans(plan, flat)
    assert sum(len(span.jobs) for span in spans) == len(plan.jobs)
    assert len(spans) < len(plan.jobs)  # runs were formed: that is the point


def test_a_run_never_joins_tensors_with_different_settings(tiny_models: dict[str, Path]) -> None:
    plan = plan_merge(
        parse_recipe(yaml.safe_load(RECIPES["task_arithmetic, per-layer gradients"])), tiny_models, "test recipe"
    )
    for span in group_spans(plan, flatten_parents(plan)):
        assert len({(tuple(job.per_model["weight"]), job.dtype) for job in span.jobs}) == 1


def test_methods_that_are_not_elementwise_go_tensor_by_tensor(tiny_models: dict[str, Path]) -> None:
    text = """
merge_method: ties
base_model: base
models:
  - {model: a, parameters: {weight: 1.0, density: 0.5}}
  - {model: b, parameters: {weight: 1.0, density: 0.5}}
"""
    plan = plan_merge(parse_recipe(yaml.safe_load(text)), tiny_models, "test recipe")
    spans = group_spans(plan, flatten_parents(plan))
    assert all(len(span.jobs) == 1 and not span.flat for span in spans)
    expected = dict(iter_merged_tensors(plan))
    for name, tensor in iter_span_tensors(plan, flatten_parents(plan)):
        assert torch.equal(tensor, expected[name])
