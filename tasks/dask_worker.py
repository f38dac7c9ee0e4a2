"""What a Dask worker runs for a search: its own workbench and evaluator, built once, and the scoring of
one candidate on them.

Imported by the workers, so nothing here touches Prefect or MLflow: a Prefect object built at import time
in a worker made its stream die and the flow hang (../shared/scaleout-notes.md). Only recipes, labels and
outcomes cross the wire; the parents are read from paths the worker can reach (a shared file system or
the Hugging Face cache), and their content hashes must match the flow's before anything is scored.

A worker's parent paths may differ from the flow's (another machine mounts the share elsewhere):
`EVOMERGE_PATH_MAP=/flow/prefix=/worker/prefix[;...]` in the worker's environment rewrites them.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from distributed import WorkerPlugin, get_worker

from genetics.candidate import Outcome
from tasks.errors import EvomergeError, WorkerSetupError
from tasks.evaluate import EvaluationConfig, Evaluator
from tasks.faults import fault_point
from tasks.merge.recipe import Recipe
from tasks.merge.tensor_io import ModelSource
from tasks.workbench import Workbench, search_torch_threads

PLUGIN_NAME = "evomerge-workbench"
BENCH_ATTRIBUTE = "evomerge_bench"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's mallopt parameters."""
DYNAMIC_MMAP_CEILING = 32 * 1024 * 1024
"""Where glibc's dynamic mmap threshold stops rising on 64-bit (its trim threshold follows at twice it)."""


def restore_malloc_thresholds(environ: Mapping[str, str] = os.environ) -> bool:
    """Undo what Dask's nanny does to every worker it starts: `MALLOC_TRIM_THRESHOLD_=65536`, meant to hand
    freed memory back to the OS. Any such setting turns off glibc's dynamic mmap threshold, so every buffer
    over 128 KiB a merge or a forward pass allocates is mapped and unmapped again, page faults included, and
    a worker scored far slower than the flow's own process (README, "Scaling out on Dask").
    The thresholds are set to where glibc's dynamic rule settles. Returns whether it changed them."""
    if "MALLOC_TRIM_THRESHOLD_" not in environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(M_MMAP_THRESHOLD, DYNAMIC_MMAP_CEILING)
            and libc.mallopt(M_TRIM_THRESHOLD, 2 * DYNAMIC_MMAP_CEILING)
        )
    except (OSError, AttributeError):  # not glibc (musl, another libc): nothing of the kind to undo
        return False


@dataclass(frozen=True)
class BenchSpec:
    """What a worker needs to build its workbench: picklable, small, the same for every worker."""

    parents: dict[str, str]
    """Parent reference -> its directory as the flow sees it."""
    parent_hashes: dict[str, str]
    reference: str
    evaluation: EvaluationConfig
    torch_threads: int | None = None
    device: str = "cpu"


def mapped_path(path: str, mapping: str | None = None) -> Path:
    """`path` with the first matching prefix of `EVOMERGE_PATH_MAP` replaced."""
    mapping = os.environ.get("EVOMERGE_PATH_MAP", "") if mapping is None else mapping
    for pair in filter(None, mapping.split(";")):
        source, _, target = pair.partition("=")
        if source and (path == source or path.startswith(source.rstrip("/") + "/")):
            return Path(target + path[len(source.rstrip("/")) :])
    return Path(path)


class WorkerBench:
    def __init__(self, spec: BenchSpec, worker_name: str) -> None:
        self.spec = spec
        self.worker_name = worker_name
        paths = {ref: mapped_path(path) for ref, path in spec.parents.items()}
        for ref, path in paths.items():
            if not path.is_dir():
                raise WorkerSetupError(
                    f"worker {worker_name} cannot read parent {ref} at {path}: every worker needs the parents at "
                    "a path it can reach (a shared file system, the Hugging Face cache, or EVOMERGE_PATH_MAP)"
                )
            digest = ModelSource(ref, path).content_sha256()
            if digest != spec.parent_hashes[ref]:
                raise WorkerSetupError(
                    f"worker {worker_name}: parent {ref} at {path} differs from the flow's "
                    f"(sha256 {digest[:12]} against {spec.parent_hashes[ref][:12]})"
                )
        restore_malloc_thresholds()
        device = spec.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise WorkerSetupError(f"worker {worker_name} was asked for a GPU and sees none")
        self.workbench = Workbench(paths, spec.reference, device=device)
        torch.set_num_threads(search_torch_threads(self.workbench.parameter_count(), spec.torch_threads))
        self.evaluator = Evaluator(spec.evaluation)

    def score(self, recipe: Recipe | None, label: str, parent: str | None = None) -> Outcome:
        """Merge `recipe` (or load `parent`) into this worker's live model and score it; a candidate's
        failure is its outcome."""
        started = time.perf_counter()
        outcome = Outcome(worker=self.worker_name)
        fault_point("evaluate")
        try:
            if parent is not None:
                outcome.tensors_sha256 = self.workbench.load_parent(parent)
            else:
                assert recipe is not None
                outcome.tensors_sha256 = self.workbench.load_recipe(recipe)
            outcome.scores = {
                task: dict(values)
                for task, values in self.evaluator.evaluate(self.workbench.model, self.workbench.tokenizer).items()
            }
        except Exception as error:  # noqa: BLE001 - any candidate failure is recorded and the search goes on
            outcome.status = "failed"
            outcome.error = f"{type(error).__name__}: {error}"
            if not isinstance(error, EvomergeError):
                outcome.error += "\n" + traceback.format_exc(limit=-3)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def close(self) -> None:
        self.workbench.close()


class WorkbenchPlugin(WorkerPlugin):
    """Registered by the search on its cluster: every worker, present or joining later, builds its bench
    once. A failure is kept on the worker and raised by the first candidate sent there, so that the search
    fails with the worker and the path named instead of a worker that never comes up."""

    name = PLUGIN_NAME

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec

    def setup(self, worker: object) -> None:
        existing = getattr(worker, BENCH_ATTRIBUTE, None)
        if isinstance(existing, WorkerBench) and existing.spec == self.spec:
            return  # a resumed search on the same cluster: the bench is still good
        if isinstance(existing, WorkerBench):
            existing.close()
        name = str(getattr(worker, "name", "") or getattr(worker, "address", "worker"))
        try:
            bench: WorkerBench | str = WorkerBench(self.spec, name)
        except Exception as error:  # noqa: BLE001 - reported by the first candidate sent here
            bench = (
                str(error) if isinstance(error, EvomergeError) else f"worker {name}: {type(error).__name__}: {error}"
            )
        setattr(worker, BENCH_ATTRIBUTE, bench)

    def teardown(self, worker: object) -> None:
        bench = getattr(worker, BENCH_ATTRIBUTE, None)
        if isinstance(bench, WorkerBench):
            bench.close()


def worker_bench() -> WorkerBench:
    worker = get_worker()
    bench = getattr(worker, BENCH_ATTRIBUTE, None)
    if isinstance(bench, WorkerBench):
        return bench
    if isinstance(bench, str):
        raise WorkerSetupError(bench)
    raise WorkerSetupError(f"worker {worker.name} has no evomerge workbench (the search's plugin did not reach it)")


def score_on_worker(recipe: Recipe | None, label: str, parent: str | None = None) -> Outcome:
    """A Dask task: one candidate (or parent) scored on the worker that runs it."""
    return worker_bench().score(recipe, label, parent)
