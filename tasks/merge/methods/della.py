"""DELLA-Merging (Deep et al. 2024): magnitude-ranked random drop (MagPrune) of task-vector entries;
`della` adds the TIES sign consensus, `della_linear` does not. Their defaults differ as in mergekit."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from tasks.merge.methods.sparsify import della_prune
from tasks.merge.methods.task_vectors import generalized_task_arithmetic, gta_parameters
from tasks.merge.registry import ParameterSpec, Release, merge_method

EPSILON = (ParameterSpec("epsilon", "per_model", default=0.15, low=0.0, high=1.0),)


def della(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    epsilon: list[float],
    generator: torch.Generator,
    normalize: bool,
    rescale: bool = True,
    int8_mask: bool = False,
    *,
    consensus: bool,
    release: Release | None = None,
    **options: float,
) -> Tensor:
    return generalized_task_arithmetic(
        base,
        models,
        weight,
        prune=lambda delta, i: della_prune(delta, density[i], epsilon[i], generator, rescale_l1=rescale),
        consensus=consensus,
        normalize=normalize,
        scale=float(options.get("lambda", 1.0)),
        release=release,
    )


della_ties = merge_method(
    "della",
    base="required",
    stochastic=True,
    releases_inputs=True,
    parameters=gta_parameters(normalize=True, rescale=True, extra=EPSILON),
)(partial(della, consensus=True, normalize=True))
della_linear = merge_method(
    "della_linear",
    base="required",
    stochastic=True,
    parameters=gta_parameters(normalize=False, rescale=True, extra=EPSILON),
)(partial(della, consensus=False, normalize=False))
