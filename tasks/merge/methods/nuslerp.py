from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


def nuslerp_tensors(t: float, v0: Tensor, v1: Tensor, *, dim: int, flatten: bool, eps: float = 1e-8) -> Tensor:
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    unit0 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    unit1 = v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    cosine = torch.sum(unit0 * unit1, dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cosine.square()) <= eps**2
    theta = torch.acos(torch.where(colinear, torch.zeros_like(cosine), cosine))
    spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    result = torch.where(colinear, (1 - t) * v0 + t * v1, spherical)
    if not flatten and dim != -1:
        result = result.transpose(dim, -1)
    return result.reshape(shape)


@merge_method(
    "nuslerp",
    base="optional",
    exact_models=2,
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("nuslerp_row_wise", "global", default=False, kind=bool),
        ParameterSpec("nuslerp_flatten", "global", default=True, kind=bool),
    ),
)
def nuslerp(
    base: Tensor | None,
    models: list[Tensor],
    weight: list[float],
    nuslerp_row_wise: bool = False,
    nuslerp_flatten: bool = True,
) -> Tensor:
    """Slerp between two models (or their task vectors when a base is given) at t = w₁ / (w₀ + w₁), whole
    tensors or row by row; mergekit's newer slerp."""
    total = sum(weight)
    t = 0.5 if abs(total) < 1e-6 else weight[1] / total
    first, second = models
    dim = 0 if nuslerp_row_wise else -1
    if base is None:
        return nuslerp_tensors(t, first, second, dim=dim, flatten=nuslerp_flatten)
    return base + nuslerp_tensors(t, first - base, second - base, dim=dim, flatten=nuslerp_flatten)
