"""DARE (Yu et al. 2024, "Language Models are Super Mario"): random drop of task-vector entries with
rescaling, then either plain task arithmetic (dare_linear) or TIES sign consensus (dare_ties)."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from tasks.merge.methods.sparsify import bernoulli_prune
from tasks.merge.methods.task_vectors import generalized_task_arithmetic, gta_parameters
from tasks.merge.registry import Release, merge_method


def dare(
    base: Tensor,
    models: list[Tensor],
    weight: list[float],
    density: list[float],
    generator: torch.Generator,
    normalize: bool = False,
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
        prune=lambda delta, i: bernoulli_prune(delta, density[i], generator, rescale_l1=rescale),
        consensus=consensus,
        normalize=normalize,
        scale=float(options.get("lambda", 1.0)),
        release=release,
    )


PARAMETERS = gta_parameters(normalize=False, rescale=True)
dare_ties = merge_method("dare_ties", base="required", stochastic=True, releases_inputs=True, parameters=PARAMETERS)(
    partial(dare, consensus=True)
)
dare_linear = merge_method(
    "dare_linear", base="required", stochastic=True, releases_inputs=True, parameters=PARAMETERS
)(partial(dare, consensus=False))
