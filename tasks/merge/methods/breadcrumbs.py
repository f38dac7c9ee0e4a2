"""Model Breadcrumbs (Davari & Belilovsky 2023): drop both the tiny and the outlier entries of each task
vector; `breadcrumbs_ties` adds the TIES sign consensus."""

from __future__ import annotations

from torch import Tensor

from tasks.merge.methods.sparsify import magnitude_outliers
from tasks.merge.methods.task_vectors import generalized_task_arithmetic, gta_parameters
from tasks.merge.registry import ParameterSpec, merge_method

GAMMA = (ParameterSpec("gamma", "per_model", default=0.01, low=0.0, high=1.0),)


def _breadcrumbs(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    gamma: list[float],
    *,
    consensus: bool,
    normalize: bool,
    rescale: bool,
    scale: float,
) -> Tensor:
    return generalized_task_arithmetic(
        base,
        models,
        weight,
        prune=lambda delta, i: magnitude_outliers(delta, density[i], gamma[i], rescale_l1=rescale),
        consensus=consensus,
        normalize=normalize,
        scale=scale,
    )


@merge_method("breadcrumbs", base="required", parameters=gta_parameters(normalize=False, rescale=False, extra=GAMMA))
def breadcrumbs(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    gamma: list[float],
    normalize: bool = False,
    rescale: bool = False,
    int8_mask: bool = False,
    **options: float,
) -> Tensor:
    return _breadcrumbs(
        base,
        models,
        weight,
        density,
        gamma,
        consensus=False,
        normalize=normalize,
        rescale=rescale,
        scale=float(options.get("lambda", 1.0)),
    )


@merge_method(
    "breadcrumbs_ties", base="required", parameters=gta_parameters(normalize=False, rescale=False, extra=GAMMA)
)
def breadcrumbs_ties(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    gamma: list[float],
    normalize: bool = False,
    rescale: bool = False,
    int8_mask: bool = False,
    **options: float,
) -> Tensor:
    return _breadcrumbs(
        base,
        models,
        weight,
        density,
        gamma,
        consensus=True,
        normalize=normalize,
        rescale=rescale,
        scale=float(options.get("lambda", 1.0)),
    )
