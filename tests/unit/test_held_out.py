"""The bootstrap intervals of held-out scores: centred on the mean, as wide as the binomial error says."""

from __future__ import annotations

import math

import pytest

from tasks.held_out import bootstrap_scores


def test_interval_brackets_the_mean_and_matches_the_binomial_width() -> None:
    items = {"add": [1.0] * 140 + [0.0] * 60, "sort": [1.0] * 190 + [0.0] * 10}
    scores = bootstrap_scores(items, seed=0)
    assert scores.tasks["add"].value == pytest.approx(0.7)
    assert scores.tasks["sort"].value == pytest.approx(0.95)
    assert scores.mean.value == pytest.approx(0.825)
    for task, p in (("add", 0.7), ("sort", 0.95)):
        interval = scores.tasks[task]
        assert interval.low < interval.value < interval.high
        half_width = 1.96 * math.sqrt(p * (1 - p) / 200)  # normal approximation of the same interval
        assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.15)
    # the mean of two independent tasks is tighter than either task alone
    assert scores.mean.high - scores.mean.low < scores.tasks["add"].high - scores.tasks["add"].low


def test_same_seed_same_interval_and_perfect_scores_have_no_width() -> None:
    items = {"t": [1.0, 0.0, 1.0, 1.0, 0.0] * 20}
    assert bootstrap_scores(items, seed=4) == bootstrap_scores(items, seed=4)
    perfect = bootstrap_scores({"t": [1.0] * 50}, seed=0)
    assert (perfect.tasks["t"].low, perfect.tasks["t"].high) == (1.0, 1.0)


def test_empty_task_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one score per task"):
        bootstrap_scores({"t": []}, seed=0)


def test_a_perplexity_is_bootstrapped_through_its_own_aggregation_and_counts_negated() -> None:
    """lm-eval aggregates word perplexity over pooled (log-likelihood, words) pairs, not as a mean; the
    interval resamples the pairs, and a lower-is-better task enters the overall score negated."""
    from lm_eval.api.metrics import mean, weighted_perplexity

    from tasks.evaluate import ItemScores

    pairs = [(-2.0, 1), (-4.0, 2), (-1.0, 1), (-3.0, 1)] * 10
    perplexity = ItemScores(pairs, weighted_perplexity, higher_is_better=False)
    accuracy = ItemScores([1.0, 0.0, 1.0, 1.0] * 10, mean, higher_is_better=True)
    scores = bootstrap_scores({"ppl": perplexity, "acc": accuracy}, seed=0, weights={"ppl": 0.1, "acc": 1.0})
    expected_ppl = math.exp(10 / 5)  # exp(-sum(ll) / sum(words)) over one block of four pairs
    assert scores.tasks["ppl"].value == pytest.approx(expected_ppl)
    assert scores.tasks["ppl"].low < expected_ppl < scores.tasks["ppl"].high
    assert scores.mean.value == pytest.approx((0.75 * 1.0 - expected_ppl * 0.1) / 1.1)
    weakest = bootstrap_scores({"ppl": perplexity, "acc": accuracy}, seed=0, aggregate="min")
    assert weakest.mean.value == pytest.approx(-expected_ppl)
