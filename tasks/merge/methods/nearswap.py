from __future__ import annotations

from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "nearswap", base="required", exact_models=1, elementwise=True, parameters=(ParameterSpec("t", "global", low=0.0),)
)
def nearswap(base: Tensor, models: list[Tensor], t: float) -> Tensor:
    """Take the other model's value where it is within `t` of the base, and move towards it proportionally
    (weight t / |difference|) elsewhere: a merge that only accepts small, local changes."""
    other = models[0]
    weight = (t / (base - other).abs().clamp(min=1e-6)).clamp(0, 1)
    return weight * other + (1 - weight) * base
