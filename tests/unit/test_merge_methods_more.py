"""The rest of mergekit's methods against their formulas and invariants."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.merge.methods.arcee_fusion import _quantiles, arcee_fusion
from tasks.merge.methods.breadcrumbs import breadcrumbs_linear as breadcrumbs
from tasks.merge.methods.dare import dare_linear, dare_ties
from tasks.merge.methods.della import della_linear
from tasks.merge.methods.karcher import _dots, karcher
from tasks.merge.methods.model_stock import model_stock
from tasks.merge.methods.multislerp import multislerp
from tasks.merge.methods.nearswap import nearswap
from tasks.merge.methods.nuslerp import nuslerp
from tasks.merge.methods.passthrough import passthrough
from tasks.merge.methods.sce import population_variance, sce
from tasks.merge.methods.sparsify import bernoulli_prune, della_prune, magnitude_outliers
from tasks.merge.methods.task_arithmetic import task_arithmetic
from tasks.merge.methods.ties import ties


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def trio() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    base = torch.randn(64, 32)
    return base, base + 0.1 * torch.randn(64, 32), base + 0.1 * torch.randn(64, 32)


def test_dare_with_density_one_is_task_arithmetic(trio: tuple[torch.Tensor, ...]) -> None:
    base, a, b = trio
    expected = task_arithmetic(base, [a, b], weight=[0.6, 0.8])
    assert torch.equal(
        dare_linear(base, [a, b], weight=[0.6, 0.8], density=[1.0, 1.0], generator=generator()), expected
    )


def test_dare_ties_with_density_one_is_ties_without_normalisation(trio: tuple[torch.Tensor, ...]) -> None:
    base, a, b = trio
    expected = ties(base, [a, b], weight=[0.6, 0.8], density=[1.0, 1.0], normalize=False)
    assert torch.equal(dare_ties(base, [a, b], weight=[0.6, 0.8], density=[1.0, 1.0], generator=generator()), expected)


def test_dare_mask_keeps_about_density_and_matches_the_l1_norm() -> None:
    delta = torch.randn(200, 200, generator=generator(1))
    pruned = bernoulli_prune(delta, 0.3, generator(2))
    kept = (pruned != 0).float().mean().item()
    assert kept == pytest.approx(0.3, abs=0.01)
    assert pruned.abs().sum().item() == pytest.approx(delta.abs().sum().item(), rel=1e-5)
    assert torch.equal(pruned, bernoulli_prune(delta, 0.3, generator(2)))
    assert not torch.equal(pruned, bernoulli_prune(delta, 0.3, generator(3)))


def test_breadcrumbs_drops_outliers_and_the_smallest() -> None:
    delta = torch.tensor([float(i) for i in range(1, 101)])  # magnitudes 1..100
    pruned = magnitude_outliers(delta, density=0.5, gamma=0.1)
    kept = delta[pruned != 0].tolist()
    assert kept == [float(i) for i in range(41, 91)]  # top 10 outliers and bottom 40 removed


def test_breadcrumbs_method_sums_pruned_task_vectors() -> None:
    base = torch.zeros(100)
    model = torch.arange(1, 101, dtype=torch.float32)
    result = breadcrumbs(base, [model], weight=[2.0], density=[0.5], gamma=[0.1])
    expected = torch.where((model > 40) & (model <= 90), 2 * model, torch.zeros_like(model))
    assert torch.equal(result, expected)


def test_della_keeps_larger_entries_more_often() -> None:
    delta = torch.arange(1, 1001, dtype=torch.float32).repeat(50, 1)
    pruned = della_prune(delta, 0.5, 0.2, generator(4), rescale_l1=False)
    kept = (pruned != 0).float().mean(dim=0)
    assert kept[:100].mean().item() == pytest.approx(0.32, abs=0.04)  # probability ~ 0.3 at the small end
    assert kept[-100:].mean().item() == pytest.approx(0.68, abs=0.04)  # ~ 0.7 at the large end
    assert (pruned != 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_della_linear_rejects_an_impossible_epsilon(trio: tuple[torch.Tensor, ...]) -> None:
    base, a, _ = trio
    with pytest.raises(ValueError, match="density - epsilon"):
        della_linear(base, [a], weight=[1.0], density=[0.1], epsilon=[0.2], generator=generator())


def test_model_stock_formula_for_two_models() -> None:
    base = torch.zeros(2)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # orthogonal task vectors: cos = 0 -> t = 0
    assert torch.equal(model_stock(base, [a, b]), base)
    c = torch.tensor([1.0, 1.0])
    d = torch.tensor([1.0, 0.0])  # cos = 1/sqrt(2) -> t = 2c / (1 + c)
    cosine = 1 / math.sqrt(2)
    t = 2 * cosine / (1 + cosine)
    assert torch.allclose(model_stock(base, [c, d]), t * (c + d) / 2, atol=1e-6)


def test_nearswap_takes_close_values_and_blends_far_ones() -> None:
    base = torch.tensor([0.0, 0.0, 0.0])
    other = torch.tensor([0.05, 0.5, -2.0])
    result = nearswap(base, [other], t=0.1)
    # weights: min(1, 0.1/0.05)=1, 0.1/0.5=0.2, 0.1/2=0.05
    assert torch.allclose(result, torch.tensor([0.05, 0.1, -0.1]), atol=1e-7)


def test_passthrough_copies_or_scales() -> None:
    tensor = torch.tensor([1.0, -2.0])
    assert passthrough(None, [tensor]) is tensor
    assert torch.equal(passthrough(None, [tensor], scale=[0.5]), torch.tensor([0.5, -1.0]))


def test_nuslerp_endpoints_follow_the_weights(trio: tuple[torch.Tensor, ...]) -> None:
    base, a, b = trio
    assert torch.allclose(nuslerp(None, [a, b], weight=[1.0, 0.0]), a, atol=1e-5)
    assert torch.allclose(nuslerp(None, [a, b], weight=[0.0, 1.0]), b, atol=1e-5)
    assert torch.allclose(nuslerp(base, [a, b], weight=[1.0, 0.0]), a, atol=1e-5)


def test_multislerp_of_one_direction_keeps_it() -> None:
    v = torch.tensor([3.0, 4.0])
    result = multislerp(None, [v, 2 * v], weight=[1.0, 1.0])
    assert torch.allclose(result, 1.5 * v, atol=1e-5)  # same direction, mean norm 7.5


def test_karcher_mean_of_orthogonal_unit_vectors_is_the_bisector() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(karcher(None, [a, b]), torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-5)
    assert torch.allclose(karcher(None, [a, a]), a)


def test_sce_with_equal_energy_and_agreement_is_the_average(trio: tuple[torch.Tensor, ...]) -> None:
    base = torch.zeros(4)
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([4.0, 3.0, 2.0, 1.0])  # same mean square as a, all signs positive
    assert torch.allclose(sce(base, [a, b]), (a + b) / 2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_arcee_quantiles_are_the_sorted_entries_at_their_positions(dtype: torch.dtype) -> None:
    values = torch.randn(5001, generator=generator(3)).to(dtype)
    values[17] = float("nan")  # sorts last, as in a full sort
    quantiles = [0.5, 0.25, 0.75, 0.0, 1.0]
    ordered = torch.sort(values).values
    found = _quantiles(values, quantiles)
    for q, value in zip(quantiles, found, strict=True):
        expected = ordered[int(q * (values.numel() - 1))]
        assert value.dtype == dtype
        assert torch.equal(value, expected) or (value.isnan() and expected.isnan())


def test_arcee_fusion_keeps_only_the_outlying_changes() -> None:
    base = torch.zeros(8, 64)
    other = base + 0.01 * torch.randn(8, 64, generator=generator(1))
    other[3, 5] = 4.0  # row 3's softmax moves far: its changes are the important ones
    merged = arcee_fusion(base, [other], generator=generator())
    kept = merged != base
    assert torch.equal(merged[kept], other[kept])  # a change is taken whole or not at all
    assert torch.equal(merged[3], other[3])
    others = torch.cat([kept[:3], kept[4:]])
    assert others.float().mean() < 0.05  # elsewhere only the rare outliers of small changes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_sce_variance_equals_torch_var_bit_for_bit(dtype: torch.dtype) -> None:
    base = torch.randn(300, 257, generator=generator(5))
    stacked = torch.stack([base, base * 1.01, -base, base + 1e-3]).to(dtype)
    stacked[2, 7, 7] = float("inf")  # non-finite entries follow torch's own propagation
    expected = torch.var(stacked, dim=0, unbiased=False)
    found = population_variance(stacked)
    assert found.dtype == dtype
    assert torch.equal(found.isnan(), expected.isnan())
    assert torch.equal(found.nan_to_num(), expected.nan_to_num())


def test_karcher_dots_side_by_side_equal_one_by_one() -> None:
    mean = torch.randn(70_000, generator=generator(7)).bfloat16()
    units = [torch.randn(70_000, generator=generator(seed)).bfloat16() for seed in (8, 9, 10)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side_by_side = _dots(mean, units)
    finally:
        torch.set_num_threads(threads)
    assert [d.item() for d in side_by_side] == [torch.dot(mean, unit).item() for unit in units]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_deltas_computed_a_block_at_a_time_equal_the_whole_deltas(
    dtype: torch.dtype, count: int, normalize: bool
) -> None:
    """Unpruned task vectors are computed block by block (never whole, `FUSED_BLOCK`); the result must be
    bit for bit what the whole [n, numel] deltas give (the path the mergekit parity tests pin), across
    several blocks and a ragged last one, with models stored in another dtype than the base."""
    from tasks.merge.methods.task_vectors import FUSED_BLOCK, combine_task_vectors, task_vectors

    torch.manual_seed(count)
    shape = (5, (FUSED_BLOCK * 2 + FUSED_BLOCK // 2 + 7) // 5)
    base = torch.randn(shape).to(dtype)
    models = [(base.float() + 0.05 * torch.randn(shape)).to(torch.float32 if i % 2 else dtype) for i in range(count)]
    weight = [0.4 + 0.3 * i for i in range(count)]
    fused = combine_task_vectors(base, models, weight, normalize=normalize, scale=0.7)
    whole = combine_task_vectors(
        base, models, weight, normalize=normalize, scale=0.7, deltas=task_vectors(base, models)
    )
    assert fused.dtype == dtype and fused.shape == base.shape
    assert torch.equal(fused, whole)
