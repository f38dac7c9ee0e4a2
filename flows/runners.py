"""The runner a search scores its candidates with, from its `runner:` settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Union

from flows.console import console
from flows.local_scorer import LocalScorer
from flows.search_context import SearchContext, requested_threads

if TYPE_CHECKING:  # Dask is imported only by a search that runs on it
    from flows.dask_runner import DaskRunner
    from tasks.dask_worker import BenchSpec

Runner = Union[LocalScorer, "DaskRunner"]


def bench_spec(context: SearchContext) -> BenchSpec:
    """What every Dask worker builds its workbench from: the flow's parent paths and hashes (checked again
    on the worker), and the same evaluation."""
    from tasks.dask_worker import BenchSpec

    workbench, settings = context.workbench, context.config.runner
    return BenchSpec(
        parents={ref: str(path) for ref, path in workbench.paths.items()},
        parent_hashes=context.parent_hashes,
        reference=workbench.reference,
        evaluation=context.evaluator.config,
        torch_threads=requested_threads(),
        device="cuda" if settings.gpus_per_worker else "cpu",
    )


@contextmanager
def open_runner(context: SearchContext) -> Iterator[Runner]:
    settings = context.config.runner
    if settings.name == "local":
        yield LocalScorer(context.workbench, context.evaluator, context.parent_hashes, console)
        return
    from flows.dask_runner import DaskRunner, dask_client

    with dask_client(settings, context.out / ".dask") as client:
        resources: dict[str, Any] | None = {"GPU": settings.gpus_per_worker} if settings.gpus_per_worker else None
        runner = DaskRunner(client, resources)
        runner.prepare(bench_spec(context))
        console.print(f"runner: dask at {client.scheduler.address}, {len(client.scheduler_info()['workers'])} workers")
        yield runner
