from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans
from tasks.merge.registry import ParameterSpec, Release, merge_method


def _dots(mean: Tensor, units: list[Tensor]) -> list[Tensor]:
    """`torch.dot(mean, unit)` for every unit, run side by side on the intra-op threads.

    torch's CPU dot runs on one thread; in bf16 these dots were half of the method's time. Each is still
    one `torch.dot` over the same vectors, so every value (and the merge) is bit for bit unchanged."""
    flat_mean = mean.flatten()
    workers = min(len(units), torch.get_num_threads())
    if workers < 2 or mean.device.type != "cpu":
        return [torch.dot(flat_mean, unit.flatten()) for unit in units]
    return list(_pool(workers).map(lambda unit: torch.dot(flat_mean, unit.flatten()), units))


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """One pool per process: starting threads for every iteration cost as much as the dots gained."""
    return ThreadPoolExecutor(workers, thread_name_prefix="karcher-dot")


BLOCK = 1 << 18
"""Entries per block of the elementwise update of each iteration."""


@merge_method(
    "karcher",
    base="ignored",
    releases_inputs=True,
    parameters=(
        ParameterSpec("max_iter", "global", default=10, low=1),
        ParameterSpec("tol", "global", default=1e-5, low=0.0, low_open=True),
    ),
)
def karcher(
    base: Tensor | None,
    models: list[Tensor],
    max_iter: float = 10,
    tol: float = 1e-5,
    release: Release | None = None,
) -> Tensor:
    """The Karcher (Riemannian) mean of the models' directions on the unit sphere, by fixed-point
    iteration, scaled by their mean norm; every model weighs the same. mergekit's operations in its order;
    the elementwise updates run in place (the same values), so an iteration holds one scratch tensor."""
    if len(models) == 1:
        return models[0]
    dtype = torch.float64 if models[0].dtype == torch.float64 else torch.float32
    count = len(models)
    equal_share = [1.0 / count] * count
    norms = [torch.linalg.vector_norm(m.to(dtype)) for m in models]
    units = []
    for model, norm in zip(models, norms, strict=True):
        units.append((model / norm).to(model.dtype) if norm > 0 else torch.zeros_like(model))
        if release is not None:
            release(model)
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return torch.zeros_like(models[0])
    valid_total = sum(equal_share[i] for i in valid)
    alphas = [equal_share[i] / valid_total for i in valid]
    mean = sum(a * units[i] for a, i in zip(alphas, valid, strict=True))
    assert isinstance(mean, Tensor)
    mean_norm = torch.linalg.vector_norm(mean.to(dtype))
    mean = units[valid[0]].clone() if mean_norm < tol else mean.div_(mean_norm)
    flat_mean = mean.view(-1)
    block = block_size(mean, BLOCK)
    for _ in range(int(max_iter)):
        step = torch.zeros_like(mean)
        flat_step = step.view(-1)
        dots = _dots(mean, [units[i] for i in valid])
        for a, i, raw_dot in zip(alphas, valid, dots, strict=True):
            dot = torch.clamp(raw_dot, -1.0, 1.0)
            theta = torch.arccos(dot)
            if theta < tol:
                continue
            # step = step + a * (theta / sin(theta)) * (units[i] - dot * mean), a block at a time
            factor = a * (theta / torch.sin(theta))
            unit = units[i].view(-1)
            for start, stop in spans(flat_step.numel(), block):
                flat_step[start:stop] += factor * (unit[start:stop] - dot * flat_mean[start:stop])
        step_norm = torch.linalg.vector_norm(step.to(dtype))
        if step_norm < tol:
            break
        # mean = cos(|step|) * mean + sin(|step|) * (step / |step|); a 0-d factor on the left of `*` is
        # cast to the tensor's dtype first, so it is cast here too
        cosine, sine = torch.cos(step_norm).to(mean.dtype), torch.sin(step_norm).to(mean.dtype)
        mean = mean.mul_(cosine).add_(step.div_(step_norm).mul_(sine))
        norm = torch.linalg.vector_norm(mean.to(dtype))
        if norm > tol:
            mean.div_(norm)
    scale = sum(share * norm for share, norm in zip(equal_share, norms, strict=True))
    return (scale * mean).to(models[0].dtype)
