"""Fitness from tasks with their own metric, weight and direction; the forgetting guard's arithmetic; the
winner is never a candidate that broke the guard."""

from __future__ import annotations

import math

import pytest

from genetics.candidate import Candidate
from genetics.fitness import best_candidate
from tasks.errors import EvaluationError
from tasks.merge.recipe import parse_recipe
from tasks.select import FitnessPolicy, GuardPolicy, Objective, fitness_of

SCORES = {
    "add": {"exact_match": 0.8},
    "choice": {"acc": 0.6, "acc_norm": 0.7},
    "logprob": {"perplexity": 2.0, "acc": 0.9},
}


def test_weighted_mean_of_values_oriented_so_that_higher_is_better() -> None:
    policy = FitnessPolicy(
        (
            Objective("add", "exact_match", 2.0),
            Objective("choice", "acc_norm", 1.0),
            Objective("logprob", "perplexity", 0.5, higher_is_better=False),
        )
    )
    assert policy.raw(SCORES) == {"add": 0.8, "choice": 0.7, "logprob": 2.0}
    assert policy.oriented(SCORES) == (0.8, 0.7, -2.0)
    assert policy.fitness(SCORES) == pytest.approx((2 * 0.8 + 0.7 - 0.5 * 2.0) / 3.5)
    assert policy.label() == "fitness"
    weakest = FitnessPolicy(policy.objectives, "min")
    assert weakest.fitness(SCORES) == -2.0 and weakest.label() == "min"
    plain = FitnessPolicy((Objective("add", "exact_match"), Objective("choice", "acc")))
    assert plain.label() == "mean" and plain.fitness(SCORES) == pytest.approx(0.7)


def test_a_metric_the_task_did_not_report_is_an_error_not_a_zero() -> None:
    with pytest.raises(EvaluationError, match=r"task choice reported no 'exact_match' \(it has: acc, acc_norm\)"):
        FitnessPolicy((Objective("choice", "exact_match"),)).fitness(SCORES)
    assert fitness_of({"a": {"m": 0.5}, "b": {"m": 1.0}}, "m", "mean") == 0.75


def test_guard_retention_reference_and_violation() -> None:
    guard = GuardPolicy((Objective("copy", "exact_match"), Objective("ppl", "bits_per_byte", 1.0, False)), 0.02, "base")
    parents = {
        "base": {"copy": 0.70, "ppl": 2.0},
        "add": {"copy": 0.80, "ppl": 2.5},
        "sort": {"copy": 0.60, "ppl": 1.0},
    }
    assert guard.score(parents["base"]) == pytest.approx((0.70 - 2.0) / 2)
    assert guard.reference_model(parents, "base") == "base"
    assert GuardPolicy(guard.objectives, 0.02, "best_parent").reference_model(parents, "base") == "sort"
    assert GuardPolicy(guard.objectives, 0.02, "add").reference_model(parents, "base") == "add"
    assert guard.violation(-0.02) == 0.0  # a drop of exactly max_drop keeps the guard
    assert guard.violation(-0.05) == pytest.approx(0.03)
    assert guard.violation(0.1) == 0.0
    with pytest.raises(EvaluationError, match="needs a recipe with a base_model"):
        guard.reference_model(parents, None)


def _record(candidate_id: str, fitness: float, feasible: bool = True, status: str = "ok") -> Candidate:
    recipe = parse_recipe({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0}}]}, "t")
    return Candidate(
        [],
        candidate_id,
        key=candidate_id,
        recipe=recipe,
        status=status,
        fitness=fitness,
        feasible=feasible,  # type: ignore[arg-type]
    )


def test_the_winner_kept_the_guard() -> None:
    records = [
        _record("a", 0.9, feasible=False),
        _record("b", 0.7),
        _record("c", 0.7),
        _record("d", math.inf, status="failed"),
    ]
    best = best_candidate(records)
    assert best is not None and best.candidate_id == "b"  # the fitter one broke the guard; ties go to the earliest
    assert best_candidate([_record("a", 0.9, feasible=False)]) is None
