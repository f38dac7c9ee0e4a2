from __future__ import annotations

from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "passthrough",
    base="ignored",
    exact_models=1,
    parameters=(ParameterSpec("scale", "per_model", optional=True),),
)
def passthrough(base: Tensor | None, models: list[Tensor], scale: list[float | None] | None = None) -> Tensor:
    """Copy one source tensor (optionally scaled): the building block of layer-stacking "frankenmerges",
    where slices of different models are concatenated into a deeper model."""
    factor = scale[0] if scale else None
    return models[0] if factor is None else models[0] * factor
