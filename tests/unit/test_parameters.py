"""Per-layer gradients and filtered parameters, evaluated exactly as mergekit evaluates them."""

from __future__ import annotations

import pytest

from tasks.merge.parameters import evaluate_setting, resolve
from tasks.merge.recipe import ConditionalParameter


@pytest.mark.parametrize(("t", "expected"), [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 0.75), (1.0, 0.5)])
def test_gradient_interpolates_piecewise_linearly(t: float, expected: float) -> None:
    assert evaluate_setting([0.0, 1.0, 0.5], "model.layers.3.mlp.up_proj.weight", t) == pytest.approx(expected)


def test_first_matching_filter_wins_and_unfiltered_is_the_fallback() -> None:
    setting = [
        ConditionalParameter(filter="self_attn", value=[0.0, 1.0]),
        ConditionalParameter(filter="mlp", value=0.25),
        ConditionalParameter(value=0.5),
    ]
    assert evaluate_setting(setting, "model.layers.1.self_attn.q_proj.weight", 1.0) == 1.0
    assert evaluate_setting(setting, "model.layers.1.mlp.up_proj.weight", 1.0) == 0.25
    assert evaluate_setting(setting, "model.norm.weight", 0.0) == 0.5


def test_a_scope_without_a_matching_filter_falls_through() -> None:
    specific = {"weight": [ConditionalParameter(filter="mlp", value=2.0)]}
    general = {"weight": 1.0}
    assert resolve("weight", [specific, general], "model.layers.0.mlp.down_proj.weight", 0.0) == 2.0
    assert resolve("weight", [specific, general], "model.layers.0.self_attn.o_proj.weight", 0.0) == 1.0
    assert resolve("density", [specific, general], "x", 0.0) is None
