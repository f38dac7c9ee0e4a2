"""The Evaluator on real zoo models and real lm-eval tasks: the numbers match the zoo's manifest, and a
reused task dict and model wrapper leak nothing from one evaluation into the next."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tasks.errors import EvaluationError
from tasks.evaluate import EvaluationConfig, Evaluator, evaluate_model_dir
from tasks.zoo import SKILLS, ZooManifest, read_manifest
from tasks.zoo.skills import held_out_examples

pytestmark = pytest.mark.integration

SEARCH_TASKS = ("evomerge_add", "evomerge_sort")


@pytest.fixture(scope="module")
def manifest(zoo_dir: Path) -> ZooManifest:
    loaded = read_manifest(zoo_dir)
    assert loaded is not None
    return loaded


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(EvaluationConfig(tasks=SEARCH_TASKS))


def _load(zoo_dir: Path, name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return AutoModelForCausalLM.from_pretrained(zoo_dir / name), AutoTokenizer.from_pretrained(zoo_dir / name)


def _expected(manifest: ZooManifest, name: str) -> dict[str, dict[str, float]]:
    accuracy = manifest.models[name].accuracy
    return {f"evomerge_{skill}": {"exact_match": accuracy[skill]} for skill in ("add", "sort")}


def test_expert_scores_equal_the_manifest_and_pass_the_bar(
    evaluator: Evaluator, zoo_dir: Path, manifest: ZooManifest
) -> None:
    scores = evaluator.evaluate(*_load(zoo_dir, "add"))
    assert scores == _expected(manifest, "add")
    assert scores["evomerge_add"]["exact_match"] >= 0.8
    assert all(type(value) is float for metrics in scores.values() for value in metrics.values())


def test_evaluations_a_b_a_give_a_again(evaluator: Evaluator, zoo_dir: Path, manifest: ZooManifest) -> None:
    model_a, tokenizer_a = _load(zoo_dir, "add")
    model_b, tokenizer_b = _load(zoo_dir, "sort")
    first = evaluator.evaluate(model_a, tokenizer_a)
    second = evaluator.evaluate(model_b, tokenizer_b)
    third = evaluator.evaluate(model_a, tokenizer_a)
    assert first == third == _expected(manifest, "add")
    assert second == _expected(manifest, "sort")
    assert first != second


def test_weights_overwritten_in_place_are_seen(evaluator: Evaluator, zoo_dir: Path, manifest: ZooManifest) -> None:
    """The search merges into one model object; the cached wrapper must score the new weights."""
    model, tokenizer = _load(zoo_dir, "base")
    assert evaluator.evaluate(model, tokenizer) == _expected(manifest, "base")
    sort_model, _ = _load(zoo_dir, "sort")
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            tensor.copy_(sort_model.state_dict()[name])
    assert evaluator.evaluate(model, tokenizer) == _expected(manifest, "sort")


def test_limit_scores_the_first_prompts_as_plain_greedy_decoding_does(zoo_dir: Path) -> None:
    model, tokenizer = _load(zoo_dir, "base")
    examples = held_out_examples("sort", "search")[:20]
    inputs = tokenizer([example.prompt for example in examples], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answers = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    correct = sum(answer == example.answer for answer, example in zip(answers, examples, strict=True))
    assert 0 < correct < 20
    scores = Evaluator(EvaluationConfig(tasks=("evomerge_sort",), limit=20)).evaluate(model, tokenizer)
    assert scores == {"evomerge_sort": {"exact_match": correct / 20}}


def test_tag_expands_to_the_three_search_tasks_and_test_split_matches_manifest(
    zoo_dir: Path, manifest: ZooManifest
) -> None:
    skills = Evaluator(EvaluationConfig(tasks=("evomerge_skills",)))
    assert sorted(skills.task_names) == sorted(f"evomerge_{skill}" for skill in SKILLS)
    test_split = Evaluator(EvaluationConfig(tasks=("evomerge_reverse_test",)))
    model, tokenizer = _load(zoo_dir, "reverse")
    assert skills.evaluate(model, tokenizer) == {
        f"evomerge_{skill}": {"exact_match": manifest.models["reverse"].accuracy[skill]} for skill in SKILLS
    }
    assert test_split.evaluate(model, tokenizer) == {
        "evomerge_reverse_test": {"exact_match": manifest.models["reverse"].test_accuracy["reverse"]}
    }


def test_evaluate_model_dir_loads_from_disk(zoo_dir: Path, manifest: ZooManifest) -> None:
    scores = evaluate_model_dir(zoo_dir / "sort", EvaluationConfig(tasks=SEARCH_TASKS))
    assert scores == _expected(manifest, "sort")


def test_errors_are_evaluation_errors(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown lm-eval tasks"):
        Evaluator(EvaluationConfig(tasks=("evomerge_multiply",)))
    with pytest.raises(EvaluationError, match="not found"):
        Evaluator(EvaluationConfig(tasks=("evomerge_add",), include_path=tmp_path / "missing"))
    with pytest.raises(EvaluationError, match="not a model directory"):
        evaluate_model_dir(tmp_path, EvaluationConfig(tasks=SEARCH_TASKS))


def test_memoized_requests_and_tokens_give_what_plain_lm_eval_gives(
    evaluator: Evaluator, zoo_dir: Path, manifest: ZooManifest
) -> None:
    """The Evaluator builds each task's requests, tokenizes each prompt, decodes each answer and serialises
    each task config once (tasks/lm_eval_reuse.py); after the model's weights change in place, its
    per-prompt answers and results, and the configs it reports, must equal those of lm-eval run plainly
    (fresh tasks, a plain HFLM) on the same weights."""
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager, get_task_dict

    model, tokenizer = _load(zoo_dir, "add")
    evaluator.item_scores(model, tokenizer, "exact_match")  # requests and tokens memoized on the add weights
    model.load_state_dict(_load(zoo_dir, "sort")[0].state_dict())
    ours = {task: items.values for task, items in evaluator.item_scores(model, tokenizer, "exact_match").items()}
    ours_output = evaluator._run(model, tokenizer, log_samples=True)

    manager = TaskManager(include_path=str(evaluator.config.include_path), include_defaults=False)
    plain = evaluate(
        lm=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=evaluator.config.batch_size),
        task_dict=get_task_dict(list(SEARCH_TASKS), manager),
        bootstrap_iters=0,
        log_samples=True,
    )
    assert plain is not None
    assert ours_output["configs"] == plain["configs"]
    for task in SEARCH_TASKS:
        samples = sorted(plain["samples"][task], key=lambda sample: sample["doc_id"])
        assert ours[task] == [float(sample["exact_match"]) for sample in samples]
        our_samples = sorted(ours_output["samples"][task], key=lambda sample: sample["doc_id"])
        assert [s["filtered_resps"] for s in our_samples] == [s["filtered_resps"] for s in samples]
        assert len({tuple(s["filtered_resps"]) for s in samples}) > 10  # answers that differ were compared
    skill_accuracy = manifest.models["sort"].accuracy
    assert sum(ours["evomerge_sort"]) / len(ours["evomerge_sort"]) == skill_accuracy["sort"]
    assert sum(ours["evomerge_add"]) / len(ours["evomerge_add"]) == skill_accuracy["add"]


def test_memoized_task_config_follows_set_config() -> None:
    """A task's serialised config is memoized for the results, but a config changed with `set_config`
    (lm-eval's own way, e.g. for few-shot overrides) is what the next results report."""
    evaluator = Evaluator(EvaluationConfig(tasks=("evomerge_add",)))
    (task,) = evaluator._task_dict.values()
    first = task.dump_config()
    first["description"] = "changed by the caller"  # a caller's copy: the memo must not see it
    assert task.dump_config()["description"] != "changed by the caller"
    task.set_config("description", "Answer the sum.")
    assert task.dump_config()["description"] == "Answer the sum."
