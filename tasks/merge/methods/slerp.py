from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method

DOT_THRESHOLD = 0.9995
EPS = 1e-8


def slerp_tensors(t: float, start: Tensor, end: Tensor) -> Tensor:
    """Spherical interpolation treating each whole tensor as one vector; nearly parallel tensors fall back
    to linear interpolation, where the spherical formula is numerically unstable."""
    dtype = torch.float64 if start.dtype == torch.float64 else torch.float32
    a = start.to(dtype)
    b = end.to(dtype)
    norm_a = torch.linalg.vector_norm(a)
    norm_b = torch.linalg.vector_norm(b)
    norm_a = torch.where(norm_a > EPS, norm_a, torch.ones_like(norm_a))
    norm_b = torch.where(norm_b > EPS, norm_b, torch.ones_like(norm_b))
    dot = ((a / norm_a) * (b / norm_b)).sum().clamp(-1, 1)
    position = torch.tensor(t, dtype=dtype)  # 1 - t rounded in the compute dtype, as mergekit does
    if dot.abs() > DOT_THRESHOLD:
        coefficient_a = 1 - position
        coefficient_b = position
    else:
        theta = torch.acos(dot)
        coefficient_a = torch.sin((1 - position) * theta) / torch.sin(theta)
        coefficient_b = torch.sin(position * theta) / torch.sin(theta)
    return (coefficient_a * a + coefficient_b * b).to(start.dtype)


@merge_method(
    "slerp",
    base="required",
    exact_models=1,
    parameters=(ParameterSpec("t", "global", low=0.0, high=1.0),),
)
def slerp(base: Tensor, models: list[Tensor], t: float) -> Tensor:
    """Spherical linear interpolation from the base (t = 0) to the other model (t = 1) (Shoemake 1985;
    as popularised for model merging by mergekit)."""
    return slerp_tensors(t, base, models[0])
