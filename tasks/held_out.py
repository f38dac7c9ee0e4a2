"""Held-out truth: scores on prompts the search never saw, with bootstrap 95 % confidence intervals.

The winner is chosen on the search split, so its search-split score is biased upward (it is the maximum of
many noisy measurements). The report therefore scores the parents and the winner again on each task's
disjoint test split, and says how sure that number is: a percentile bootstrap over the prompts (Efron &
Tibshirani 1993), resampling each task's prompts independently; the mean over tasks is bootstrapped from
the same resamples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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
    items: dict[str, list[float]],
    *,
    seed: int,
    iterations: int = BOOTSTRAP_ITERATIONS,
    confidence: float = CONFIDENCE,
) -> HeldOutScores:
    """Each task's mean item score and the mean over tasks, each with its percentile bootstrap interval."""
    if not items or any(not scores for scores in items.values()):
        raise ValueError("bootstrap needs at least one score per task")
    generator = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    resampled_means = {}
    intervals = {}
    for task, scores in items.items():
        values = np.asarray(scores, dtype=float)
        draws = generator.integers(0, len(values), size=(iterations, len(values)))
        means = values[draws].mean(axis=1)
        resampled_means[task] = means
        low, high = np.quantile(means, [tail, 1 - tail])
        intervals[task] = Interval(float(values.mean()), float(low), float(high))
    overall = np.mean(np.stack(list(resampled_means.values())), axis=0)
    low, high = np.quantile(overall, [tail, 1 - tail])
    point = float(np.mean([interval.value for interval in intervals.values()]))
    return HeldOutScores(intervals, Interval(point, float(low), float(high)))
