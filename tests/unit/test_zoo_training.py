"""Training pieces that decide what the zoo learns: label masking, the learning-rate schedule, per-model
seeds and the recipe's mixtures."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.zoo.recipe import DEFAULT_BASE_MIXTURE, ZooRecipe
from tasks.zoo.skills import EASY_FORMATS, Example
from tasks.zoo.tokenizer import build_tokenizer
from tasks.zoo.training import IGNORE_INDEX, encode_examples, job_seed, learning_rate_factor


def test_encoding_puts_labels_only_on_answer_and_eos() -> None:
    tokenizer = build_tokenizer()
    input_ids, attention_mask, labels = encode_examples([Example("23+58=", "81"), Example("ab|", "ba")], tokenizer)
    first = tokenizer("23+58=81")["input_ids"] + [tokenizer.eos_token_id]
    assert input_ids[0].tolist() == first
    assert labels[0].tolist() == [IGNORE_INDEX] * 7 + first[7:]
    assert attention_mask[0].tolist() == [1] * 10
    second = tokenizer("ab|ba")["input_ids"] + [tokenizer.eos_token_id]
    padding = 10 - len(second)
    assert input_ids[1].tolist() == second + [tokenizer.pad_token_id] * padding
    assert labels[1].tolist() == [IGNORE_INDEX] * 4 + second[4:] + [IGNORE_INDEX] * padding
    assert attention_mask[1].tolist() == [1] * len(second) + [0] * padding
    assert input_ids.dtype == labels.dtype == torch.long


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_zero() -> None:
    total, warmup = 100, 0.1
    assert learning_rate_factor(0, total, warmup) == pytest.approx(0.1)
    assert learning_rate_factor(9, total, warmup) == pytest.approx(1.0)
    assert learning_rate_factor(10, total, warmup) == pytest.approx(1.0)
    halfway = 10 + 45
    assert learning_rate_factor(halfway, total, warmup) == pytest.approx(0.5)
    assert learning_rate_factor(40, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 90)))
    assert learning_rate_factor(100, total, warmup) == pytest.approx(0.0)


def test_job_seeds_depend_on_zoo_seed_and_model_name_only() -> None:
    assert job_seed(0, "add") == job_seed(0, "add")
    assert len({job_seed(0, name) for name in ("base", "add", "sort", "reverse")}) == 4
    assert job_seed(0, "add") != job_seed(1, "add")
    # Pinned: changing the derivation silently changes every zoo weight file.
    assert (job_seed(0, "base"), job_seed(0, "add")) == (3265993768, 2171862951)


def test_expert_mixture_is_own_skill_plus_replay_of_the_base_mixture() -> None:
    recipe = ZooRecipe()
    mixture = recipe.expert_stage("sort").mixture
    base_total = sum(DEFAULT_BASE_MIXTURE.values())
    assert sum(mixture.values()) == pytest.approx(1.0)
    replay = recipe.expert_replay
    assert mixture["sort"] == pytest.approx(1 - replay + replay * DEFAULT_BASE_MIXTURE["sort"] / base_total)
    assert mixture["add"] == pytest.approx(replay * DEFAULT_BASE_MIXTURE["add"] / base_total)
    for name in EASY_FORMATS:
        assert mixture[name] == pytest.approx(replay * DEFAULT_BASE_MIXTURE[name] / base_total)
    assert recipe.expert_stage("sort").steps == recipe.expert_steps
    with pytest.raises(ValueError):
        recipe.expert_stage("multiply")


def test_shortened_recipe_changes_only_step_counts() -> None:
    recipe = ZooRecipe()
    short = recipe.shortened(base_steps=20, expert_steps=10)
    assert (short.base.steps, short.expert_steps) == (20, 10)
    assert short.base.mixture == recipe.base.mixture
    assert short.model_copy(update={"base": recipe.base, "expert_steps": recipe.expert_steps}) == recipe


def test_expert_replay_mixture_replaces_the_base_mixture_in_replay() -> None:
    replayed = {"copy": 3.0, "add": 1.0}
    recipe = ZooRecipe(expert_replay=0.4, expert_replay_mixture=replayed)
    mixture = recipe.expert_stage("sort").mixture
    assert mixture == pytest.approx({"sort": 0.6, "copy": 0.3, "add": 0.1})
    # None (the default) replays the base mixture: the same stage as naming that mixture explicitly.
    base = ZooRecipe().base.mixture
    assert ZooRecipe(expert_replay_mixture=dict(base)).expert_stage("add") == ZooRecipe().expert_stage("add")


@pytest.mark.parametrize("mixture", [{"ad": 1.0}, {}, {"add": -1.0, "copy": 2.0}, {"add": 0.0}])
def test_expert_replay_mixture_refuses_unknown_formats_and_bad_weights(mixture: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expert_replay_mixture"):
        ZooRecipe(expert_replay_mixture=mixture)


def test_base_mixture_is_checked_when_the_recipe_is_made() -> None:
    """Not first inside a training worker, minutes into a build: the same check as the replay mixture."""
    with pytest.raises(ValueError, match=r"base\.mixture[\s\S]*unknown formats in mixture: \['multiply'\]"):
        ZooRecipe(base={"steps": 10, "learning_rate": 1e-3, "mixture": {"multiply": 1.0}})
