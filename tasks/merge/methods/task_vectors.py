"""The arithmetic shared by the task-vector family (task_arithmetic, TIES, DARE, breadcrumbs, DELLA).

Everything runs in the base tensor's dtype, in mergekit 0.1.5's order of operations, so results agree
with mergekit bit for bit: deltas are scaled by their weights in place, optionally masked by a sign
consensus, summed, normalised by the (masked) sum of weights, scaled by λ, and added to the base.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans
from tasks.merge.registry import ParameterSpec, Release

Prune = Callable[[Tensor, int], Tensor]
"""Sparsifies the task vector of model `index` (its density and other settings are bound by the caller)."""


def task_vectors(base: Tensor, models: list[Tensor], release: Release | None = None) -> Tensor:
    """Stacked deltas `modelᵢ − base`, shape [n, *base.shape], in the base dtype; each model is `release`d
    as soon as its delta is taken."""
    deltas = base.new_empty((len(models), *base.shape))
    for index, model in enumerate(models):
        torch.sub(model.to(base.dtype), base, out=deltas[index])
        if release is not None:
            release(model)
    return deltas


def weights_like(deltas: Tensor, weight: list[float]) -> Tensor:
    weights = torch.tensor(weight, dtype=torch.float32).to(device=deltas.device, dtype=deltas.dtype)
    return weights.reshape((len(weight),) + (1,) * (deltas.dim() - 1))


def sign_consensus(weighted_deltas: Tensor) -> Tensor:
    """TIES sign election: per entry, the sign of the summed weighted deltas (0 counts as +); a delta
    takes part only where its own sign equals it (exact zeros never do)."""
    majority = (weighted_deltas.sum(dim=0) >= 0).to(weighted_deltas.dtype) * 2 - 1
    return weighted_deltas.sign() == majority


COMBINE_BLOCK = 1 << 18
"""Entries per block when combining task vectors: the combination is elementwise once the deltas are
pruned, so it runs block by block with every temporary in the CPU caches (same result, bit for bit)."""

FUSED_BLOCK = 1 << 17
"""Entries per block when the deltas are not pruned and are computed block by block too (task arithmetic,
linear-like task-vector merges): a block's temporaries stay in the CPU caches, and the whole
[n, numel] deltas (n times the tensor) are never allocated. On the demo zoo's merge spans (0.87M entries,
2 models, float32) blocks of 2^15 to 2^17 entries were fastest."""


def combine_task_vectors(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    *,
    normalize: bool,
    scale: float,
    consensus: bool = False,
    deltas: Tensor | None = None,
) -> Tensor:
    """base + λ · mix(w · deltas); `deltas` may be given already sparsified (and is scaled in place).
    Without `deltas` they are computed a block at a time, never whole: the same values, bit for bit."""
    if not models:
        return base
    flat_base = base.reshape(-1)
    result = torch.empty_like(flat_base)
    if deltas is None:
        flat_models = [model.reshape(-1) for model in models]
        fused = block_size(base, FUSED_BLOCK)
        block_deltas = base.new_empty((len(models), min(fused, flat_base.numel())))
        weights = weights_like(block_deltas, weight)
        for start, stop in spans(flat_base.numel(), fused):
            block = block_deltas[:, : stop - start]
            for index, model in enumerate(flat_models):
                torch.sub(model[start:stop].to(base.dtype), flat_base[start:stop], out=block[index])
            result[start:stop] = _combine_block(flat_base[start:stop], block, weights, normalize, scale, consensus)
        return result.view(base.shape)
    flat_deltas = deltas.reshape(len(models), -1)
    weights = weights_like(flat_deltas, weight)
    for start, stop in spans(flat_base.numel(), block_size(base, COMBINE_BLOCK)):
        result[start:stop] = _combine_block(
            flat_base[start:stop], flat_deltas[:, start:stop], weights, normalize, scale, consensus
        )
    return result.view(base.shape)


def _combine_block(
    base: Tensor, deltas: Tensor, weights: Tensor, normalize: bool, scale: float, consensus: bool
) -> Tensor:
    deltas.mul_(weights)
    if consensus:
        mask = sign_consensus(deltas)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = deltas.sum(dim=0)
        divisor = weights.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed /= divisor
    if scale != 1:
        mixed *= scale
    return (base + mixed).to(base.dtype)


def generalized_task_arithmetic(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    *,
    prune: Prune | None,
    consensus: bool,
    normalize: bool,
    scale: float,
    release: Release | None = None,
) -> Tensor:
    """Task vectors, each sparsified by `prune`, then combined (mergekit's generalized task arithmetic).
    The models are `release`d once their task vectors are taken: pruning reads only those."""
    if not models:
        return base
    deltas = None
    if prune is not None:
        deltas = task_vectors(base, models, release)
        for index in range(len(models)):
            deltas[index] = prune(deltas[index], index)
    return combine_task_vectors(
        base, models, weight, normalize=normalize, scale=scale, consensus=consensus, deltas=deltas
    )


def gta_parameters(
    *, normalize: bool, rescale: bool, extra: tuple[ParameterSpec, ...] = ()
) -> tuple[ParameterSpec, ...]:
    """The parameter table of a task-vector method; defaults differ per method exactly as in mergekit."""
    return (
        ParameterSpec("weight", "per_model"),
        ParameterSpec("density", "per_model", default=1.0, low=0.0, high=1.0, low_open=True),
        *extra,
        ParameterSpec("lambda", "global", default=1.0),
        ParameterSpec("normalize", "global", default=normalize, kind=bool),
        ParameterSpec("rescale", "global", default=rescale, kind=bool),
        ParameterSpec("int8_mask", "global", default=False, kind=bool),
    )
