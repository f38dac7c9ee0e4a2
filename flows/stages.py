"""The pipeline's stages as Prefect tasks: download -> merge -> evaluate -> select.

Each is a thin wrapper over a pure function in `tasks/`; the wrapper adds the task run (visible in the
Prefect UI, with its state and timing) and nothing else. Stages that act on the in-memory workbench take
no cache key from their inputs (a live model cannot be hashed meaningfully); content-keyed, persisted
caching of merges and evaluations is what lets a retried flow run skip finished work (issue 6).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.candidate import CandidateRecord
from tasks.download import ResolvedModel, download_model
from tasks.evaluate import Evaluator
from tasks.faults import fault_point
from tasks.merge.recipe import Recipe
from tasks.select import best_candidate
from tasks.workbench import Workbench


@task(name="download", cache_policy=NO_CACHE)
def download(reference: str, base_dir: str | None = None, zoo_dir: str | None = None) -> ResolvedModel:
    return download_model(
        reference, base_dir=Path(base_dir) if base_dir else None, zoo_dir=Path(zoo_dir) if zoo_dir else None
    )


@task(name="merge", cache_policy=NO_CACHE)
def merge(workbench: Workbench, recipe: Recipe | None, parent: str | None = None) -> str:
    """Load a candidate (or a parent as it is) into the workbench model; returns the tensors' sha256."""
    if parent is not None:
        return workbench.load_parent(parent)
    assert recipe is not None
    fault_point("merge")
    return workbench.load_recipe(recipe)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(workbench: Workbench, evaluator: Evaluator) -> dict[str, dict[str, float]]:
    fault_point("evaluate")
    return evaluator.evaluate(workbench.model, workbench.tokenizer)


@task(name="select", cache_policy=NO_CACHE)
def select(records: list[CandidateRecord]) -> CandidateRecord | None:
    return best_candidate(records)
