"""Each merge method against its formula, hand-computed values, and the invariants the papers state."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.merge.methods.linear import linear
from tasks.merge.methods.slerp import slerp
from tasks.merge.methods.sparsify import magnitude_prune
from tasks.merge.methods.task_arithmetic import task_arithmetic
from tasks.merge.methods.ties import ties

finite = st.floats(-4, 4, allow_nan=False, width=32)
vectors = st.lists(finite, min_size=1, max_size=24)


def tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_linear_is_the_normalised_weighted_average() -> None:
    a, b = tensor([1.0, 2.0, -3.0]), tensor([3.0, 0.0, 1.0])
    result = linear(None, [a, b], weight=[1.0, 3.0])
    assert torch.equal(result, tensor([2.5, 0.5, 0.0]))


def test_linear_without_normalize_is_the_weighted_sum() -> None:
    a, b = tensor([1.0, 2.0]), tensor([3.0, -1.0])
    assert torch.equal(linear(None, [a, b], weight=[0.5, 2.0], normalize=False), tensor([6.5, -1.0]))


def test_linear_keeps_bf16_inputs_in_bf16_but_sums_in_fp32() -> None:
    a = torch.full((4,), 1.0, dtype=torch.bfloat16)
    b = torch.full((4,), 1.0 + 2**-7, dtype=torch.bfloat16)
    result = linear(None, [a, b, b], weight=[1.0, 1.0, 1.0], normalize=False)
    assert result.dtype == torch.bfloat16
    assert result[0].item() == pytest.approx(3.0 + 2 * 2**-7, abs=2**-6)


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(0.05, 5))
def test_linear_with_one_model_is_the_model(values: list[float], weight: float) -> None:
    model = tensor(values)
    assert torch.allclose(linear(None, [model], weight=[weight]), model, rtol=1e-6, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(vectors, st.data())
def test_task_arithmetic_with_lambda_zero_is_the_base(values: list[float], data: st.DataObject) -> None:
    base = tensor(values)
    other = tensor(data.draw(st.lists(finite, min_size=len(values), max_size=len(values))))
    result = task_arithmetic(base, [other], weight=[0.7], **{"lambda": 0.0})
    assert torch.equal(result, base)


def test_task_arithmetic_formula() -> None:
    base = tensor([1.0, 1.0, 1.0])
    a, b = tensor([2.0, 1.0, 0.0]), tensor([1.0, 3.0, 1.0])
    result = task_arithmetic(base, [a, b], weight=[1.0, 0.5], **{"lambda": 2.0})
    # base + 2 * (1.0 * [1, 0, -1] + 0.5 * [0, 2, 0])
    assert torch.equal(result, tensor([3.0, 3.0, -1.0]))


def test_task_arithmetic_normalize_divides_by_the_weight_sum() -> None:
    base = tensor([0.0, 0.0])
    a, b = tensor([2.0, 0.0]), tensor([0.0, 4.0])
    result = task_arithmetic(base, [a, b], weight=[1.0, 3.0], normalize=True)
    assert torch.equal(result, tensor([0.5, 3.0]))


def test_magnitude_prune_keeps_the_largest_entries() -> None:
    delta = tensor([0.1, -5.0, 0.3, 2.0, -0.2, 0.0, 1.0, -3.0, 0.05, 0.4])
    pruned = magnitude_prune(delta, 0.3)  # int(0.3 * 10) = 3 entries survive
    assert torch.equal(pruned, tensor([0, -5.0, 0, 0, 0, 0, 0, -3.0, 0, 0]) + tensor([0, 0, 0, 2.0, 0, 0, 0, 0, 0, 0]))


def test_magnitude_prune_rescale_keeps_the_l1_norm() -> None:
    delta = tensor([1.0, -2.0, 3.0, -4.0])
    pruned = magnitude_prune(delta, 0.5, rescale_l1=True)
    assert pruned.abs().sum().item() == pytest.approx(10.0)
    assert torch.count_nonzero(pruned) == 2


def test_ties_elects_the_sign_and_averages_agreeing_deltas() -> None:
    base = tensor([0.0, 0.0, 0.0, 0.0])
    a = tensor([1.0, -2.0, 3.0, 0.0])
    b = tensor([3.0, 1.0, -1.0, 0.0])
    c = tensor([-1.0, 1.0, 2.0, 0.0])
    result = ties(base, [a, b, c], weight=[1.0, 1.0, 1.0], density=[1.0, 1.0, 1.0])
    # entry 0: sum +3 -> (+1, +3) agree -> mean 2; entry 1: sum 0 -> + wins -> (1, 1) -> 1;
    # entry 2: sum +4 -> (3, 2) -> 2.5; entry 3: all zero -> divisor 1 -> 0
    assert torch.equal(result, tensor([2.0, 1.0, 2.5, 0.0]))


@settings(max_examples=50, deadline=None)
@given(vectors, st.data(), st.floats(0.1, 2))
def test_ties_with_density_one_and_one_model_is_task_arithmetic(
    values: list[float], data: st.DataObject, weight: float
) -> None:
    base = tensor(values)
    other = tensor(data.draw(st.lists(finite, min_size=len(values), max_size=len(values))))
    expected = task_arithmetic(base, [other], weight=[weight])
    result = ties(base, [other], weight=[weight], density=[1.0], normalize=False)
    assert torch.equal(result, expected)


def test_ties_trims_before_electing() -> None:
    base = torch.zeros(4)
    a = tensor([4.0, 0.1, 0.1, 0.1])
    b = tensor([0.2, -3.0, 0.2, 0.2])
    result = ties(base, [a, b], weight=[1.0, 1.0], density=[0.25, 0.25])
    assert torch.equal(result, tensor([4.0, -3.0, 0.0, 0.0]))


def test_slerp_endpoints() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(64), torch.randn(64)
    assert torch.allclose(slerp(a, [b], t=0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, [b], t=1.0), b, atol=1e-6)


def test_slerp_of_orthogonal_unit_vectors_stays_on_the_circle() -> None:
    a, b = tensor([1.0, 0.0]), tensor([0.0, 1.0])
    halfway = slerp(a, [b], t=0.5)
    assert torch.allclose(halfway, tensor([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)
    third = slerp(a, [b], t=1 / 3)
    assert torch.allclose(third, tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]), atol=1e-6)


def test_slerp_of_parallel_tensors_falls_back_to_lerp() -> None:
    a = tensor([1.0, 2.0, 3.0])
    b = 2 * a
    assert torch.allclose(slerp(a, [b], t=0.25), 1.25 * a, atol=1e-6)
