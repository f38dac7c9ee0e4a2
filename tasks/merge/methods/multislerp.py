from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans
from tasks.merge.registry import ParameterSpec, Release, merge_method

BLOCK = 1 << 18
"""Entries per block of the passes that mix the models entry by entry (sums over the model axis, which
are the same block by block); the per-model reductions over the whole tensor keep mergekit's shapes."""


@merge_method(
    "multislerp",
    base="optional",
    releases_inputs=True,
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("normalize_weights", "global", default=True, kind=bool),
        ParameterSpec("eps", "global", default=1e-8, low=0.0),
    ),
)
def multislerp(
    base: Tensor | None,
    models: list[Tensor],
    weight: list[float],
    normalize_weights: bool = True,
    eps: float = 1e-8,
    release: Release | None = None,
) -> Tensor:
    """A weighted spherical mean of several models (or task vectors): one tangent-space step from the
    normalised weighted mean direction, scaled back to the weighted mean norm. mergekit's operations in
    its order and dtype; the unit vectors overwrite the stacked ones, and the model-axis sums go block by
    block, so the whole-size temporaries are the stack and one product for the per-model dots."""
    if len(models) == 1:
        return models[0]
    stacked = _stacked(base, models)
    for model in models if release is not None else []:
        release(model)
    flat = stacked.view(len(models), -1)
    weights = torch.tensor(weight, dtype=stacked.dtype, device=stacked.device)
    if normalize_weights:
        weights = weights / weights.sum()
    column = weights.view(-1, 1)
    norms = torch.norm(flat, dim=-1, keepdim=True)
    unit = flat.div_(norms + eps)
    numel = unit.shape[1]
    block = block_size(unit, BLOCK)
    mean = unit.new_empty(numel)
    for start, stop in spans(numel, block):
        mean[start:stop] = (unit[:, start:stop] * column).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(models) != 2:
            raise ValueError("multislerp: the weighted directions cancel out; the spherical mean is undefined")
        deltas = _stacked(base, models)  # the unit vectors took their place: taken again
        result = (deltas[0] * weights[0] + deltas[1] * weights[1]).view(models[0].shape)
        return result if base is None else result + base
    mean.div_(mean_norm)
    dots = (unit * mean).sum(-1, keepdim=True)
    tangent = unit.new_empty(numel)
    for start, stop in spans(numel, block):
        tangent[start:stop] = ((unit[:, start:stop] - dots * mean[start:stop]) * column).sum(0)
    del unit, stacked, flat
    tangent_norm = torch.norm(tangent) + eps
    cosine, sine = torch.cos(tangent_norm), torch.sin(tangent_norm) / tangent_norm
    average_norm = (norms.squeeze(-1) * weights).sum()
    flat_base = base.reshape(-1) if base is not None else None
    for start, stop in spans(numel, block):  # the result overwrites the mean, block by block
        part = (mean[start:stop] * cosine + tangent[start:stop] * sine) * average_norm
        mean[start:stop] = part if flat_base is None else part + flat_base[start:stop]
    return mean.view(models[0].shape)


def _stacked(base: Tensor | None, models: list[Tensor]) -> Tensor:
    stacked = torch.stack(models, dim=0)
    if base is not None:
        stacked -= base
    return stacked
