from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tasks.merge.registry import ParameterSpec, merge_method

DOT_THRESHOLD = 0.9995
EPS = 1e-8
CHUNK = 1024 * 1024
"""Entries per pass of the streamed reductions: mergekit 0.1.5's `_CHUNK_ELEMENTS` for a batch of one
tensor. The norms and the dot are summed chunk by chunk in exactly its way (norms of chunk norms, sums of
chunk dots), so the float32 scratch is a chunk, never a tensor, and the values are mergekit's."""


def _per_chunk(statistic: Callable[[int], Tensor], chunks: range) -> Tensor:
    """`torch.stack([statistic(s) for s in chunks])`, each value copied into the result as it comes: kept in
    a list, the small values interleave on the heap with the chunks' float32 scratch, and the heap then held
    every chunk's scratch (a float32 copy of the tensor) until the stack."""
    first = statistic(chunks[0])
    stacked = first.new_empty((len(chunks), *first.shape))
    stacked[0] = first
    del first
    for index, start in enumerate(chunks[1:], start=1):
        stacked[index] = statistic(start)
    return stacked


def slerp_tensors(t: float, start: Tensor, end: Tensor) -> Tensor:
    """Spherical interpolation treating each whole tensor as one vector; nearly parallel tensors fall back
    to linear interpolation, where the spherical formula is numerically unstable. Works in float32 (float64
    for float64 inputs) a chunk at a time; the result has the inputs' dtype."""
    dtype = torch.float64 if start.dtype == torch.float64 else torch.float32
    a = start.reshape(1, -1)
    b = end.reshape(1, -1)
    position = torch.tensor([t], dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    position = position.reshape(-1, 1).to(dtype)  # 1 - t rounded in the compute dtype, as mergekit does
    if not a.shape[1]:
        return ((1 - position) * a + position * b).reshape(start.shape).to(start.dtype)
    chunks = range(0, a.shape[1], CHUNK)
    norm_a = torch.linalg.vector_norm(
        _per_chunk(lambda s: torch.linalg.vector_norm(a[:, s : s + CHUNK].to(dtype), dim=1, keepdim=True), chunks),
        dim=0,
    )
    norm_b = torch.linalg.vector_norm(
        _per_chunk(lambda s: torch.linalg.vector_norm(b[:, s : s + CHUNK].to(dtype), dim=1, keepdim=True), chunks),
        dim=0,
    )
    norm_a = torch.where(norm_a > EPS, norm_a, 1)
    norm_b = torch.where(norm_b > EPS, norm_b, 1)
    dot = (
        _per_chunk(
            lambda s: ((a[:, s : s + CHUNK].to(dtype) / norm_a) * (b[:, s : s + CHUNK].to(dtype) / norm_b)).sum(
                dim=1, keepdim=True
            ),
            chunks,
        )
        .sum(dim=0)
        .clamp(-1, 1)
    )
    linear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coefficient_a = torch.where(linear, 1 - position, torch.sin((1 - position) * theta) / sin_theta)
    coefficient_b = torch.where(linear, position, torch.sin(position * theta) / sin_theta)
    result = torch.empty_like(a)
    for s in chunks:
        result[:, s : s + CHUNK] = coefficient_a * a[:, s : s + CHUNK].to(dtype) + coefficient_b * b[
            :, s : s + CHUNK
        ].to(dtype)
    return result.reshape(start.shape)


@merge_method(
    "slerp",
    base="required",
    exact_models=1,
    parameters=(ParameterSpec("t", "global", low=0.0, high=1.0),),
)
def slerp(base: Tensor, models: list[Tensor], t: float) -> Tensor:
    """Spherical linear interpolation from the base (t = 0) to the other model (t = 1) (Shoemake 1985;
    as popularised for model merging by mergekit)."""
    return slerp_tensors(t, base, models[0])
