"""From metrics to one fitness number, and from candidates to the winner."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from tasks.candidate import CandidateRecord
from tasks.errors import EvaluationError


def task_scores(scores: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """`{task: value of metric}`; a task that did not report the metric is an error, not a zero."""
    result: dict[str, float] = {}
    for task, metrics in scores.items():
        if metric not in metrics:
            raise EvaluationError(f"task {task} reported no {metric!r} (it has: {', '.join(sorted(metrics))})")
        result[task] = float(metrics[metric])
    return result


def fitness_of(scores: dict[str, dict[str, float]], metric: str, aggregate: Literal["mean", "min"]) -> float:
    values = list(task_scores(scores, metric).values())
    if not values:
        raise EvaluationError("no task scores to compute a fitness from")
    return min(values) if aggregate == "min" else sum(values) / len(values)


def best_candidate(records: Iterable[CandidateRecord]) -> CandidateRecord | None:
    """Highest fitness among the candidates that finished; ties go to the earliest evaluated."""
    finished = [r for r in records if r.status == "ok" and r.fitness is not None]
    if not finished:
        return None
    return max(enumerate(finished), key=lambda pair: (pair[1].fitness, -pair[0]))[1]
