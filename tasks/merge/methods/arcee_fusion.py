from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tasks.merge.methods.blocks import block_size, row_spans
from tasks.merge.registry import merge_method

SAMPLE_LIMIT = 1_000_000
BLOCK = 1 << 18
"""Entries per block of the row-by-row passes (softmaxes and KL divergences per row, then the mask)."""
MIN_ROWS = 64
"""Rows per block at least: a reduction over few rows may be split across threads inside each row, and so
sum in another order than over the whole tensor; over many rows each row is summed by one thread."""


def _quantiles(values: Tensor, quantiles: list[float]) -> list[Tensor]:
    """The entries at sorted positions ⌊q·(n−1)⌋ of `values`, as 0-d tensors of its dtype.

    One partial partition finds them all: the same values a full sort gives (NaN last in both), at a
    third of the cost; the sort was over half of this method's time."""
    flat = values.reshape(-1)
    positions = [int(q * (flat.numel() - 1)) for q in quantiles]
    exact = flat.detach().to("cpu", torch.float64 if flat.dtype == torch.float64 else torch.float32)
    partitioned = np.partition(exact.numpy(), positions)
    return [torch.tensor(partitioned[p], dtype=flat.dtype, device=flat.device) for p in positions]


def _divergence(base: Tensor, other: Tensor, blocks: list[slice]) -> Tensor:
    """KL(softmax(other) ‖ softmax(base)) of each row, [rows, 1], in mergekit's dtype and operations."""
    divergence = None
    for rows in blocks:
        p = F.softmax(other[rows], dim=-1) + 1e-8
        q = F.softmax(base[rows], dim=-1) + 1e-8
        part = torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
        if divergence is None:
            divergence = part.new_empty((other.shape[0], 1))
        divergence[rows] = part
    assert divergence is not None
    return divergence


@merge_method("arcee_fusion", base="required", exact_models=1, stochastic=True, result_at_least=torch.float32)
def arcee_fusion(base: Tensor, models: list[Tensor], generator: torch.Generator) -> Tensor:
    """Arcee Fusion: keep only the changes whose importance (|difference| times the KL divergence between
    the rows' softmaxes) is an upper outlier (above median + 1.5 IQR of a sample of at most a million
    entries). mergekit's operations, row block by row block: the importance of a sampled entry is its
    |difference| times its row's divergence, so the whole importance tensor is never built."""
    other = models[0]
    shape = base.shape
    base_rows = base.reshape(-1, shape[-1]) if base.dim() > 1 else base.reshape(1, -1)
    other_rows = other.reshape(base_rows.shape)
    blocks = row_spans(*base_rows.shape, block_size(base, BLOCK), MIN_ROWS)
    divergence = _divergence(base_rows, other_rows, blocks)
    numel, columns = base.numel(), base_rows.shape[1]
    if numel > SAMPLE_LIMIT:
        picked = torch.randint(0, numel, (SAMPLE_LIMIT,), generator=generator, device=base.device)
        difference = (other.reshape(-1)[picked] - base.reshape(-1)[picked]).abs()
        importance = difference * divergence.reshape(-1)[torch.div(picked, columns, rounding_mode="floor")]
    else:
        importance = (other_rows - base_rows).abs() * divergence
    median, first, third = _quantiles(importance, [0.5, 0.25, 0.75])
    threshold = median + 1.5 * (third - first)
    del importance
    result = None
    for rows in blocks:
        change = other_rows[rows] - base_rows[rows]
        mask = (change.abs() * divergence[rows] >= threshold).float()
        part = base_rows[rows] + change * mask
        if result is None:
            result = part.new_empty(base_rows.shape)
        result[rows] = part
    assert result is not None
    return result.reshape(shape)
