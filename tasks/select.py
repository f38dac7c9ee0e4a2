"""From metrics to one fitness number, and from candidates to the winner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from tasks.candidate import CandidateRecord
from tasks.errors import EvaluationError


def task_scores(scores: dict[str, dict[str, float]], metric: str, order: Sequence[str] = ()) -> dict[str, float]:
    """`{task: value of metric}` with the tasks in `order` first (as the user listed them), the rest sorted;
    a task that did not report the metric is an error, not a zero."""
    result: dict[str, float] = {}
    ranked = [t for t in order if t in scores] + sorted(t for t in scores if t not in order)
    for task in ranked:
        metrics = scores[task]
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
