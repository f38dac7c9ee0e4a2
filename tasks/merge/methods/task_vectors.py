"""The arithmetic shared by the task-vector family (task_arithmetic, TIES, and later DARE / DELLA).

Everything runs in the base tensor's dtype, in mergekit 0.1.5's order of operations, so results agree
with mergekit bit for bit: deltas are scaled by their weights in place, optionally masked by a sign
consensus, summed, normalised by the (masked) sum of weights, scaled by λ, and added to the base.
"""

from __future__ import annotations

import torch
from torch import Tensor


def task_vectors(base: Tensor, models: list[Tensor]) -> Tensor:
    """Stacked deltas `modelᵢ − base`, shape [n, *base.shape], in the base dtype."""
    deltas = base.new_empty((len(models), *base.shape))
    for index, model in enumerate(models):
        torch.sub(model.to(base.dtype), base, out=deltas[index])
    return deltas


def weights_like(deltas: Tensor, weight: list[float]) -> Tensor:
    weights = torch.tensor(weight, dtype=torch.float32).to(deltas.dtype)
    return weights.reshape((len(weight),) + (1,) * (deltas.dim() - 1))


def sign_consensus(weighted_deltas: Tensor) -> Tensor:
    """TIES sign election: per entry, the sign of the summed weighted deltas (0 counts as +); a delta
    takes part only where its own sign equals it (exact zeros never do)."""
    majority = (weighted_deltas.sum(dim=0) >= 0).to(weighted_deltas.dtype) * 2 - 1
    return weighted_deltas.sign() == majority


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
    """base + λ · mix(w · deltas); `deltas` may be given already sparsified."""
    if not models:
        return base
    if deltas is None:
        deltas = task_vectors(base, models)
    weights = weights_like(deltas, weight)
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
