"""Deb's constraint rule in every algorithm: a feasible candidate outranks an infeasible one whatever their
fitness, infeasible ones rank by violation, a failed one ranks last."""

from __future__ import annotations

import math

from genetics.candidate import Candidate
from genetics.individual import keep_best
from genetics.nsga2 import _ranked


def test_rank_puts_feasible_first_then_smaller_violation() -> None:
    feasible = Candidate([0.1], "a", fitness=0.2)
    slightly = Candidate([0.2], "b", fitness=0.9, feasible=False, violation=0.01)
    badly = Candidate([0.3], "c", fitness=0.95, feasible=False, violation=0.3)
    failed = Candidate([0.4], "d", fitness=0.0, feasible=False, violation=math.inf)
    negative = Candidate([0.5], "e", fitness=-3.0)  # a lower-is-better fitness: still feasible
    ranked = keep_best([failed, badly, slightly, feasible, negative], 5)
    assert [ind.candidate_id for ind in ranked] == ["a", "e", "b", "c", "d"]
    assert feasible.copy().rank() == feasible.rank() and slightly.copy().violation == 0.01


def test_nsga2_domination_is_constrained() -> None:
    feasible = Candidate([0.1], "a", objectives=(0.1, 0.1))
    infeasible = Candidate([0.2], "b", objectives=(0.9, 0.9), feasible=False, violation=0.2)
    worse = Candidate([0.3], "c", objectives=(0.9, 0.9), feasible=False, violation=0.5)
    a, b, c = _ranked([feasible, infeasible, worse])
    assert a.fitness.dominates(b.fitness) and not b.fitness.dominates(a.fitness)
    assert b.fitness.dominates(c.fitness) and not c.fitness.dominates(b.fitness)
    x, y = _ranked([Candidate([0.0], "x", objectives=(0.5, 0.2)), Candidate([1.0], "y", objectives=(0.2, 0.5))])
    assert not x.fitness.dominates(y.fitness) and not y.fitness.dominates(x.fitness)  # plain Pareto otherwise
