from __future__ import annotations

from torch import Tensor

from tasks.merge.methods.sparsify import magnitude_prune
from tasks.merge.methods.task_vectors import generalized_task_arithmetic, gta_parameters
from tasks.merge.registry import Release, merge_method


@merge_method("ties", base="required", releases_inputs=True, parameters=gta_parameters(normalize=True, rescale=False))
def ties(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    normalize: bool = True,
    rescale: bool = False,
    int8_mask: bool = False,
    release: Release | None = None,
    **options: float,
) -> Tensor:
    """Trim each task vector to its largest-magnitude entries, elect a sign per entry, and average only
    the deltas that agree with it (Yadav et al. 2023, "TIES-Merging"). `int8_mask` only changes the dtype
    mergekit uses for the mask, never the result, so it is accepted and has no effect."""
    return generalized_task_arithmetic(
        base,
        models,
        weight,
        prune=lambda delta, i: magnitude_prune(delta, density[i], rescale_l1=rescale),
        consensus=True,
        normalize=normalize,
        scale=float(options.get("lambda", 1.0)),
        release=release,
    )
