"""Merging ahead (tasks/merge_ahead.py): a worker process writes the next candidate into the workbench's
spare model, in shared memory, while the live model is scored. What it writes must be, bit for bit, what
the search process would have merged itself; it must never touch the live model; and a merge that fails
in the worker, or a worker that dies, must leave the search merging correctly in-process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from tasks.errors import EvomergeError
from tasks.merge.engine import tensors_sha256
from tasks.merge.recipe import Recipe
from tasks.workbench import Workbench

pytestmark = pytest.mark.integration


def _recipe(weight_a: float, weight_b: float, model_b: str = "b") -> Recipe:
    return Recipe.model_validate(
        {
            "merge_method": "task_arithmetic",
            "base_model": "base",
            "models": [
                {"model": "a", "parameters": {"weight": [weight_a, 1.0]}},
                {"model": model_b, "parameters": {"weight": weight_b}},
            ],
        }
    )


def _live_sha256(workbench: Workbench) -> str:
    return tensors_sha256(workbench.model.state_dict().items())


@pytest.fixture()
def pair(zoo_dir: Path) -> Iterator[tuple[Workbench, Workbench]]:
    """A workbench that merges ahead, and one that merges everything in-process, on the zoo's parents."""
    parents = {"base": zoo_dir / "base", "a": zoo_dir / "add", "b": zoo_dir / "sort"}
    ahead = Workbench(parents, reference="base")
    assert ahead.start_merging_ahead(wait=60)
    plain = Workbench(parents, reference="base")
    yield ahead, plain
    ahead.close()


def test_merged_ahead_equals_merged_in_process_and_spares_the_live_model(pair: tuple[Workbench, Workbench]) -> None:
    ahead, plain = pair
    first, second, third = _recipe(0.3, 0.9), _recipe(1.2, 0.4), _recipe(0.7, 0.7)
    digest = ahead.load_recipe(first)
    assert digest == plain.load_recipe(first) == _live_sha256(ahead)
    for recipe in (second, third):
        scored = ahead.model  # what the search scores while the next candidate is merged ahead
        ahead.merge_ahead(recipe)
        time.sleep(0.5)  # long enough for the worker to have written the spare (a merge here takes ms)
        assert tensors_sha256(scored.state_dict().items()) == digest  # the live model was not touched
        digest = ahead.load_recipe(recipe)
        assert ahead.model is not scored  # the spare became the live model: nothing was merged again
        assert digest == plain.load_recipe(recipe) == _live_sha256(ahead)
        assert ahead.holds == recipe.sha256()


def test_a_merge_ahead_for_another_recipe_is_waited_out_and_not_used(pair: tuple[Workbench, Workbench]) -> None:
    ahead, plain = pair
    ahead.load_recipe(_recipe(0.5, 0.5))
    ahead.merge_ahead(_recipe(0.1, 0.2))
    wanted = _recipe(0.9, 0.8)
    assert ahead.load_recipe(wanted) == plain.load_recipe(wanted) == _live_sha256(ahead)


def test_a_merge_failing_in_the_worker_fails_in_the_search_and_the_next_merges_ahead(
    pair: tuple[Workbench, Workbench],
) -> None:
    ahead, plain = pair
    bad = _recipe(0.5, 0.5, model_b="missing")
    ahead.merge_ahead(bad)
    with pytest.raises(EvomergeError, match="missing"):
        ahead.load_recipe(bad)
    good = _recipe(0.4, 0.6)
    ahead.merge_ahead(good)
    scored = ahead.model
    assert ahead.load_recipe(good) == plain.load_recipe(good) == _live_sha256(ahead)
    assert ahead.model is not scored and ahead.merging_ahead


def test_a_lost_worker_leaves_the_search_merging_in_process(pair: tuple[Workbench, Workbench]) -> None:
    ahead, plain = pair
    worker = ahead._worker
    assert worker is not None
    os.kill(worker._process.pid, signal.SIGKILL)  # out of memory, or killed by hand
    worker._process.join(10)
    recipe = _recipe(1.1, 0.2)
    ahead.merge_ahead(recipe)
    assert ahead.load_recipe(recipe) == plain.load_recipe(recipe) == _live_sha256(ahead)
    assert not ahead.merging_ahead


def test_a_parent_loaded_while_a_merge_runs_ahead_is_the_parent(
    pair: tuple[Workbench, Workbench], zoo_dir: Path
) -> None:
    """Scoring a parent settles a merge running ahead first, then writes the parent's own weights into the
    live model; the abandoned merge is not taken for the next candidate by mistake."""
    ahead, plain = pair
    abandoned = _recipe(0.2, 1.3)
    ahead.merge_ahead(abandoned)
    digest = ahead.load_parent("a")
    assert digest == _live_sha256(ahead)
    assert digest == tensors_sha256(AutoModelForCausalLM.from_pretrained(zoo_dir / "add").state_dict().items())
    assert ahead.holds == "parent:a"
    assert ahead.load_recipe(abandoned) == plain.load_recipe(abandoned) == _live_sha256(ahead)


def test_the_large_model_path_merges_what_the_span_path_merges(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models past SMALL_MODEL_PARAMETERS merge tensor by tensor (`load_into_model`) instead of span by span:
    the same recipe must give the same tensors and the same digest either way."""
    import tasks.workbench

    parents = {"base": zoo_dir / "base", "a": zoo_dir / "add", "b": zoo_dir / "sort"}
    spans = Workbench(parents, reference="base")
    monkeypatch.setattr(tasks.workbench, "SMALL_MODEL_PARAMETERS", 0)
    tensor_by_tensor = Workbench(parents, reference="base")
    assert not tensor_by_tensor.can_merge_ahead
    recipe = _recipe(0.7, 0.4)
    assert spans.load_recipe(recipe) == tensor_by_tensor.load_recipe(recipe)
    assert _live_sha256(spans) == _live_sha256(tensor_by_tensor) != _live_sha256(Workbench(parents, reference="base"))
