"""Sparsification of task vectors: magnitude (TIES), magnitude outliers (breadcrumbs), random (DARE) and
magnitude-ranked random (DELLA). Each follows mergekit 0.1.5's arithmetic, so kept sets and rescaling
agree; the random ones draw from a generator the engine seeds per tensor, so a merge is reproducible."""

from __future__ import annotations

import torch
from torch import Tensor


def rescale_to_l1(original: Tensor, masked: Tensor, eps: float = 1e-7) -> Tensor:
    """Scale `masked` so its L1 norm equals the original's (mergekit's `rescale`), unless either is ~0."""
    before = original.abs().sum()
    after = masked.abs().sum()
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def _ranking_magnitudes(delta: Tensor) -> Tensor:
    magnitudes = delta.abs().reshape(-1)
    return magnitudes.float() if magnitudes.device.type == "cpu" else magnitudes


def magnitude_prune(delta: Tensor, density: float, *, rescale_l1: bool = False) -> Tensor:
    """Keep the `int(density · numel)` entries of largest magnitude (at least one), zero the rest.

    Ranked with the same full argsort mergekit uses, so ties between equal magnitudes break the same way
    and the kept set is bit-identical."""
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = max(1, int(density * numel))
    top = torch.argsort(_ranking_magnitudes(delta), descending=True)[:keep]
    mask = torch.zeros(numel, dtype=delta.dtype, device=delta.device)
    mask[top] = 1
    masked = delta * mask.reshape(delta.shape)
    return rescale_to_l1(delta, masked) if rescale_l1 else masked


def magnitude_outliers(delta: Tensor, density: float, gamma: float, *, rescale_l1: bool = False) -> Tensor:
    """Breadcrumbs (Davari & Belilovsky 2023): drop the `gamma` share of largest-magnitude entries (outliers)
    and the smallest ones, keeping `int(density · numel)` entries just below the outliers."""
    numel = delta.numel()
    if density >= 1:
        return delta
    if density <= 0 or numel == 0:
        return torch.zeros_like(delta)
    keep = int(density * numel)
    top = int(gamma * numel)
    bottom = max(0, numel - keep - top)
    order = torch.sort(_ranking_magnitudes(delta), descending=False).indices
    mask = torch.zeros(numel, dtype=delta.dtype, device=delta.device)
    mask[order[bottom : bottom + keep]] = 1
    masked = delta * mask.reshape(delta.shape)
    return rescale_to_l1(delta, masked) if rescale_l1 else masked


def _work_dtype(tensor: Tensor) -> torch.dtype:
    return tensor.dtype if tensor.device.type != "cpu" or tensor.dtype == torch.bfloat16 else torch.float32


def bernoulli_prune(delta: Tensor, density: float, generator: torch.Generator, *, rescale_l1: bool = True) -> Tensor:
    """DARE (Yu et al. 2024): drop each entry with probability 1 − density. mergekit rescales by matching
    the L1 norm (not the paper's 1/density), and so do we."""
    if density >= 1:
        return delta
    work = _work_dtype(delta)
    probabilities = torch.full(delta.shape, density, dtype=work, device=delta.device)
    mask = torch.bernoulli(probabilities, generator=generator)
    original = delta.to(work)
    masked = original * mask
    result = rescale_to_l1(original, masked) if rescale_l1 else masked
    return result.to(delta.dtype)


def della_prune(
    delta: Tensor, density: float, epsilon: float, generator: torch.Generator, *, rescale_l1: bool = True
) -> Tensor:
    """DELLA (Deep et al. 2024): keep each entry with a probability that grows with its magnitude rank in its
    row, from density − ε (smallest) to density + ε (largest)."""
    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise ValueError(f"della needs 0 < density - epsilon and density + epsilon < 1 (got {density}, {epsilon})")
    work = _work_dtype(delta)
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
    result = rescale_to_l1(original, masked) if rescale_l1 else masked
    return result.to(delta.dtype).reshape(shape)
