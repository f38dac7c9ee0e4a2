"""The radix/histogram sparsification against its definitions.

TIES and breadcrumbs must keep exactly the entries a stable sort of the float32 magnitudes puts in the kept
range (equal magnitudes in index order), bit for bit, ties and NaN/inf included; DARE and DELLA must be
reproducible from the generator and keep entries at the right rates; DELLA's ranks must be those of a stable
double argsort, and its probabilities mergekit's arithmetic on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from tasks.merge.methods import sparsify
from tasks.merge.methods.sparsify import (
    bernoulli_prune,
    della_prune,
    magnitude_outliers,
    magnitude_prune,
    rescale_to_l1,
)

BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# the definitions, written with full stable sorts
def kept_by_sort(delta: Tensor, start: int, stop: int, *, descending: bool) -> Tensor:
    magnitudes = delta.abs().reshape(-1).float()
    order = torch.sort(magnitudes, descending=descending, stable=True).indices
    mask = torch.zeros(delta.numel(), dtype=delta.dtype)
    mask[order[start:stop]] = 1
    return mask.reshape(delta.shape)


def reference_prune(delta: Tensor, density: float, rescale: bool) -> Tensor:
    keep = max(1, int(density * delta.numel()))
    masked = delta * kept_by_sort(delta, 0, keep, descending=True)
    return rescale_to_l1(delta, masked) if rescale else masked


def reference_outliers(delta: Tensor, density: float, gamma: float, rescale: bool) -> Tensor:
    numel = delta.numel()
    keep, top = int(density * numel), int(gamma * numel)
    bottom = max(0, numel - keep - top)
    masked = delta * kept_by_sort(delta, bottom, bottom + keep, descending=False)
    return rescale_to_l1(delta, masked) if rescale else masked


def assert_same(got: Tensor, expected: Tensor) -> None:
    """Bit-identical; NaN only needs to sit at the same places (its sign bit is not part of the contract)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(got), nan)
    bits = BITS[got.element_size()]
    assert torch.equal(got[~nan].view(bits), expected[~nan].view(bits))


# ------------------------------------------------------------------------------------------------
# inputs: many ties, no ties, degenerate shapes, non-finite values
def bf16_ties(shape: tuple[int, ...] = (64, 48)) -> Tensor:
    """A bf16 task vector: a few thousand distinct magnitudes at most, so cut-offs fall inside tie groups."""
    return (torch.randn(shape, generator=generator(1)) * 0.02).bfloat16()


def coarse_ties() -> Tensor:
    return ((torch.randn(40, 30, generator=generator(2)) * 4).round() / 4).bfloat16()  # ~20 distinct values


def equal_magnitudes() -> Tensor:
    signs = torch.randint(0, 2, (37, 11), generator=generator(3)) * 2 - 1
    return signs.float() * 0.125


def fp32_distinct() -> Tensor:
    return torch.randn(50, 40, generator=generator(4))


def one_dim_bf16() -> Tensor:
    return bf16_ties((1000,))


def non_finite(dtype: torch.dtype) -> Callable[[], Tensor]:
    def build() -> Tensor:
        delta = (torch.randn(30, 20, generator=generator(5)) * 0.5).round().to(dtype)
        flat = delta.view(-1)
        flat[[3, 50, 51]] = float("nan")
        flat[77] = -float("nan")
        flat[[5, 99]] = float("inf")
        flat[[6, 300]] = -float("inf")
        return delta

    return build


INPUTS: dict[str, Callable[[], Tensor]] = {
    "bf16_ties": bf16_ties,
    "coarse_ties": coarse_ties,
    "equal_magnitudes": equal_magnitudes,
    "fp32_distinct": fp32_distinct,
    "fp16": lambda: (torch.randn(33, 17, generator=generator(6)) * 0.1).half(),
    "fp64": lambda: torch.randn(20, 10, generator=generator(7), dtype=torch.float64),
    "one_dim_bf16": one_dim_bf16,
    "tiny": lambda: torch.tensor([0.5, -0.5, 0.25]),
    "two_by_two": lambda: torch.tensor([[1.0, -1.0], [1.0, 2.0]]).bfloat16(),
    "numel_one": lambda: torch.tensor([-3.0]),
    "zeros_and_signed_zeros": lambda: torch.tensor([0.0, -0.0, 1.0, -1.0, 0.0, -0.0, 2.0]),
    "nan_inf_fp32": non_finite(torch.float32),
    "nan_inf_bf16": non_finite(torch.bfloat16),
}


def densities(numel: int) -> list[float]:
    # keep == 1 (the max(1, ·) floor), mid values, and keep == numel - 1
    return [1e-4, 0.1, 0.5, 0.77, (numel - 0.5) / numel]


@pytest.fixture(params=[None, 64, 1 << 30], ids=["block_default", "block_64", "block_whole"])
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also run with tiny blocks, so tie groups and cut-offs straddle block boundaries, and with the tensor
    whole in one block, as on a GPU (blocks.DEVICE_BLOCK)."""
    if request.param is not None:
        monkeypatch.setattr(sparsify, "_BLOCK", request.param)


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("rescale", [False, True])
def test_magnitude_prune_keeps_exactly_the_stable_sort_prefix(name: str, rescale: bool, block: None) -> None:
    delta = INPUTS[name]()
    for density in densities(delta.numel()):
        assert_same(magnitude_prune(delta, density, rescale_l1=rescale), reference_prune(delta, density, rescale))


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("rescale", [False, True])
def test_magnitude_outliers_keep_exactly_the_stable_sort_window(name: str, rescale: bool, block: None) -> None:
    delta = INPUTS[name]()
    for density in densities(delta.numel()):
        for gamma in (0.0, 0.01, 0.2, 0.6):  # 0.6: keep + top > numel, so bottom clamps to 0
            expected = reference_outliers(delta, density, gamma, rescale)
            assert_same(magnitude_outliers(delta, density, gamma, rescale_l1=rescale), expected)


def test_ties_at_the_cut_off_keep_the_lowest_indices() -> None:
    delta = torch.tensor([1.0, 3.0, -2.0, 2.0, 0.5, 2.0, -3.0, 2.0])  # four 2s around the cut-off
    # keep 4: both 3s, then the first two 2s by index (positions 2 and 3)
    assert magnitude_prune(delta, 0.5).tolist() == [0.0, 3.0, -2.0, 2.0, 0.0, 0.0, -3.0, 0.0]
    # ascending window [1, 5): 1.0, then the first three 2s by index
    assert magnitude_outliers(delta, 0.5, 0.375).tolist() == [1.0, 0.0, -2.0, 2.0, 0.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize("density", [1e-4, 0.3, 0.5, 0.9])
def test_kept_counts(density: float) -> None:
    delta = bf16_ties((300, 70))  # no exact zeros, so kept entries are the nonzero ones
    assert bool((delta != 0).all())
    keep = max(1, int(density * delta.numel()))
    assert int((magnitude_prune(delta, density) != 0).sum()) == keep
    window = int(density * delta.numel())
    assert int((magnitude_outliers(delta, density, 0.05) != 0).sum()) == window


def test_nan_counts_as_the_largest_magnitude() -> None:
    delta = torch.tensor([1.0, float("nan"), 5.0, -float("nan"), float("inf"), 2.0])
    pruned = magnitude_prune(delta, 0.5)  # keep 3: the two NaNs, then inf
    assert torch.isnan(pruned[[1, 3]]).all()
    assert pruned[[0, 2, 4, 5]].tolist() == [0.0, 0.0, float("inf"), 0.0]


def test_density_edges_are_unchanged() -> None:
    delta = bf16_ties()
    assert magnitude_prune(delta, 1.0) is delta
    assert torch.equal(magnitude_prune(delta, 0.0), torch.zeros_like(delta))
    assert magnitude_outliers(delta, 1.0, 0.1) is delta
    assert magnitude_prune(torch.empty(0), 0.5).numel() == 0


# ------------------------------------------------------------------------------------------------
# DARE
def binomial_bound(n: int, p: float) -> float:
    """Five standard deviations of a kept fraction over n independent draws."""
    return 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dare_is_reproducible_and_keeps_about_density(dtype: torch.dtype) -> None:
    delta = torch.randn(700, 600, generator=generator(8)).to(dtype)
    pruned = bernoulli_prune(delta, 0.3, generator(9), rescale_l1=False)
    assert pruned.dtype == dtype
    assert torch.equal(
        pruned.view(BITS[pruned.element_size()]),
        bernoulli_prune(delta, 0.3, generator(9), rescale_l1=False).view(BITS[pruned.element_size()]),
    )
    assert not torch.equal(pruned, bernoulli_prune(delta, 0.3, generator(10), rescale_l1=False))
    kept = (pruned != 0).float().mean().item()
    probability = torch.tensor(0.3, dtype=dtype).item()  # bf16 holds 0.30078125, as mergekit's filled tensor
    assert abs(kept - probability) < binomial_bound(delta.numel(), probability)
    # kept entries are unchanged, dropped ones are (signed) zeros
    assert torch.equal(pruned[pruned != 0], delta[pruned != 0])


def test_dare_rescale_matches_the_l1_norm() -> None:
    delta = torch.randn(300, 200, generator=generator(11))
    pruned = bernoulli_prune(delta, 0.4, generator(12))
    assert pruned.abs().sum().item() == pytest.approx(delta.abs().sum().item(), rel=1e-5)
    plain = bernoulli_prune(delta, 0.4, generator(12), rescale_l1=False)
    assert torch.equal(pruned, rescale_to_l1(delta, plain))


@pytest.mark.parametrize("probability", [0.5 / 256, 77.5 / 256, 0.75, 1.0, 0.0])
def test_bernoulli_draws_are_unbiased_below_the_byte_resolution(probability: float) -> None:
    """0.5/256: the bytes keep nothing (⌊256·p⌋ = 0), the extra positions all; 77.5/256: both take part."""
    numel = 1 << 22
    draws = sparsify._bernoulli_draws(torch.tensor(probability), numel, generator(13))
    factors = torch.cat(list(draws.factor_blocks(torch.float32)))
    kept = factors.mean().item()
    assert set(factors.unique().tolist()) <= {0.0, 1.0}
    assert abs(kept - probability) <= binomial_bound(numel, probability) + 1e-12


def test_bernoulli_factors_keep_exactly_the_drawn_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Factors = [byte < ⌊256·p⌋] or one of the extra positions, whatever the block size."""
    numel = 10_000
    draws = sparsify._bernoulli_draws(torch.tensor([0.3, 0.61], dtype=torch.float64), numel, generator(14))
    assert draws.extra.numel() > 0  # 0.3 · 256 = 76.8: the rest is made up by extra positions
    assert bool((draws.extra.diff() > 0).all()) and int(draws.extra.min()) >= 0 and int(draws.extra.max()) < numel
    expected = (draws.draws.view(-1, 2) < draws.threshold).reshape(-1)
    expected[draws.extra] = True
    for block in (None, 998, 1 << 30):
        if block:
            monkeypatch.setattr(sparsify, "_BLOCK", block)
        factors = torch.cat(list(draws.factor_blocks(torch.bfloat16)))
        assert torch.equal(factors, expected.to(torch.bfloat16))


@pytest.mark.parametrize("rate", [1e-3, 0.2, 1.0])
def test_bernoulli_positions_follow_each_rate(rate: float) -> None:
    numel = 1 << 20
    rates = torch.tensor([rate, rate / 4], dtype=torch.float64)  # even positions at `rate`, odd at a quarter
    positions = sparsify._bernoulli_positions(rates, numel, generator(15))
    assert bool((positions.diff() > 0).all())
    for parity, expected in enumerate(rates.tolist()):
        hits = int((positions % 2 == parity).sum())
        assert abs(hits / (numel // 2) - expected) <= binomial_bound(numel // 2, expected) + 1e-12


# ------------------------------------------------------------------------------------------------
# DELLA
@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def stable_ranks(lines: Tensor) -> Tensor:
    """Ascending rank of each entry in its row (last dim), equal magnitudes by index: a stable double argsort."""
    return torch.sort(lines.abs(), dim=-1, stable=True).indices.argsort(dim=-1, stable=True)


@pytest.mark.parametrize(
    "delta",
    [
        bf16_ties((64, 300)),
        coarse_ties(),
        torch.randn(64, 300, generator=generator(14)),
        (torch.randn(16, 40, generator=generator(15)) * 0.1).half(),
        torch.randn(16, 40, generator=generator(16), dtype=torch.float64).round(decimals=1),
        non_finite(torch.float32)(),
    ],
    ids=["bf16", "coarse", "fp32", "fp16", "fp64", "nan_inf"],
)
def test_della_ranks_are_a_stable_double_argsort(delta: Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = sparsify._magnitude_keys(delta, as_float32=False).reshape(delta.shape)
    positions = torch.arange(delta.shape[1]).expand(delta.shape).contiguous()  # rank j at column j
    for threads, block in ((1, None), (3, None), (3, 100)):  # one thread; three; three with parts of a few rows
        if block:
            monkeypatch.setattr(sparsify, "_BLOCK", block)
        with torch_threads(threads):
            ranks = sparsify._unrank(keys, positions)
        assert torch.equal(ranks, stable_ranks(delta))


@pytest.mark.parametrize("work", [torch.float32, torch.bfloat16])
def test_della_probabilities_are_mergekits_arithmetic_on_the_ranks(work: torch.dtype) -> None:
    delta = bf16_ties((8, 1500)).to(work)  # rows long enough for bf16 to round the ranks
    ranks = stable_ranks(delta).to(work) + 1
    low = ranks.min(dim=1, keepdim=True).values
    high = ranks.max(dim=1, keepdim=True).values
    expected = (0.4 - 0.15) + ((ranks - low) / (high - low)).clamp(0, 1) * 2 * 0.15
    table = sparsify._rank_probabilities(delta.shape[1], 0.4, 0.15, work, delta.device)
    assert torch.equal(table[stable_ranks(delta)], expected)


def test_della_is_reproducible_and_favours_large_magnitudes() -> None:
    delta = torch.randn(400, 512, generator=generator(17))
    pruned = della_prune(delta, 0.5, 0.2, generator(18), rescale_l1=False)
    assert torch.equal(pruned, della_prune(delta, 0.5, 0.2, generator(18), rescale_l1=False))
    assert not torch.equal(pruned, della_prune(delta, 0.5, 0.2, generator(19), rescale_l1=False))
    kept = pruned != 0
    ranks = stable_ranks(delta)
    quarter = delta.shape[1] // 4
    bottom, top = kept[ranks < quarter], kept[ranks >= 3 * quarter]
    # probability runs linearly 0.3 -> 0.7 over the ranks: ~0.35 in the bottom quarter, ~0.65 in the top one
    for rate, expected in ((bottom.float().mean().item(), 0.35), (top.float().mean().item(), 0.65)):
        assert abs(rate - expected) < binomial_bound(bottom.numel(), 0.5) + 0.001
    assert abs(kept.float().mean().item() - 0.5) < binomial_bound(kept.numel(), 0.5)


def test_della_rescale_and_layouts() -> None:
    delta = torch.randn(3, 200, 7, generator=generator(20)).bfloat16()  # ranks along dim 1
    pruned = della_prune(delta, 0.5, 0.1, generator(21))
    assert pruned.shape == delta.shape and pruned.dtype == delta.dtype
    plain = della_prune(delta, 0.5, 0.1, generator(21), rescale_l1=False)
    assert torch.equal(pruned, rescale_to_l1(delta, plain))
    vector = della_prune(torch.randn(1000, generator=generator(22)), 0.5, 0.1, generator(23))
    assert vector.shape == (1000,)
    with pytest.raises(ValueError, match="at least 2"):
        della_prune(torch.randn(5, 1), 0.5, 0.1, generator(24))
