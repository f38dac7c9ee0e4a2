"""Running a multi-document recipe: each document merged after the ones it reads; only the output is kept.

Every document is planned before anything is merged, so a mistake in the last one costs seconds, not the
earlier merges. A document that later ones read is an *intermediate*: its config and tokenizer go to a
scratch directory inside `OUT.partial/`, its tensors stay in memory where they fit (they are read again at
once, and a model written and read back costs its size in disk traffic twice), else they are written next
to them. Intermediates are dropped once their last reader is merged. Only the output document is written
to `OUT.partial/`, which is renamed to `OUT` when complete: a crash leaves nothing that looks finished. The
output's `mergekit_config.yml` holds every document it was built from, so it can be merged again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import torch

from tasks.atomic import fsync_dir
from tasks.errors import EvomergeError
from tasks.merge.engine import merge_job, release_inputs, verify_finite
from tasks.merge.plan import MergePlan, plan_merge
from tasks.merge.recipe_set import RecipeDocument, RecipeSet
from tasks.merge.tensor_io import ModelSource, TensorInfo
from tasks.merge.writer import (
    ProgressCallback,
    copy_auxiliary_files,
    fresh_partial_dir,
    partial_dir,
    publish,
    write_files,
)

Placement = Literal["auto", "memory", "disk"]
SCRATCH = ".intermediates"
MEMORY_SHARE = 0.5
"""An intermediate is kept in memory (placement `auto`) when it takes at most this share of the memory
available as it is merged (what earlier intermediates hold is already taken from that)."""


class IntermediateSource(ModelSource):
    """A merged document read by later documents as a model. Its config and tokenizer are files in `path`;
    its tensors are announced by its plan (enough to plan the readers) and then held in memory or written
    as weight files into `path`."""

    def __init__(self, reference: str, path: Path, plan: MergePlan) -> None:
        super().__init__(reference, path)
        self.resident = True
        self._plan_table = {
            job.output_name: TensorInfo(job.output_name, job.shape, job.dtype, path / "(merged in memory)")
            for job in plan.jobs
        }
        self._values: dict[str, torch.Tensor] = {}
        self._files: ModelSource | None = None

    @cached_property
    def tensors(self) -> dict[str, TensorInfo]:
        return self._plan_table

    @property
    def nbytes(self) -> int:
        return sum(info.nbytes for info in self._plan_table.values())

    @property
    def in_memory(self) -> bool:
        return bool(self._values)

    def hold(self, name: str, tensor: torch.Tensor) -> None:
        self._values[name] = tensor

    def attach_files(self) -> None:
        """The tensors were written as weight files into `path`: read them from there."""
        self._files = ModelSource(self.reference, self.path)

    def read(self, name: str) -> torch.Tensor:
        if self._files is not None:
            return self._files.read(name)
        if name not in self._values:
            raise EvomergeError(f"internal error: {self.reference!r} was read before {name} was merged")
        return self._values[name]

    def release(self, name: str) -> None:
        if self._files is not None:
            self._files.release(name)

    def release_range(self, name: str, begin: int, stop: int) -> None:
        if self._files is not None:
            self._files.release_range(name, begin, stop)

    def drop(self) -> None:
        self._values.clear()
        self._files = None
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class PlannedDocument:
    document: RecipeDocument
    plan: MergePlan
    intermediate: IntermediateSource | None
    """Set for every document but the output: what its readers plan and merge against."""


Resolve = Callable[[str], Path]


def plan_documents(
    recipe_set: RecipeSet,
    output: RecipeDocument,
    resolve: Resolve,
    scratch: Path,
    *,
    allow_pickle: bool = False,
    check_finite: bool = False,
    random_seed: int = 0,
) -> list[PlannedDocument]:
    """Plan `output` and every document it reads, in order, against the parents and the planned results of
    earlier documents (whose config and tokenizer files are written to `scratch/<name>/`)."""
    planned: list[PlannedDocument] = []
    intermediates: dict[str, IntermediateSource] = {}
    for document in recipe_set.order(output):
        paths: dict[str, Path] = {}
        for model in document.recipe.model_names():
            if model in intermediates:
                paths[model] = intermediates[model].path
            else:
                paths[model] = _resolve(recipe_set, model, resolve)
        plan = plan_merge(
            document.recipe,
            paths,
            f"{recipe_set.source}: {document.label}" if recipe_set.is_multi else recipe_set.source,
            opened=dict(intermediates),
            allow_pickle=allow_pickle,
            check_finite=check_finite,
            random_seed=random_seed,
        )
        intermediate = None
        if document is not output:
            assert document.name is not None  # only the output may be unnamed (RecipeSet.output)
            directory = scratch / document.name
            directory.mkdir(parents=True)
            copy_auxiliary_files(plan, directory)
            intermediate = intermediates[document.name] = IntermediateSource(document.name, directory, plan)
        planned.append(PlannedDocument(document, plan, intermediate))
    return planned


def _resolve(recipe_set: RecipeSet, model: str, resolve: Resolve) -> Path:
    try:
        return resolve(model)
    except EvomergeError as error:
        if not recipe_set.is_multi:
            raise
        names = ", ".join(recipe_set.names) or "none"
        raise EvomergeError(f"{error} (nor is it a document of {recipe_set.source}: {names})") from None


@contextmanager
def planned_in_scratch(
    recipe_set: RecipeSet, output: RecipeDocument, resolve: Resolve, **options: object
) -> Iterator[list[PlannedDocument]]:
    """The plans alone (`merge --plan`), their scratch files in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="evomerge-plan-") as scratch:
        yield plan_documents(recipe_set, output, resolve, Path(scratch), **options)  # type: ignore[arg-type]


def _memory_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes (0 where it cannot be read: then nothing is kept in memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _keep_in_memory(placement: Placement, intermediate: IntermediateSource) -> bool:
    if placement != "auto":
        return placement == "memory"
    return intermediate.nbytes <= MEMORY_SHARE * _memory_available()


def _merge_in_memory(
    plan: MergePlan, intermediate: IntermediateSource, device: str, on_tensor: ProgressCallback | None
) -> None:
    for job in plan.jobs:
        merged = merge_job(plan, job, device)
        # a copy of its own: the merged value may be a view of an input (passthrough) or of a reused buffer
        intermediate.hold(job.output_name, merged.clone())
        release_inputs(plan, job)
        if on_tensor is not None:
            on_tensor(job.output_name, job.nbytes)


def write_recipe_set(
    recipe_set: RecipeSet,
    out_dir: Path,
    resolve: Resolve,
    *,
    output: RecipeDocument,
    force: bool = False,
    placement: Placement = "auto",
    shard_bytes: int,
    device: str = "cpu",
    on_tensor: ProgressCallback | None = None,
    on_planned: Callable[[list[PlannedDocument]], None] | None = None,
    on_document: Callable[[PlannedDocument, bool], None] | None = None,
    hash_tensors: bool = True,
    allow_pickle: bool = False,
    check_finite: bool = False,
    random_seed: int = 0,
) -> str | None:
    """Merge `output` (and what it reads) into `out_dir`; returns the output tensors' sha256 (if hashed).
    `on_planned(planned)` is called once every document is planned, `on_document(planned, in_memory)` as
    each starts merging."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise EvomergeError(f"{out_dir} already exists; pass --force to replace it")
    work = fresh_partial_dir(out_dir)
    scratch = work / SCRATCH
    planned = plan_documents(
        recipe_set,
        output,
        resolve,
        scratch,
        allow_pickle=allow_pickle,
        check_finite=check_finite,
        random_seed=random_seed,
    )
    if on_planned is not None:
        on_planned(planned)
    if check_finite:  # every parent before anything is merged; the results of documents are not parents
        names = frozenset(recipe_set.names)
        for item in planned:
            verify_finite(item.plan, skip=names)
    last_reader = {name: index for index, item in enumerate(planned) for name in item.document.recipe.model_names()}
    digest = None
    for index, item in enumerate(planned):
        if item.intermediate is None:
            if on_document is not None:
                on_document(item, False)
            digest = write_files(
                item.plan,
                work,
                shard_bytes=shard_bytes,
                device=device,
                on_tensor=on_tensor,
                hash_tensors=hash_tensors,
                recipe_text=recipe_set.to_yaml(entry.document for entry in planned),
            )
        else:
            in_memory = _keep_in_memory(placement, item.intermediate)
            if on_document is not None:
                on_document(item, in_memory)
            if in_memory:
                _merge_in_memory(item.plan, item.intermediate, device, on_tensor)
            else:  # beside the planned files, renamed over them once whole: never a half-written model
                written = partial_dir(item.intermediate.path)
                write_files(
                    item.plan,
                    written,
                    shard_bytes=shard_bytes,
                    device=device,
                    on_tensor=on_tensor,
                    hash_tensors=False,
                    durable=False,
                )
                publish(written, item.intermediate.path)
                item.intermediate.attach_files()
        for earlier in planned[:index]:
            source = earlier.intermediate
            if source is not None and last_reader.get(earlier.document.name or "") == index:
                source.drop()
    shutil.rmtree(scratch, ignore_errors=True)
    fsync_dir(work)
    publish(work, out_dir)
    return digest
