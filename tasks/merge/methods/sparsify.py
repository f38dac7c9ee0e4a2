"""Sparsification of task vectors, shared by TIES and (later) breadcrumbs / DARE / DELLA."""

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
    magnitudes = delta.abs().reshape(-1)
    if magnitudes.device.type == "cpu":
        magnitudes = magnitudes.float()
    top = torch.argsort(magnitudes, descending=True)[:keep]
    mask = torch.zeros(numel, dtype=delta.dtype, device=delta.device)
    mask[top] = 1
    masked = delta * mask.reshape(delta.shape)
    return rescale_to_l1(delta, masked) if rescale_l1 else masked
