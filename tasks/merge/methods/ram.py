"""Reinforced Agent Merging (RAM and RAM+, arXiv 2601.13572), in mergekit 0.1.5's order of operations.

RL fine-tunes change few weights, and averaging a weight that only one agent changed divides its update by
the number of agents. RAM keeps an update whole where exactly one model moved the entry (|delta| above
`epsilon`) and averages it only over the models that moved it elsewhere. RAM+ (tensor-local) also scales
each model's unique updates up by 1 + r · min(rho, alpha), where rho is that model's count of shared
entries over its count of unique ones in this tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.merge.methods.blocks import block_size, spans
from tasks.merge.registry import ParameterSpec, merge_method

EPSILON = ParameterSpec("epsilon", "global", default=1e-5, low=0.0)
BLOCK = 1 << 18
"""Entries per block on the CPU: RAM+'s whole-tensor statistics are integer counts, so they are the same
summed block by block, and the combination is elementwise once they are known."""


def _masks(base: Tensor, models: list[Tensor], epsilon: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Deltas [n, numel], where each moved (|delta| > epsilon), how many moved each entry ([1, numel]), and
    the entries moved by several models or by exactly one."""
    deltas = torch.stack([model - base for model in models], dim=0).view(len(models), -1)
    moved = deltas.abs() > epsilon
    movers = moved.sum(dim=0, keepdim=True)
    return deltas, moved, movers, movers > 1, movers == 1


@merge_method("ram", base="required", elementwise=True, parameters=(EPSILON,))
def ram(base: Tensor, models: list[Tensor], epsilon: float = 1e-5) -> Tensor:
    """base + Σ over models of: the delta where it alone moved the entry, the delta / movers where several did."""
    deltas, moved, movers, shared, unique = _masks(base, models, epsilon)
    kept = deltas * moved
    merged = ((kept * unique) + (kept * shared / movers.clamp(min=1))).sum(dim=0, keepdim=True)
    return base + merged.reshape_as(base)


@merge_method(
    "ramplus_tl",
    base="required",
    result_at_least=torch.float32,
    parameters=(
        ParameterSpec("r", "global", default=0.1, low=0.0),
        ParameterSpec("alpha", "global", default=0.2, low=0.0),
        EPSILON,
    ),
)
def ramplus_tl(base: Tensor, models: list[Tensor], r: float = 0.1, alpha: float = 0.2, epsilon: float = 1e-5) -> Tensor:
    """RAM with each model's unique updates scaled by λ = 1 + r · clamp(shared / unique, 0, alpha), its counts
    of entries it shares with another model and entries only it moved, over the whole tensor. Two passes
    over cache-sized blocks: the counts, then the merge; the result is float32 at least, as mergekit's."""
    flat_base = base.reshape(-1)
    flat_models = [model.reshape(-1) for model in models]
    block = block_size(base, BLOCK)
    shared_counts = torch.zeros(len(models), dtype=torch.int64, device=base.device)
    unique_counts = torch.zeros_like(shared_counts)
    for start, stop in spans(flat_base.numel(), block):
        _, moved, _, shared, unique = _masks(flat_base[start:stop], [m[start:stop] for m in flat_models], epsilon)
        shared_counts += (moved & shared).sum(dim=1)
        unique_counts += (moved & unique).sum(dim=1)
    rho = shared_counts / unique_counts.clamp(min=epsilon)
    scale = (1 + r * rho.clamp(min=0, max=alpha)).unsqueeze(-1)
    result = torch.empty(flat_base.shape, dtype=torch.promote_types(base.dtype, scale.dtype), device=base.device)
    for start, stop in spans(flat_base.numel(), block):
        part = flat_base[start:stop]
        deltas, moved, movers, shared, unique = _masks(part, [m[start:stop] for m in flat_models], epsilon)
        kept = deltas * moved
        merged = ((kept * unique * scale) + (kept * shared / movers.clamp(min=1))).sum(dim=0, keepdim=True)
        result[start:stop] = part + merged.reshape_as(part)
    return result.view(base.shape)
