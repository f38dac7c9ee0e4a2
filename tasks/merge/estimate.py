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
SORTING_METHODS = {"ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}


@dataclass(frozen=True)
class PlanEstimate:
    tensors: int
    bytes_to_read: int
    bytes_to_write: int
    peak_bytes: int
    seconds: float


def estimate_plan(plan: MergePlan, shard_bytes: int) -> PlanEstimate:
    bytes_to_write = 0
    largest_job = 0
    for job in plan.jobs:
        inputs = job.inputs
        # the engine casts to the recipe's dtype, or else promotes the inputs to a common dtype
        compute = plan.compute_dtype or reduce(
            torch.promote_types, (plan.sources[i.model].tensors[i.tensor].dtype for i in inputs)
        )
        numel = math.prod(job.shape)
        out_itemsize = (plan.out_dtype or compute).itemsize
        bytes_to_write += numel * out_itemsize
        # inputs + a stacked copy of the task vectors + the result; sorting methods add int64 indices
        working = numel * compute.itemsize * (2 * len(inputs) + 1)
        if plan.method.name in SORTING_METHODS:
            working += numel * (8 + 4)
        largest_job = max(largest_job, working)
    bytes_to_read = plan.bytes_to_read()
    peak = largest_job + min(shard_bytes, bytes_to_write)
    seconds = bytes_to_read / READ_BYTES_PER_SECOND + bytes_to_write / WRITE_BYTES_PER_SECOND
    return PlanEstimate(len(plan.jobs), bytes_to_read, bytes_to_write, peak, seconds)
