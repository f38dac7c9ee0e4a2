"""Runs of tensors merged as one, for the search's workbench.

An elementwise method (task arithmetic, linear, nearswap) gives, at every entry, a value that depends only
on the inputs at that entry and on its parameters. A run of consecutive output tensors that read
consecutive stretches of every input, in the same models, with the same parameter values, is therefore
one stretch of numbers to it: merged in one call, it gives entry for entry what merging tensor by tensor
gives, with one pass of Python and torch dispatch instead of one per tensor. On the demo zoo (39 tensors,
per-layer weights) that is 5 calls instead of 39, and per-call overhead, not arithmetic, is what a small
model's merge costs. Everything else (TIES, DARE, SLERP, remapped vocabularies) goes tensor by tensor.

The parents are copied once into one flat buffer per dtype, in the order the plan reads them, so that
consecutive tensors are consecutive in memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tasks.merge.engine import merge_inputs, merge_job, release_inputs, write_into_state
from tasks.merge.plan import MergePlan, TensorJob, plan_merge
from tasks.merge.recipe import Recipe
from tasks.merge.tensor_io import ModelSource


@dataclass(frozen=True)
class Place:
    dtype: torch.dtype
    start: int
    numel: int


@dataclass
class FlatModel:
    """A model's tensors copied into one flat buffer per dtype, in a chosen order."""

    buffers: dict[torch.dtype, torch.Tensor]
    places: dict[str, Place]

    @classmethod
    def of(cls, source: ModelSource, names: Iterable[str]) -> FlatModel:
        """`names` (the ones `source` holds, first occurrence first), laid end to end per dtype."""
        places: dict[str, Place] = {}
        sizes: dict[torch.dtype, int] = {}
        for name in dict.fromkeys(names):
            info = source.tensors.get(name)
            if info is None or info.file.suffix == ".bin":
                continue
            numel = math.prod(info.shape)
            places[name] = Place(info.dtype, sizes.get(info.dtype, 0), numel)
            sizes[info.dtype] = sizes.get(info.dtype, 0) + numel
        buffers = {dtype: torch.empty(size, dtype=dtype) for dtype, size in sizes.items()}
        for name, place in places.items():
            buffers[place.dtype][place.start : place.start + place.numel] = source.read(name).reshape(-1)
        return cls(buffers, places)

    def stretch(self, name: str, numel: int) -> torch.Tensor:
        place = self.places[name]
        return self.buffers[place.dtype][place.start : place.start + numel]


def flatten_parents(plan: MergePlan) -> dict[str, FlatModel]:
    """Each input model of `plan`, laid out in the order the plan's jobs read it."""
    order: dict[str, list[str]] = {}
    for job in plan.jobs:
        for item in job.inputs:
            order.setdefault(item.model, []).append(item.tensor)
    return {model: FlatModel.of(plan.sources[model], names) for model, names in order.items()}


@dataclass(frozen=True)
class Span:
    jobs: tuple[TensorJob, ...]
    flat: bool
    """Merged as one stretch of the flat buffers; False: the single job goes the ordinary way."""

    @property
    def numel(self) -> int:
        return sum(math.prod(job.shape) for job in self.jobs)


def group_spans(plan: MergePlan, flat: Mapping[str, FlatModel]) -> list[Span]:
    """The plan's jobs, in order, as runs that can be merged as one (every job exactly once)."""
    if not plan.method.elementwise or plan.method.stochastic:
        return [Span((job,), flat=False) for job in plan.jobs]
    spans: list[Span] = []
    run: list[TensorJob] = []
    settings: tuple[Any, ...] = ()
    for job in plan.jobs:
        if not _flat_inputs(job, flat):
            if run:
                spans.append(Span(tuple(run), flat=True))
                run = []
            spans.append(Span((job,), flat=False))
            continue
        job_settings = _settings(job)
        if run and job_settings == settings and _adjacent(run[-1], job, flat):
            run.append(job)
        else:
            if run:
                spans.append(Span(tuple(run), flat=True))
            run, settings = [job], job_settings
    if run:
        spans.append(Span(tuple(run), flat=True))
    return spans


def _flat_inputs(job: TensorJob, flat: Mapping[str, FlatModel]) -> bool:
    return job.row_map is None and all(
        item.model in flat and item.tensor in flat[item.model].places for item in job.inputs
    )


def _settings(job: TensorJob) -> tuple[Any, ...]:
    """The job's parameter values with their types (1 and 1.0 and True are not the same setting)."""
    per_model = tuple((name, tuple((type(v), v) for v in values)) for name, values in sorted(job.per_model.items()))
    shared = tuple((name, type(value), value) for name, value in sorted(job.shared.items()))
    return per_model, shared, job.dtype, job.base is None, tuple(item.model for item in job.inputs)


def _adjacent(previous: TensorJob, job: TensorJob, flat: Mapping[str, FlatModel]) -> bool:
    """Every input of `job` starts where the same model's input of `previous` ends (settings being equal,
    the two jobs read the same models in the same order)."""
    for before, after in zip(previous.inputs, job.inputs, strict=True):
        places = flat[after.model].places
        a, b = places[before.tensor], places[after.tensor]
        if a.dtype != b.dtype or b.start != a.start + a.numel:
            return False
    return True


def iter_span_tensors(
    plan: MergePlan, flat: Mapping[str, FlatModel], device: str = "cpu"
) -> Iterator[tuple[str, torch.Tensor]]:
    """What `engine.iter_merged_tensors` yields for `plan`, bit for bit, merged a run at a time."""
    for span in group_spans(plan, flat):
        first = span.jobs[0]
        if not span.flat:
            yield first.output_name, merge_job(plan, first, device)
            release_inputs(plan, first)
            continue
        numel = span.numel
        inputs = [flat[item.model].stretch(item.tensor, numel) for item in first.inputs]
        merged = merge_inputs(plan, dataclasses.replace(first, shape=(numel,)), inputs, device)
        start = 0
        for job in span.jobs:
            size = math.prod(job.shape)
            yield job.output_name, merged[start : start + size].view(job.shape)
            start += size


class ResidentParents:
    """Parent models opened once and held in memory, merged span by span into a model's tensors by name:
    the workbench's own merges and the merge-ahead worker's (tasks/merge_ahead.py) are this code."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = dict(paths)
        self.sources = {name: ModelSource(name, path) for name, path in self.paths.items()}
        for source in self.sources.values():
            source.resident = True
        self._flat: dict[str, FlatModel] | None = None
        """The parents laid end to end, built on the first merge, in the order its plan reads them."""

    def plan(self, recipe: Recipe) -> MergePlan:
        return plan_merge(recipe, self.paths, "candidate recipe", opened=self.sources)

    def merge_into(self, recipe: Recipe, state: Mapping[str, torch.Tensor], device: str = "cpu") -> str:
        """Merge `recipe` into `state` (a model's tensors by name, overwritten in place); returns the merged
        tensors' sha256."""
        plan = self.plan(recipe)
        if self._flat is None:
            self._flat = flatten_parents(plan)
        return write_into_state(iter_span_tensors(plan, self._flat, device), state)
