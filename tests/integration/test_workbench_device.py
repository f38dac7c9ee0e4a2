"""The search's workbench on a GPU (`evaluation.device: cuda`): the live model sits on the GPU, each candidate is
merged there, and it must hold what the CPU workbench holds for the same recipe. Runs where a CUDA GPU is present
(a lent GPU machine); elsewhere it is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.merge.recipe import Recipe
from tasks.workbench import Workbench

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the CUDA path is not run"),
]
RECIPES = {
    "task_arithmetic": {"weight_a": [0.3, 1.1], "weight_b": 0.8},
    "ties": {"weight_a": 0.9, "weight_b": 0.6, "density": 0.4},
    "dare_ties": {"weight_a": 0.9, "weight_b": 0.6, "density": 0.5},
}
EXACT = ("task_arithmetic", "ties")
"""Methods whose math has no randomness: their GPU merge must equal the CPU merge up to float32 rounding."""


def _recipe(method: str) -> Recipe:
    spec = RECIPES[method]
    density = {"density": spec["density"]} if "density" in spec else {}
    return Recipe.model_validate(
        {
            "merge_method": method,
            "base_model": "base",
            "models": [
                {"model": "a", "parameters": {"weight": spec["weight_a"], **density}},
                {"model": "b", "parameters": {"weight": spec["weight_b"], **density}},
            ],
        }
    )


@pytest.fixture(scope="module")
def benches(zoo_dir: Path) -> dict[str, Workbench]:
    parents = {"base": zoo_dir / "base", "a": zoo_dir / "add", "b": zoo_dir / "sort"}
    return {device: Workbench(parents, reference="base", device=device) for device in ("cpu", "cuda")}


@pytest.mark.parametrize("method", EXACT)
def test_a_candidate_merged_on_the_gpu_is_the_cpu_candidate(benches: dict[str, Workbench], method: str) -> None:
    recipe = _recipe(method)
    for bench in benches.values():
        bench.load_recipe(recipe)
    cpu, cuda = (dict(benches[device].model.named_parameters()) for device in ("cpu", "cuda"))
    assert set(cpu) == set(cuda)
    for name, parameter in cuda.items():
        assert parameter.device.type == "cuda", name
        # same formula, different kernels: GPU arithmetic may fuse multiply-adds, so allow float32 rounding
        torch.testing.assert_close(parameter.detach().cpu(), cpu[name].detach(), rtol=1e-5, atol=1e-6, msg=name)
    assert benches["cuda"].holds == benches["cpu"].holds == recipe.sha256()


def test_dare_on_the_gpu_draws_the_same_masks_every_time(benches: dict[str, Workbench]) -> None:
    """DARE's masks come from a generator seeded per tensor on the device that runs the math (as mergekit
    --cuda does): the GPU's stream is not the CPU's, but a recipe must give the same child every time."""
    bench = benches["cuda"]
    dare, other = _recipe("dare_ties"), _recipe("ties")
    first = bench.load_recipe(dare)
    kept = {name: parameter.detach().cpu().clone() for name, parameter in bench.model.named_parameters()}
    assert bench.load_recipe(other) != first
    assert bench.load_recipe(dare) == first
    for name, parameter in bench.model.named_parameters():
        assert torch.equal(parameter.detach().cpu(), kept[name]), name


def test_a_gpu_workbench_does_not_merge_ahead(benches: dict[str, Workbench]) -> None:
    """The merge-ahead worker shares CPU memory with the search; a GPU model merges in place instead."""
    assert not benches["cuda"].can_merge_ahead
    assert benches["cuda"].start_merging_ahead() is False
