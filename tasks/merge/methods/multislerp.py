from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "multislerp",
    base="optional",
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("normalize_weights", "global", default=True, kind=bool),
        ParameterSpec("eps", "global", default=1e-8, low=0.0),
    ),
)
def multislerp(
    base: Tensor | None, models: list[Tensor], weight: list[float], normalize_weights: bool = True, eps: float = 1e-8
) -> Tensor:
    """A weighted spherical mean of several models (or task vectors): one tangent-space step from the
    normalised weighted mean direction, scaled back to the weighted mean norm."""
    if len(models) == 1:
        return models[0]
    stacked = torch.stack(models, dim=0)
    if base is not None:
        stacked = stacked - base
    flat = stacked.reshape(len(models), -1)
    weights = torch.tensor(weight, dtype=stacked.dtype, device=stacked.device)
    if normalize_weights:
        weights = weights / weights.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    unit = flat / (norms + eps)
    mean = (unit * weights.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(models) != 2:
            raise ValueError("multislerp: the weighted directions cancel out; the spherical mean is undefined")
        result = flat[0] * weights[0] + flat[1] * weights[1]
    else:
        mean = mean / mean_norm
        dots = (unit * mean).sum(-1, keepdim=True)
        tangent = ((unit - dots * mean) * weights.view(-1, 1)).sum(0)
        tangent_norm = torch.norm(tangent) + eps
        result = mean * torch.cos(tangent_norm) + tangent * (torch.sin(tangent_norm) / tangent_norm)
        result = result * (norms.squeeze(-1) * weights).sum()
    result = result.reshape(models[0].shape)
    return result if base is None else result + base
