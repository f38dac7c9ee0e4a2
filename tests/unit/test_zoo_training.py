"""Training pieces that decide what the zoo learns: label masking and packing, the learning-rate schedule,
per-model seeds and the recipe's mixtures."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from tasks.zoo.recipe import DEFAULT_BASE_MIXTURE, ZooRecipe
from tasks.zoo.skills import EASY_FORMATS, Example, training_examples
from tasks.zoo.tokenizer import build_tokenizer
from tasks.zoo.training import IGNORE_INDEX, job_seed, learning_rate_factor, pack_examples


def test_packing_labels_only_answers_and_eos_and_restarts_positions_per_example() -> None:
    tokenizer = build_tokenizer()
    batch = pack_examples([Example("ab|", "ba"), Example("23+58=", "81")], tokenizer, row_tokens=32)
    longest = tokenizer("23+58=81")["input_ids"] + [tokenizer.eos_token_id]
    shorter = tokenizer("ab|ba")["input_ids"] + [tokenizer.eos_token_id]
    # Longest first, both in one row of 17 tokens: no padding.
    assert batch.input_ids.tolist() == [longest + shorter]
    assert batch.labels.tolist() == [[IGNORE_INDEX] * 7 + longest[7:] + [IGNORE_INDEX] * 4 + shorter[4:]]
    assert batch.position_ids.tolist() == [list(range(10)) + list(range(7))]
    assert batch.input_ids.dtype == batch.labels.dtype == torch.long


def test_packing_fills_rows_first_fit_and_pads_the_rest_as_a_segment_of_its_own() -> None:
    tokenizer = build_tokenizer()
    examples = [Example("abcde|", "edcba")] * 3 + [Example("3+5=", "8")] * 2  # 13 and 7 tokens
    batch = pack_examples(examples, tokenizer, row_tokens=27)
    # Longest first, each into the first row with room: row one takes two long examples (26 tokens), row two
    # the third and both short ones (27). Row one's last token is padding, whose position restarts, so it
    # is a segment of its own that no example attends to.
    assert batch.input_ids.shape == (2, 27)
    assert batch.position_ids.tolist() == [[*range(13), *range(13), 0], [*range(13), *range(7), *range(7)]]
    assert batch.input_ids[0, 26].item() == tokenizer.pad_token_id
    assert batch.labels[0, 26].item() == IGNORE_INDEX
    labelled = int((batch.labels != IGNORE_INDEX).sum())
    assert labelled == 3 * len("edcba<") + 2 * len("8<")  # every answer and its <eos>, once
    with pytest.raises(ValueError, match="does not fit"):
        pack_examples(examples, tokenizer, row_tokens=12)


def test_a_packed_batch_computes_the_loss_and_gradients_of_the_padded_batch() -> None:
    """Packing is an exact rewrite: each example attends only to itself (positions restart), so the loss
    and every gradient equal those of one padded row per example, up to float rounding."""
    from transformers import LlamaForCausalLM

    from tasks.zoo.architecture import zoo_model_config

    tokenizer = build_tokenizer()
    examples = list(itertools.islice(training_examples(ZooRecipe().base.mixture, seed=7), 24))
    torch.manual_seed(0)
    model = LlamaForCausalLM(zoo_model_config())

    def loss_and_grads(**batch: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}

    packed = pack_examples(examples, tokenizer, row_tokens=40)
    assert packed.input_ids.shape[0] < len(examples)
    packed_loss, packed_grads = loss_and_grads(
        input_ids=packed.input_ids, position_ids=packed.position_ids, labels=packed.labels
    )
    padded_loss, padded_grads = loss_and_grads(**_padded(examples, tokenizer))
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)


def _padded(examples: list[Example], tokenizer: PreTrainedTokenizerFast) -> dict[str, torch.Tensor]:
    """One right-padded row per example with an attention mask: the reference packing must match."""
    rows = []
    for example in examples:
        prompt = tokenizer(example.prompt)["input_ids"]
        answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    return {
        "input_ids": torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
        "labels": torch.tensor([labels + [IGNORE_INDEX] * (width - len(labels)) for _, labels in rows]),
    }


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
    assert mixture["add_small"] == pytest.approx(replay * DEFAULT_BASE_MIXTURE["add_small"] / base_total)
    assert "add" not in mixture  # the full addition skill is the add expert's alone
    for name in EASY_FORMATS:
        assert mixture[name] == pytest.approx(replay * DEFAULT_BASE_MIXTURE[name] / base_total)
    assert recipe.expert_stage("sort").steps == recipe.expert_steps
    with pytest.raises(ValueError):
        recipe.expert_stage("multiply")


def test_an_expert_may_train_for_its_own_number_of_steps() -> None:
    recipe = ZooRecipe(expert_steps=200, expert_steps_by_skill={"add": 500})
    assert [recipe.expert_stage(skill).steps for skill in ("add", "sort", "reverse")] == [500, 200, 200]
    assert {skill: ZooRecipe().expert_stage(skill).steps for skill in ("add", "sort")} == {"add": 600, "sort": 300}
    assert recipe.shortened(base_steps=10, expert_steps=5).expert_stage("add").steps == 5
    with pytest.raises(ValueError, match=r"unknown skills \['multiply'\]"):
        ZooRecipe(expert_steps_by_skill={"multiply": 10})


def test_shortened_recipe_changes_only_step_counts() -> None:
    recipe = ZooRecipe()
    short = recipe.shortened(base_steps=20, expert_steps=10)
    assert (short.base.steps, short.expert_steps) == (20, 10)
    assert short.base.mixture == recipe.base.mixture
    restored = {"base": recipe.base, "expert_steps": recipe.expert_steps, "expert_steps_by_skill": {"add": 600}}
    assert short.model_copy(update=restored) == recipe


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
