"""Held-out truth: scores on prompts the search never saw, with bootstrap 95 % confidence intervals.

The winner is chosen on the search split, so its search-split score is biased upward (it is the maximum of
many noisy measurements). The report therefore scores the parents and the winner again on each task's
disjoint test split, and says how sure that number is: a percentile bootstrap over the prompts (Efron &
Tibshirani 1993), resampling each task's prompts independently; the mean over tasks is bootstrapped from
the same resamples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from tasks.evaluate import ItemScores
from tasks.select import combine

BOOTSTRAP_ITERATIONS = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class HeldOutScores:
    tasks: dict[str, Interval]
    mean: Interval

    def to_json(self) -> dict[str, Any]:
        return {"tasks": {task: asdict(interval) for task, interval in self.tasks.items()}, "mean": asdict(self.mean)}


def bootstrap_scores(
    items: Mapping[str, Sequence[float] | ItemScores],
    *,
    seed: int,
    weights: Mapping[str, float] | None = None,
    aggregate: Literal["mean", "min"] = "mean",
    iterations: int = BOOTSTRAP_ITERATIONS,
    confidence: float = CONFIDENCE,
) -> HeldOutScores:
    """Each task's score with its percentile bootstrap interval, and the fitness over tasks (weighted mean or
    minimum of the values oriented so that higher is better) bootstrapped from the same resamples.

    A task's score is lm-eval's aggregation of its per-prompt values: a mean for accuracies, the perplexity of
    the pooled (log-likelihood, length) pairs for perplexities; a plain list of floats is a mean."""
    if not items or any(not _values(scores) for scores in items.values()):
        raise ValueError("bootstrap needs at least one score per task")
    generator = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    resampled: dict[str, np.ndarray] = {}
    intervals = {}
    for task, scores in items.items():
        values = _values(scores)
        draws = generator.integers(0, len(values), size=(iterations, len(values)))
        if isinstance(scores, ItemScores) and not scores.is_mean:
            point = float(scores.aggregate(list(values)))
            means = np.array([scores.aggregate([values[i] for i in row]) for row in draws], dtype=float)
        else:
            array = np.asarray(values, dtype=float)
            point = float(array.mean())
            means = array[draws].mean(axis=1)
        low, high = np.quantile(means, [tail, 1 - tail])
        intervals[task] = Interval(point, float(low), float(high))
        resampled[task] = means if _higher(scores) else -means
    weight = [float((weights or {}).get(task, 1.0)) for task in items]
    stacked = np.stack([resampled[task] for task in items])
    points = [intervals[t].value if _higher(items[t]) else -intervals[t].value for t in items]
    point = combine(points, weight, aggregate)  # the fitness's own formula, on the point estimates
    overall = stacked.min(axis=0) if aggregate == "min" else np.average(stacked, axis=0, weights=weight)
    low, high = np.quantile(overall, [tail, 1 - tail])
    return HeldOutScores(intervals, Interval(float(point), float(low), float(high)))


def _values(scores: Sequence[float] | ItemScores) -> Sequence[Any]:
    return scores.values if isinstance(scores, ItemScores) else scores


def _higher(scores: Sequence[float] | ItemScores) -> bool:
    return scores.higher_is_better if isinstance(scores, ItemScores) else True
