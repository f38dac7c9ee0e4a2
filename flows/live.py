"""The live line a running search shows: generation, evaluations done of the budget, best so far, ETA."""

from __future__ import annotations

import math
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from genetics.search_config import SearchConfig


def expected_evaluations(config: SearchConfig) -> int:
    """The evaluations the search will run at most: its budget, or what its generations can ask for
    (a GA's elites are carried over already scored; CMA-ES's default λ is DEAP's 4 + 3·ln n)."""
    algorithm = config.algorithm
    if algorithm.name == "cma-es":
        size = algorithm.population_size or int(4 + 3 * math.log(config.genome().size))
        planned = size * algorithm.generations
    else:
        later = algorithm.population_size - (algorithm.elite if algorithm.name == "ga" else 0)
        planned = algorithm.population_size + later * (algorithm.generations - 1)
    budget = config.budget.max_evaluations
    return min(planned, budget) if budget is not None else planned


class SearchProgress:
    def __init__(self, config: SearchConfig, done: int, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]generation {task.fields[generation]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("evaluations · best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[workers]}"),
            console=console,
        )
        self._task = self._progress.add_task(
            "search", total=max(expected_evaluations(config), done), completed=done, generation=0, best="–", workers=""
        )

    def __enter__(self) -> SearchProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, *, evaluations: int, generation: int, best: float | None, workers: str = "") -> None:
        """`workers`: the runner's busy/idle line (empty for the local runner)."""
        self._progress.update(
            self._task,
            completed=evaluations,
            generation=generation,
            best="–" if best is None else f"{best:.3f}",
            workers=workers,
        )
