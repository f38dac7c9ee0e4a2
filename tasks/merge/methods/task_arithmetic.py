from __future__ import annotations

from torch import Tensor

from tasks.merge.methods.task_vectors import combine_task_vectors
from tasks.merge.registry import ParameterSpec, merge_method

TASK_ARITHMETIC_PARAMETERS = (
    ParameterSpec("weight", "per_model"),
    ParameterSpec("lambda", "global", default=1.0),
    ParameterSpec("normalize", "global", default=False, kind=bool),
)


@merge_method("task_arithmetic", needs_base=True, parameters=TASK_ARITHMETIC_PARAMETERS)
def task_arithmetic(
    base: Tensor, models: list[Tensor], weight: list[float], normalize: bool = False, **options: float
) -> Tensor:
    """base + λ · Σ wᵢ (modelᵢ − base) (Ilharco et al. 2023, "Editing models with task arithmetic").
    With `normalize` the weighted sum is divided by Σ wᵢ."""
    return combine_task_vectors(base, models, weight, normalize=normalize, scale=float(options.get("lambda", 1.0)))
