"""From metrics to one fitness number.

Every task contributes its value oriented so that higher is better (a metric lm-eval marks lower-is-better,
perplexity or bits per byte, counts negated), weighted as the config says; fitness is their weighted mean
or their minimum. Reports show the raw values beside their direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tasks.errors import EvaluationError

Scores = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Objective:
    """One task's part of the fitness: which metric, how much it weighs, which way is better."""

    task: str
    metric: str
    weight: float = 1.0
    higher_is_better: bool = True

    def value(self, scores: Scores) -> float:
        """The raw value, as lm-eval reported it; a task that did not report the metric is an error."""
        metrics = scores.get(self.task)
        if metrics is None:
            raise EvaluationError(f"no scores for task {self.task}")
        if self.metric not in metrics:
            raise EvaluationError(
                f"task {self.task} reported no {self.metric!r} (it has: {', '.join(sorted(metrics))})"
            )
        return float(metrics[self.metric])

    def oriented(self, scores: Scores) -> float:
        return self.orient(self.value(scores))

    def orient(self, value: float) -> float:
        return value if self.higher_is_better else -value

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "weight": self.weight,
            "higher_is_better": self.higher_is_better,
        }


def combine(values: Sequence[float], weights: Sequence[float], aggregate: Literal["mean", "min"]) -> float:
    """Weighted mean, or the minimum (weights then play no part), of oriented values."""
    if not values:
        raise EvaluationError("no task scores to compute a fitness from")
    if aggregate == "min":
        return min(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


@dataclass(frozen=True)
class FitnessPolicy:
    objectives: tuple[Objective, ...]
    aggregate: Literal["mean", "min"] = "mean"

    @property
    def tasks(self) -> list[str]:
        return [objective.task for objective in self.objectives]

    def raw(self, scores: Scores) -> dict[str, float]:
        return {objective.task: objective.value(scores) for objective in self.objectives}

    def oriented(self, scores: Scores) -> tuple[float, ...]:
        return tuple(objective.oriented(scores) for objective in self.objectives)

    def fitness(self, scores: Scores) -> float:
        return combine(self.oriented(scores), [o.weight for o in self.objectives], self.aggregate)

    def label(self) -> str:
        """What the fitness column is called: `mean` when every task counts the same and higher is better."""
        if self.aggregate == "min":
            return "min"
        plain = len({o.weight for o in self.objectives}) == 1 and all(o.higher_is_better for o in self.objectives)
        return "mean" if plain else "fitness"


def task_scores(scores: Scores, metric: str, order: Sequence[str] = ()) -> dict[str, float]:
    """`{task: value of metric}` with the tasks in `order` first (as the user listed them), the rest sorted;
    a task that did not report the metric is an error, not a zero."""
    ranked = [t for t in order if t in scores] + sorted(t for t in scores if t not in order)
    return {task: Objective(task, metric).value(scores) for task in ranked}


def fitness_of(scores: Scores, metric: str, aggregate: Literal["mean", "min"]) -> float:
    """Fitness over every task in `scores`, one metric, all weighted alike and higher-is-better."""
    return FitnessPolicy(tuple(Objective(task, metric) for task in scores), aggregate).fitness(scores)


@dataclass(frozen=True)
class GuardPolicy:
    """The forgetting guard: a candidate's guard score (weighted mean of its guard tasks' oriented values)
    may fall at most `max_drop` below the reference model's."""

    objectives: tuple[Objective, ...]
    max_drop: float
    reference: str
    """`base`, a parent's name, or `best_parent`."""

    def score(self, values: Mapping[str, float]) -> float:
        """From raw values by task (a record's scores flattened by `raw`, or a parent's stored values)."""
        oriented = [o.orient(values[o.task]) for o in self.objectives]
        return combine(oriented, [o.weight for o in self.objectives], "mean")

    def raw(self, scores: Scores) -> dict[str, float]:
        return {objective.task: objective.value(scores) for objective in self.objectives}

    def reference_model(self, parents: Mapping[str, Mapping[str, float]], base_model: str | None) -> str:
        if self.reference == "best_parent":
            return max(parents, key=lambda name: self.score(parents[name]))
        if self.reference == "base":
            if base_model is None:
                raise EvaluationError("guard: reference 'base' needs a recipe with a base_model")
            return base_model
        return self.reference

    def violation(self, retention: float) -> float:
        """How far below the allowed drop a retention is (0 when the candidate keeps the guard)."""
        shortfall = -self.max_drop - retention
        return shortfall if shortfall > 1e-9 else 0.0  # a drop of exactly max_drop keeps the guard
