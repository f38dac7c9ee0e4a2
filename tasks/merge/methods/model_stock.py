from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "model_stock",
    base="required",
    min_models=2,
    parameters=(ParameterSpec("filter_wise", "global", default=False, kind=bool),),
)
def model_stock(base: Tensor, models: list[Tensor], filter_wise: bool = False) -> Tensor:
    """Model Stock (Jang et al. 2024): interpolate between the average of the fine-tuned models and the base
    by a ratio derived from the angle between their task vectors (per row with `filter_wise`)."""
    shape = base.shape
    if filter_wise:
        anchor = base.unsqueeze(0) if base.dim() == 1 else base
        others = [m.unsqueeze(0) if m.dim() == 1 else m for m in models]
    else:
        anchor = base.reshape(-1)
        others = [m.reshape(-1) for m in models]
    offsets = [m - anchor for m in others]
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            dot = (offsets[i] * offsets[j]).sum(-1)
            norms = (torch.linalg.norm(offsets[i], dim=-1) * torch.linalg.norm(offsets[j], dim=-1)).clamp(min=1e-6)
            cosines.append((dot / norms).clamp(-1, 1))
    cosine = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    count = len(others)
    denominator = 1 + (count - 1) * cosine
    ratio = torch.where(denominator.abs() < 1e-6, torch.zeros_like(cosine), (count * cosine) / denominator)
    average = sum(others) / count
    return (ratio * average + (1 - ratio) * anchor).reshape(shape)
