from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "linear",
    base="ignored",
    elementwise=True,
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("normalize", "global", default=True, kind=bool),
    ),
)
def linear(base: Tensor | None, models: list[Tensor], weight: list[float], normalize: bool = True) -> Tensor:
    """Weighted average of the models (Wortsman et al. 2022, "Model soups").

    Accumulates in float32 one model at a time (as mergekit 0.1.5 does), so bf16 parents lose no precision
    in the sum and the result matches mergekit bit for bit."""
    first = models[0]
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    coefficients = torch.tensor(weight, dtype=torch.float32).to(dtype)
    result = torch.zeros_like(first, dtype=dtype)
    for tensor, coefficient in zip(models, coefficients.unbind(0), strict=True):
        result.addcmul_(tensor, coefficient)
    if normalize:
        result.div_(coefficients.sum())
    return result.to(first.dtype)
