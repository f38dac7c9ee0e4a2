"""What a merge will cost, from its plan alone (`evomerge merge --plan`): nothing is read but headers.

The rates are this project's measurements on a 2-core machine (inputs from page cache ~10 GB/s, output
written ~1.4 GB/s); they give an order of magnitude, not a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch

from tasks.merge.plan import MergePlan

READ_BYTES_PER_SECOND = 10e9
WRITE_BYTES_PER_SECOND = 1.4e9
RUNTIME_BYTES = 280_000_000
"""Python, torch and evomerge themselves (resident set before the first tensor, measured)."""
SORTING_METHODS = {"ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}


@dataclass(frozen=True)
class PlanEstimate:
    tensors: int
    bytes_to_read: int
    bytes_to_write: int
    peak_bytes: int
    seconds: float


def estimate_plan(plan: MergePlan, shard_bytes: int) -> PlanEstimate:
    """`shard_bytes` changes the file layout, not the memory: each tensor is written as soon as it is merged.
    The peak is the largest job's mapped inputs and working copies plus the two output buffers the merging
    and writing threads alternate between."""
    bytes_to_write = 0
    largest_job = 0
    largest_output = 0
    for job in plan.jobs:
        inputs = job.inputs
        # the engine casts to the recipe's dtype, or else promotes the inputs to a common dtype
        compute = plan.compute_dtype or reduce(
            torch.promote_types, (plan.sources[i.model].tensors[i.tensor].dtype for i in inputs)
        )
        numel = math.prod(job.shape)
        bytes_to_write += job.nbytes
        largest_output = max(largest_output, job.nbytes)
        if plan.method.elementwise:  # cache-sized blocks: only the mapped inputs are whole
            working = sum(plan.sources[i.model].tensors[i.tensor].nbytes for i in inputs)
        else:  # inputs + a stacked copy of the task vectors + the result; sorting methods add keys
            working = numel * compute.itemsize * (2 * len(inputs) + 1)
            if plan.method.name in SORTING_METHODS:
                working += numel * 4
        largest_job = max(largest_job, working)
    bytes_to_read = plan.bytes_to_read()
    peak = RUNTIME_BYTES + largest_job + 2 * largest_output
    seconds = bytes_to_read / READ_BYTES_PER_SECOND + bytes_to_write / WRITE_BYTES_PER_SECOND
    return PlanEstimate(len(plan.jobs), bytes_to_read, bytes_to_write, peak, seconds)
