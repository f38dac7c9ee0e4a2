from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, row_spans
from tasks.merge.registry import ParameterSpec, Release, merge_method

BLOCK = 1 << 18
"""Entries per block of the elementwise passes (the models' average and the final interpolation)."""


@merge_method(
    "model_stock",
    base="required",
    min_models=2,
    releases_inputs=True,
    parameters=(ParameterSpec("filter_wise", "global", default=False, kind=bool),),
)
def model_stock(
    base: Tensor, models: list[Tensor], filter_wise: bool = False, release: Release | None = None
) -> Tensor:
    """Model Stock (Jang et al. 2024): interpolate between the average of the fine-tuned models and the base
    by a ratio derived from the angle between their task vectors (per row with `filter_wise`). mergekit's
    operations in its order; the average is taken first, so each model is released once its offset is."""
    shape = base.shape
    if filter_wise:
        anchor = base.unsqueeze(0) if base.dim() == 1 else base
        others = [m.unsqueeze(0) if m.dim() == 1 else m for m in models]
    else:
        anchor = base.reshape(-1)
        others = [m.reshape(-1) for m in models]
    count = len(others)
    average = torch.empty_like(others[0])
    per_row = average[0].numel() if average.dim() > 1 else 1
    blocks = row_spans(average.shape[0], per_row, block_size(average, BLOCK))
    for rows in blocks:
        average[rows] = sum(other[rows] for other in others) / count
    offsets = []
    for model, other in zip(models, others, strict=True):
        offsets.append(other - anchor)
        if release is not None:
            release(model)
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            dot = (offsets[i] * offsets[j]).sum(-1)
            norms = (torch.linalg.norm(offsets[i], dim=-1) * torch.linalg.norm(offsets[j], dim=-1)).clamp(min=1e-6)
            cosines.append((dot / norms).clamp(-1, 1))
    del offsets
    cosine = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    denominator = 1 + (count - 1) * cosine
    ratio = torch.where(denominator.abs() < 1e-6, torch.zeros_like(cosine), (count * cosine) / denominator)
    for rows in blocks:  # the result overwrites the average
        part_ratio = ratio if ratio.dim() < 2 or ratio.shape[0] == 1 else ratio[rows]
        average[rows] = part_ratio * average[rows] + (1 - part_ratio) * anchor[rows]
    return average.reshape(shape)
