"""The zoo's skills: formats compute the right answers, held-out prompts are fixed, disjoint and never
trained on, and the committed lm-eval data is exactly what the generator produces."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest

from tasks.zoo.recipe import ZooRecipe
from tasks.zoo.skills import (
    EASY_FORMATS,
    FORMATS,
    PROMPTS_PER_SPLIT,
    SKILLS,
    SPLITS,
    Example,
    held_out_examples,
    held_out_jsonl,
    held_out_jsonl_name,
    held_out_prompts,
    task_name,
    training_examples,
)

TASK_DATA_DIR = Path(__file__).resolve().parents[2] / "configs" / "lm_eval_tasks" / "data"


def _samples(format_name: str, count: int = 500) -> list[Example]:
    rng = random.Random(7)
    return [FORMATS[format_name](rng) for _ in range(count)]


def test_addition_answers_are_sums_of_two_digit_operands() -> None:
    for example in _samples("add"):
        match = re.fullmatch(r"(\d+)\+(\d+)=", example.prompt)
        assert match is not None, example
        left, right = int(match[1]), int(match[2])
        assert 10 <= left <= 99 and 10 <= right <= 99
        assert example.answer == str(left + right)


def test_small_additions_are_two_digit_sums_below_one_hundred_drawn_from_all_of_them() -> None:
    samples = _samples("add_small", 20_000)
    pairs = set()
    for example in samples:
        match = re.fullmatch(r"(\d\d)\+(\d\d)=", example.prompt)
        assert match is not None, example
        left, right = int(match[1]), int(match[2])
        assert left >= 10 and right >= 10 and left + right < 100
        assert example.answer == str(left + right)
        pairs.add((left, right))
    assert len(pairs) > 3150  # of the 3,240 pairs with a sum below 100: uniform draws cover them all


def test_the_base_never_sees_a_two_digit_addition_reaching_one_hundred() -> None:
    """What bounds the base's `add` score (40 % of the held-out sums are below 100) however well it learns."""
    stream = training_examples(ZooRecipe().base.mixture, seed=5)
    for example in itertools.islice(stream, 20_000):
        match = re.fullmatch(r"(\d\d)\+(\d\d)=", example.prompt)
        assert match is None or int(match[1]) + int(match[2]) < 100, example


def test_sort_answers_are_the_five_distinct_letters_in_order() -> None:
    for example in _samples("sort"):
        letters = example.prompt.removesuffix(">")
        assert re.fullmatch(r"[a-z]{5}>", example.prompt) and len(set(letters)) == 5
        assert example.answer == "".join(sorted(letters))


def test_reverse_answers_are_the_five_letters_backwards() -> None:
    for example in _samples("reverse"):
        letters = example.prompt.removesuffix("|")
        assert re.fullmatch(r"[a-z]{5}\|", example.prompt)
        assert example.answer == letters[::-1]


def test_easy_formats_compute_right_answers() -> None:
    for example in _samples("copy"):
        assert re.fullmatch(r"[a-z]{2,5}:", example.prompt) and example.prompt == example.answer + ":"
    for example in _samples("add_1digit"):
        assert re.fullmatch(r"\d\+\d=", example.prompt)
        assert example.answer == str(int(example.prompt[0]) + int(example.prompt[2]))
    for example in _samples("add_2plus1"):
        assert re.fullmatch(r"\d\d\+\d=", example.prompt)
        assert example.answer == str(int(example.prompt[:2]) + int(example.prompt[3]))
    for example in _samples("sort_short"):
        assert re.fullmatch(r"[a-z]{2,3}>", example.prompt)
        assert example.answer == "".join(sorted(example.prompt[:-1]))
    for example in _samples("reverse_short"):
        assert re.fullmatch(r"[a-z]{2,3}\|", example.prompt)
        assert example.answer == example.prompt[:-1][::-1]


def test_easy_formats_can_never_produce_a_skill_prompt() -> None:
    """Easy prompts differ in shape from skill prompts, so the base never sees an evaluation prompt."""
    skill_shapes = [re.compile(r"\d\d\+\d\d="), re.compile(r"[a-z]{5}>"), re.compile(r"[a-z]{5}\|")]
    for name in EASY_FORMATS:
        for example in _samples(name, 2000):
            assert not any(shape.fullmatch(example.prompt) for shape in skill_shapes), (name, example)


def test_held_out_splits_are_fixed_size_distinct_and_disjoint() -> None:
    for skill in SKILLS:
        splits = {split: [example.prompt for example in held_out_examples(skill, split)] for split in SPLITS}
        for prompts in splits.values():
            assert len(prompts) == PROMPTS_PER_SPLIT == len(set(prompts))
        assert not set(splits["search"]) & set(splits["test"])
    assert len(held_out_prompts()) == len(SKILLS) * len(SPLITS) * PROMPTS_PER_SPLIT


def test_held_out_examples_have_correct_answers() -> None:
    for skill in SKILLS:
        for split in SPLITS:
            for example in held_out_examples(skill, split):
                if skill == "add":
                    assert example.answer == str(eval(example.prompt[:-1]))  # noqa: S307 - digits and '+'
                elif skill == "sort":
                    assert example.answer == "".join(sorted(example.prompt[:-1]))
                else:
                    assert example.answer == example.prompt[:-1][::-1]


def test_training_stream_rejects_held_out_addition_prompts() -> None:
    """Only 8,100 addition prompts exist and 400 are held out (~5%): a non-rejecting sampler would emit
    hundreds of them in 20,000 draws; the real one emits none, and still covers the rest of the space."""
    held_out = held_out_prompts()
    drawn = [example.prompt for example in itertools.islice(training_examples({"add": 1.0}, seed=3), 20_000)]
    assert not held_out.intersection(drawn)
    unique = set(drawn)
    assert len(unique) > 7_000
    assert len(unique) <= 8_100 - 2 * PROMPTS_PER_SPLIT


@pytest.mark.parametrize("mixture_name", ["base", *SKILLS])
def test_training_batches_of_every_recipe_mixture_exclude_held_out_prompts(mixture_name: str) -> None:
    recipe = ZooRecipe()
    stage = recipe.base if mixture_name == "base" else recipe.expert_stage(mixture_name)
    drawn = itertools.islice(training_examples(stage.mixture, seed=11), recipe.batch_size * 300)
    assert not held_out_prompts().intersection(example.prompt for example in drawn)


def test_training_stream_is_seeded() -> None:
    mixture = ZooRecipe().base.mixture
    first = list(itertools.islice(training_examples(mixture, seed=5), 200))
    again = list(itertools.islice(training_examples(mixture, seed=5), 200))
    other = list(itertools.islice(training_examples(mixture, seed=6), 200))
    assert first == again
    assert first != other


def test_training_stream_follows_the_mixture() -> None:
    drawn = list(itertools.islice(training_examples({"sort": 3.0, "copy": 1.0}, seed=0), 4000))
    sorts = sum(example.prompt.endswith(">") for example in drawn)
    copies = sum(example.prompt.endswith(":") for example in drawn)
    assert sorts + copies == 4000
    assert 0.72 < sorts / 4000 < 0.78


def test_training_stream_rejects_unknown_or_empty_mixtures() -> None:
    with pytest.raises(ValueError, match="unknown formats"):
        next(training_examples({"multiply": 1.0}, seed=0))
    with pytest.raises(ValueError, match="positive weight"):
        next(training_examples({"add": 0.0}, seed=0))


def test_task_names() -> None:
    assert [task_name(skill, "search") for skill in SKILLS] == ["evomerge_add", "evomerge_sort", "evomerge_reverse"]
    assert task_name("sort", "test") == "evomerge_sort_test"
    with pytest.raises(ValueError):
        task_name("multiply", "search")
    with pytest.raises(ValueError):
        task_name("add", "train")


@pytest.mark.parametrize(("skill", "split"), list(itertools.product(SKILLS, SPLITS)))
def test_committed_task_data_regenerates_identically(skill: str, split: str) -> None:
    committed = (TASK_DATA_DIR / held_out_jsonl_name(skill, split)).read_text(encoding="utf-8")
    assert committed == held_out_jsonl(skill, split)
    records = [json.loads(line) for line in committed.splitlines()]
    assert records[0] == {
        "prompt": held_out_examples(skill, split)[0].prompt,
        "answer": held_out_examples(skill, split)[0].answer,
    }
