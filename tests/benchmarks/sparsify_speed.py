"""Sparsification speed: the sort-based implementation (a private copy below, as it was before the radix
rewrite) against tasks/merge/methods/sparsify.py, side by side in one process, on task vectors of the shapes
of a ~374M-parameter Llama (a 32000x1024 embedding, a 2816x1024 MLP matrix), bf16 and fp32. Prints a table
(best of --repeats rounds, old and new alternating); asserts nothing.

    .venv/bin/python tests/benchmarks/sparsify_speed.py [--repeats 3] [--threads N]

The deltas are differences of two bf16 (or fp32) tensors, like a fine-tune's task vector, so bf16 deltas have
only a few thousand distinct magnitudes and ties at the TIES/breadcrumbs cut-offs are common.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.merge.methods import sparsify  # noqa: E402

SHAPES = ((32000, 1024), (2816, 1024))
DTYPES = (torch.bfloat16, torch.float32)


# ------------------------------------------------------------------------------------------------
# the previous implementation: full float argsorts, torch.bernoulli on a filled probability tensor
def _old_rescale_to_l1(original: Tensor, masked: Tensor, eps: float = 1e-7) -> Tensor:
    before = original.abs().sum()
    after = masked.abs().sum()
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def _old_ranking_magnitudes(delta: Tensor) -> Tensor:
    magnitudes = delta.abs().reshape(-1)
    return magnitudes.float() if magnitudes.device.type == "cpu" else magnitudes


def old_magnitude_prune(delta: Tensor, density: float, *, rescale_l1: bool = False) -> Tensor:
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = max(1, int(density * numel))
    top = torch.argsort(_old_ranking_magnitudes(delta), descending=True)[:keep]
    mask = torch.zeros(numel, dtype=delta.dtype, device=delta.device)
    mask[top] = 1
    masked = delta * mask.reshape(delta.shape)
    return _old_rescale_to_l1(delta, masked) if rescale_l1 else masked


def old_magnitude_outliers(delta: Tensor, density: float, gamma: float, *, rescale_l1: bool = False) -> Tensor:
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = int(density * numel)
    top = int(gamma * numel)
    bottom = max(0, numel - keep - top)
    order = torch.sort(_old_ranking_magnitudes(delta), descending=False).indices
    mask = torch.zeros(numel, dtype=delta.dtype, device=delta.device)
    mask[order[bottom : bottom + keep]] = 1
    masked = delta * mask.reshape(delta.shape)
    return _old_rescale_to_l1(delta, masked) if rescale_l1 else masked


def _old_work_dtype(tensor: Tensor) -> torch.dtype:
    return tensor.dtype if tensor.device.type != "cpu" or tensor.dtype == torch.bfloat16 else torch.float32


def old_bernoulli_prune(
    delta: Tensor, density: float, generator: torch.Generator, *, rescale_l1: bool = True
) -> Tensor:
    if density >= 1:
        return delta
    work = _old_work_dtype(delta)
    probabilities = torch.full(delta.shape, density, dtype=work, device=delta.device)
    mask = torch.bernoulli(probabilities, generator=generator)
    original = delta.to(work)
    masked = original * mask
    result = _old_rescale_to_l1(original, masked) if rescale_l1 else masked
    return result.to(delta.dtype)


def old_della_prune(
    delta: Tensor, density: float, epsilon: float, generator: torch.Generator, *, rescale_l1: bool = True
) -> Tensor:
    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    work = _old_work_dtype(delta)
    shape = delta.shape
    rows = delta.unsqueeze(0) if delta.dim() < 2 else delta
    ranks = torch.argsort(rows.abs(), dim=1, descending=False).argsort(dim=1).to(work) + 1
    low = ranks.min(dim=1, keepdim=True).values
    high = ranks.max(dim=1, keepdim=True).values
    normalised = ((ranks - low) / (high - low)).clamp(0, 1)
    probabilities = (density - epsilon) + normalised * 2 * epsilon
    mask = torch.bernoulli(probabilities, generator=generator).to(work)
    original = rows.to(work)
    masked = original * mask
    result = _old_rescale_to_l1(original, masked) if rescale_l1 else masked
    return result.to(delta.dtype).reshape(shape)


# ------------------------------------------------------------------------------------------------
Case = tuple[str, Callable[[Tensor, torch.Generator], Tensor], Callable[[Tensor, torch.Generator], Tensor]]
CASES: list[Case] = [
    (
        "ties d=0.5",
        lambda d, g: old_magnitude_prune(d, 0.5),
        lambda d, g: sparsify.magnitude_prune(d, 0.5),
    ),
    (
        "ties d=0.2 rescale",
        lambda d, g: old_magnitude_prune(d, 0.2, rescale_l1=True),
        lambda d, g: sparsify.magnitude_prune(d, 0.2, rescale_l1=True),
    ),
    (
        "breadcrumbs d=0.5 g=0.01",
        lambda d, g: old_magnitude_outliers(d, 0.5, 0.01),
        lambda d, g: sparsify.magnitude_outliers(d, 0.5, 0.01),
    ),
    (
        "dare d=0.5",
        lambda d, g: old_bernoulli_prune(d, 0.5, g),
        lambda d, g: sparsify.bernoulli_prune(d, 0.5, g),
    ),
    (
        "dare d=0.3",
        lambda d, g: old_bernoulli_prune(d, 0.3, g),
        lambda d, g: sparsify.bernoulli_prune(d, 0.3, g),
    ),
    (
        "della d=0.5 e=0.1",
        lambda d, g: old_della_prune(d, 0.5, 0.1, g),
        lambda d, g: sparsify.della_prune(d, 0.5, 0.1, g),
    ),
]


def task_vector(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> Tensor:
    """A fine-tune's delta: (base + small noise) − base, both stored in `dtype`."""
    generator = torch.Generator().manual_seed(seed)
    base = (torch.randn(shape, generator=generator) * 0.02).to(dtype)
    model = (base.float() + torch.randn(shape, generator=generator) * 0.002).to(dtype)
    return model - base


def best_times(functions: list[Callable[[], Tensor]], repeats: int) -> list[float]:
    """Best wall time of each function over `repeats` rounds, the functions alternating within a round, so
    that a burst of load from elsewhere on the machine hits both sides alike."""
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}")
    header = f"{'shape':>12} {'dtype':>9} {'function':<26} {'old s':>8} {'new s':>8} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        for dtype in DTYPES:
            delta = task_vector(shape, dtype, seed=len(shape) * shape[0])
            for name, old, new in CASES:
                generator = torch.Generator().manual_seed(0)
                old_s, new_s = best_times(
                    [partial(old, delta, generator), partial(new, delta, generator)], args.repeats
                )
                label = "x".join(map(str, shape))
                dtype_name = str(dtype).removeprefix("torch.")
                print(
                    f"{label:>12} {dtype_name:>9} {name:<26} {old_s:8.3f} {new_s:8.3f} {old_s / new_s:6.1f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
