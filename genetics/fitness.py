"""From a scored candidate to what the algorithms rank it by, and from candidates to the winner.

A failed candidate has no fitness: the algorithms rank it below every feasible one by its infinite
violation, and NSGA-II sees zeros as its objectives. A candidate that breaks the forgetting guard is
infeasible by how far it fell, unless the guard is an objective of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from genetics.candidate import Candidate
from tasks.select import FitnessPolicy, GuardPolicy


@dataclass
class Judge:
    policy: FitnessPolicy
    guard: GuardPolicy | None = None
    guard_is_objective: bool = False
    guard_reference: float | None = None
    """The reference model's guard score, known once the parents are scored."""

    @property
    def objective_count(self) -> int:
        return len(self.policy.objectives) + (1 if self.guard_is_objective else 0)

    def judge(self, candidate: Candidate) -> None:
        """Fitness, objectives and feasibility of a candidate whose outcome is recorded; raises when its
        scores lack a metric the policy needs."""
        if candidate.status != "ok":
            candidate.fitness, candidate.retention = None, None
            candidate.objectives = (0.0,) * self.objective_count
            candidate.feasible, candidate.violation = False, float("inf")
            return
        candidate.fitness = self.policy.fitness(candidate.scores)
        candidate.retention, candidate.violation = None, 0.0
        if self.guard is not None and self.guard_reference is not None:
            candidate.retention = self.guard.score(self.guard.raw(candidate.scores)) - self.guard_reference
            if not self.guard_is_objective:
                candidate.violation = self.guard.violation(candidate.retention)
        candidate.feasible = candidate.violation == 0.0
        values = self.policy.oriented(candidate.scores)
        candidate.objectives = (*values, candidate.retention or 0.0) if self.guard_is_objective else values


def best_candidate(candidates: Iterable[Candidate]) -> Candidate | None:
    """Highest fitness among the candidates that finished and kept the guard; ties go to the earliest."""
    finished = [c for c in candidates if c.status == "ok" and c.fitness is not None and c.feasible]
    if not finished:
        return None
    return max(enumerate(finished), key=lambda pair: (pair[1].fitness, -pair[0]))[1]


def leaders(candidates: Iterable[Candidate], count: int) -> list[Candidate]:
    """The best finished candidates, best first (earliest first among equals); with a guard, the feasible
    ones first, as the search ranks them."""
    finished = [c for c in candidates if c.status == "ok" and c.fitness is not None]
    return sorted(finished, key=lambda c: (c.feasible, c.fitness or 0.0), reverse=True)[:count]
