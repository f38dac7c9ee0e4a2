"""The pipeline's stages as Prefect tasks: download -> merge -> evaluate -> select (with the Dask runner,
merge and evaluate run on a worker, and `score` is their task run in the flow).

Each is a thin wrapper over a pure function in `tasks/`; the wrapper adds the task run (visible in the
Prefect UI, named after the candidate or parent, with its state and timing), result persistence and caching,
and nothing else.

A candidate's merge and evaluation are cached under content keys (`genetics.candidate.content_key`: the
canonical recipe, the parents' content hashes, the evaluation config), never paths, and their results are
persisted. A retried flow run (the UI's Retry, `prefect flow-run retry`) therefore
finds its finished downloads and merges `Cached` and redoes only what had not finished. A cached merge
leaves the in-memory workbench as it was, so `evaluate` first makes the workbench hold its recipe
(`Workbench.ensure`, checked against the cached tensors hash). Parents and held-out scoring pass no key
and are never cached.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import Task

from genetics.candidate import Candidate, Outcome
from genetics.fitness import best_candidate
from tasks.download import ResolvedModel, download_model
from tasks.errors import CandidateAbandoned, WorkerSetupError
from tasks.evaluate import Evaluator, Scores
from tasks.faults import fault_point
from tasks.merge.recipe import Recipe
from tasks.workbench import Workbench


def _content_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """`<task>-<key>` for a call given a content key; None (no caching) for one without."""
    key = parameters.get("key")
    return f"{context.task.name}-{key}" if key else None


@task(name="download", persist_result=True)
def download(reference: str, base_dir: str | None = None, zoo_dir: str | None = None) -> ResolvedModel:
    return download_model(
        reference, base_dir=Path(base_dir) if base_dir else None, zoo_dir=Path(zoo_dir) if zoo_dir else None
    )


@task(name="merge", task_run_name="merge-{label}", cache_key_fn=_content_key, persist_result=True)
def merge(
    workbench: Workbench, recipe: Recipe | None, label: str, key: str | None = None, parent: str | None = None
) -> str:
    """Load a candidate (or a parent as it is) into the workbench model; returns the tensors' sha256."""
    if parent is not None:
        return workbench.load_parent(parent)
    assert recipe is not None
    fault_point("merge")
    return workbench.load_recipe(recipe)


@task(name="evaluate", task_run_name="evaluate-{label}", cache_key_fn=_content_key, persist_result=True)
def evaluate(
    workbench: Workbench,
    evaluator: Evaluator,
    label: str,
    recipe: Recipe | None = None,
    key: str | None = None,
    tensors_sha256: str | None = None,
) -> Scores:
    """Scores of `recipe` (merged into the workbench if its merge came from the cache), or of whatever the
    workbench holds when no recipe is given."""
    fault_point("evaluate")
    if recipe is not None:
        workbench.ensure(recipe, tensors_sha256)
    return evaluator.evaluate(workbench.model, workbench.tokenizer)


@task(name="select", cache_policy=NO_CACHE)
def select(candidates: list[Candidate]) -> Candidate | None:
    return best_candidate(candidates)


def _unless_the_worker_cannot_score(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry what Dask gave up on (a killed worker), not a worker that cannot read the parents, nor a
    candidate the search no longer wants."""
    try:
        state.result()
    except (WorkerSetupError, CandidateAbandoned):
        return False
    except Exception:  # noqa: BLE001 - any other failure is worth another attempt
        return True
    return True


@task(
    name="score",
    task_run_name="score-{label}",
    cache_key_fn=_content_key,
    persist_result=True,
    retries=2,
    retry_condition_fn=_unless_the_worker_cannot_score,
)
def score(runner: Any, recipe: Recipe, label: str, key: str | None = None) -> Outcome:
    """A candidate merged and scored on a Dask worker (flows/dask_runner.py), waited for here."""
    outcome: Outcome = runner.result_of(recipe, label, key)
    context = TaskRunContext.get()
    if context is not None and context.task_run is not None and outcome.worker:
        # the UI names the worker it ran on; best effort: the API may not hold the run yet (runs are
        # recorded from events), and a name is not worth failing a scored candidate for
        with contextlib.suppress(Exception), get_client(sync_client=True) as client:
            client.set_task_run_name(context.task_run.id, f"score-{label}@{outcome.worker}")
    return outcome
