from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans
from tasks.merge.registry import ParameterSpec, Release, merge_method

BLOCK = 1 << 18
"""Entries per block of the elementwise passes of the flattened form (in mergekit's dtype and order of
operations, so the same values): only its two whole-tensor reductions need a whole-size temporary."""


def nuslerp_tensors(t: float, v0: Tensor, v1: Tensor, *, dim: int, flatten: bool, eps: float = 1e-8) -> Tensor:
    shape = v0.shape
    if flatten:
        return _flat_nuslerp(t, v0.reshape(-1), v1.reshape(-1), eps).reshape(shape)
    if dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    unit0 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    unit1 = v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    cosine = torch.sum(unit0 * unit1, dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cosine.square()) <= eps**2
    theta = torch.acos(torch.where(colinear, torch.zeros_like(cosine), cosine))
    spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    result = torch.where(colinear, (1 - t) * v0 + t * v1, spherical)
    if dim != -1:
        result = result.transpose(dim, -1)
    return result.reshape(shape)


def _flat_nuslerp(t: float, v0: Tensor, v1: Tensor, eps: float) -> Tensor:
    """nuslerp of two flattened tensors: the cosine of the normalised vectors summed over the whole
    tensor, as mergekit sums it; every product and the result computed a block at a time."""
    norm0 = torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    norm1 = torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    products = torch.empty_like(v0)
    block = block_size(v0, BLOCK)
    for start, stop in spans(v0.numel(), block):
        torch.mul(v0[start:stop] / norm0, v1[start:stop] / norm1, out=products[start:stop])
    cosine = torch.sum(products, dim=-1, keepdim=True).clamp(-1, 1)
    del products
    colinear = (1 - cosine.square()) <= eps**2
    theta = torch.acos(torch.where(colinear, torch.zeros_like(cosine), cosine))
    start_weight, end_weight, sin_theta = torch.sin((1 - t) * theta), torch.sin(t * theta), torch.sin(theta)
    result = torch.empty_like(v0)
    for start, stop in spans(v0.numel(), block):
        a, b = v0[start:stop], v1[start:stop]
        spherical = (start_weight * a + end_weight * b) / sin_theta
        result[start:stop] = torch.where(colinear, (1 - t) * a + t * b, spherical)
    return result


@merge_method(
    "nuslerp",
    base="optional",
    exact_models=2,
    releases_inputs=True,
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
    release: Release | None = None,
) -> Tensor:
    """Slerp between two models (or their task vectors when a base is given) at t = w₁ / (w₀ + w₁), whole
    tensors or row by row; mergekit's newer slerp."""
    total = sum(weight)
    t = 0.5 if abs(total) < 1e-6 else weight[1] / total
    first, second = models
    dim = 0 if nuslerp_row_wise else -1
    if base is None:
        return nuslerp_tensors(t, first, second, dim=dim, flatten=nuslerp_flatten)
    first = first - base
    if release is not None:
        release(models[0])
    second = second - base
    if release is not None:
        release(models[1])
    merged = nuslerp_tensors(t, first, second, dim=dim, flatten=nuslerp_flatten)
    del first, second
    return merged.add_(base)  # base + merged, without a second result-sized tensor
