from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.methods.task_vectors import sign_consensus
from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "sce",
    base="required",
    parameters=(
        ParameterSpec("select_topk", "global", default=1.0, low=0.0, high=1.0, low_open=True),
        ParameterSpec("int8_mask", "global", default=False, kind=bool),
    ),
)
def sce(base: Tensor, models: list[Tensor], select_topk: float = 1.0, int8_mask: bool = False) -> Tensor:
    """Select, Calculate, Erase (Wan et al. 2024, FuseChat): keep the entries whose task vectors vary most
    across models, weight each model by its task vector's mean square, and erase sign-conflicting entries."""
    deltas = torch.stack([model - base for model in models], dim=0)
    if select_topk < 1:
        variance = torch.var(deltas, dim=0, unbiased=False)
        keep = int(torch.count_nonzero(variance) * select_topk)
        mask = torch.zeros_like(variance)
        if keep > 0:
            _, top = torch.topk(variance.abs().reshape(-1), k=keep, largest=True)
            mask.view(-1)[top] = 1
        deltas = deltas * mask.unsqueeze(0)
    erase = sign_consensus(deltas)
    energy = torch.mean(deltas**2, dim=tuple(range(1, deltas.dim()))) if deltas.dim() > 1 else deltas**2
    total = energy.sum().item()
    energy = torch.ones_like(energy) / len(models) if abs(total) < 1e-6 else energy / total
    weights = energy.reshape((len(models),) + (1,) * (deltas.dim() - 1)) * erase
    mixed = (deltas * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1e-6)
    return base + mixed
