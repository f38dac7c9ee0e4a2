from __future__ import annotations

from torch import Tensor

from tasks.merge.methods.sparsify import magnitude_prune
from tasks.merge.methods.task_vectors import combine_task_vectors, task_vectors
from tasks.merge.registry import ParameterSpec, merge_method


@merge_method(
    "ties",
    needs_base=True,
    parameters=(
        ParameterSpec("weight", "per_model"),
        ParameterSpec("density", "per_model", default=1.0, low=0.0, high=1.0, low_open=True),
        ParameterSpec("lambda", "global", default=1.0),
        ParameterSpec("normalize", "global", default=True, kind=bool),
        ParameterSpec("int8_mask", "global", default=False, kind=bool),
        ParameterSpec("rescale", "global", default=False, kind=bool),
    ),
)
def ties(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    normalize: bool = True,
    rescale: bool = False,
    int8_mask: bool = False,
    **options: float,
) -> Tensor:
    """Trim each task vector to its largest-magnitude entries, elect a sign per entry, and average only
    the deltas that agree with it (Yadav et al. 2023, "TIES-Merging"). `int8_mask` only changes the dtype
    mergekit uses for the mask, never the result, so it is accepted and has no effect."""
    deltas = task_vectors(base, models)
    for index, keep in enumerate(density):
        deltas[index] = magnitude_prune(deltas[index], keep, rescale_l1=rescale)
    return combine_task_vectors(
        base,
        models,
        weight,
        normalize=normalize,
        scale=float(options.get("lambda", 1.0)),
        consensus=True,
        deltas=deltas,
    )
