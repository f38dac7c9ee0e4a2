from __future__ import annotations

from torch import Tensor

from tasks.merge.methods.task_vectors import generalized_task_arithmetic
from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "task_arithmetic",
    base="required",
    elementwise=True,
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("lambda", "global", default=1.0),
        ParameterSpec("normalize", "global", default=False, kind=bool),
        ParameterSpec("int8_mask", "global", default=False, kind=bool),
    ),
)
def task_arithmetic(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    normalize: bool = False,
    int8_mask: bool = False,
    **options: float,
) -> Tensor:
    """base + λ · Σ wᵢ (modelᵢ − base) (Ilharco et al. 2023, "Editing models with task arithmetic").
    With `normalize` the weighted sum is divided by Σ wᵢ."""
    return generalized_task_arithmetic(
        base, models, weight, prune=None, consensus=False, normalize=normalize, scale=float(options.get("lambda", 1.0))
    )
