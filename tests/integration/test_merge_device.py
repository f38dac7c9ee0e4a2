"""`--device cuda`: the math on a GPU gives the CPU's model. Runs where a CUDA GPU is present (a lent GPU
machine); elsewhere it is skipped, and the test that does run checks the clear refusal instead."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import run_merge

from tasks.download import resolve_model_path
from tasks.merge.engine import iter_merged_tensors
from tasks.merge.plan import plan_merge
from tasks.merge.recipe import parse_recipe
from tasks.merge.tensor_io import ModelSource

sys.path.insert(0, str(Path(__file__).parents[1] / "parity"))
from models import LAYOUTS, build_layout  # noqa: E402  (the parity suite's parents and recipe templates)
from recipes import RECIPES as PARITY_RECIPES  # noqa: E402
from recipes import ctx_for, method_of  # noqa: E402

pytestmark = pytest.mark.integration
HAS_CUDA = torch.cuda.is_available()
SECOND_DEVICE = "cuda"
LAYOUT = "llama"
PARITY_CASES = sorted(
    recipe_id
    for recipe_id, spec in PARITY_RECIPES.items()
    if spec.refused_with is None and (spec.layouts is None or LAYOUT in spec.layouts)
)
ROUNDING = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2**-7, 1e-5), torch.float16: (2**-10, 1e-6)}
"""(rtol, atol) per output dtype: a float32 result may differ in its last bits where GPU kernels fuse
multiply-adds or reduce in another order, and that can move a bf16/fp16 result by one unit in its last place."""
THRESHOLDED = {"arcee_fusion": 0.01}
"""Methods that keep a change where a float-derived importance (arcee: |Δ| times a softmax KL divergence)
reaches a data-derived cut-off: the GPU's rounding of that importance can move an entry lying at the cut-off
to the other side, which changes it by its whole delta. At most this share of a tensor's entries may differ."""
RECIPES = {
    "linear": {"merge_method": "linear", "models": ["a", "b"], "parameters": {"weight": 0.5}},
    "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": "base", "models": ["a", "b"]},
    "ties": {"merge_method": "ties", "base_model": "base", "models": ["a", "b"], "density": 0.5},
    "slerp": {"merge_method": "slerp", "base_model": "base", "models": ["a"], "t": 0.3},
}
PER_MODEL_WEIGHTS = ("linear", "task_arithmetic", "ties")


def recipe_file(tiny_models: dict[str, Path], tmp_path: Path, method: str) -> Path:
    spec = RECIPES[method]
    weight = spec.get("parameters", {}).get("weight", 1.0)
    density = spec.get("density")
    models = []
    for name in spec["models"]:
        parameters = {"weight": weight} | ({"density": density} if density else {})
        entry = {"model": str(tiny_models[name])}
        models.append(entry | ({"parameters": parameters} if method in PER_MODEL_WEIGHTS else {}))
    recipe = {"merge_method": method, "models": models, "dtype": "float32"}
    if "base_model" in spec:
        recipe["base_model"] = str(tiny_models[spec["base_model"]])
    if "t" in spec:
        recipe["parameters"] = {"t": spec["t"]}
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine: the CUDA path is not exercised here")
@pytest.mark.parametrize("method", sorted(RECIPES))
def test_cuda_merge_equals_the_cpu_merge(tiny_models: dict[str, Path], tmp_path: Path, method: str) -> None:
    recipe = recipe_file(tiny_models, tmp_path, method)
    outputs = {}
    for device in ("cpu", "cuda"):
        result = run_merge(str(recipe), str(tmp_path / device), "--device", device)
        assert result.returncode == 0, result.stderr
        outputs[device] = ModelSource(device, tmp_path / device)
    assert set(outputs["cpu"].tensors) == set(outputs["cuda"].tensors)
    for name in outputs["cpu"].tensors:
        cpu, cuda = outputs["cpu"].get(name), outputs["cuda"].get(name)
        assert cpu.dtype == cuda.dtype and cpu.shape == cuda.shape
        # same formula, different kernels: GPU arithmetic may fuse multiply-adds, so allow float32 rounding
        torch.testing.assert_close(cuda, cpu, rtol=1e-5, atol=1e-6, msg=f"{method}: {name}")


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present: the refusal cannot happen here")
def test_cuda_without_a_gpu_is_refused_before_anything_is_read(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "child"
    result = run_merge(str(recipe_file(tiny_models, tmp_path, "linear")), str(out), "--device", "cuda")
    assert result.returncode == 2
    assert "--device cuda: no CUDA GPU is available here" in result.stderr
    assert not out.exists() and not out.with_name("child.partial").exists()


def test_unknown_device_is_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = run_merge(str(recipe_file(tiny_models, tmp_path, "linear")), str(tmp_path / "child"), "--device", "tpu")
    assert result.returncode == 2
    assert "merges run on cpu or cuda" in result.stderr or "is not a device" in result.stderr


@pytest.fixture(scope="module")
def parity_parents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_layout(LAYOUTS[LAYOUT], tmp_path_factory.mktemp("parity-parents"))


def _merged(recipe_id: str, parents: dict[str, Path], device: str) -> dict[str, torch.Tensor]:
    spec = PARITY_RECIPES[recipe_id]
    recipe = parse_recipe(spec.build(ctx_for(LAYOUT, parents, LAYOUTS[LAYOUT].num_layers)), recipe_id)
    paths = {name: resolve_model_path(name) for name in recipe.model_names()}
    plan = plan_merge(recipe, paths, recipe_id, random_seed=spec.random_seed or 0)
    return dict(iter_merged_tensors(plan, device))


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine: the CUDA path is not exercised here")
@pytest.mark.parametrize("recipe_id", PARITY_CASES)
def test_every_parity_recipe_merges_on_the_gpu_as_on_the_cpu(parity_parents: dict[str, Path], recipe_id: str) -> None:
    """Every method and variant of the mergekit parity suite, in-process on both devices. Randomised cases
    (DARE/DELLA below density 1) draw their masks from the GPU's generator, whose stream is not the CPU's:
    there the GPU must give the same child twice, with only finite values."""
    cpu = _merged(recipe_id, parity_parents, "cpu")
    gpu = _merged(recipe_id, parity_parents, SECOND_DEVICE)
    assert list(gpu) == list(cpu)
    exact = PARITY_RECIPES[recipe_id].exact
    method = method_of(recipe_id)
    again = _merged(recipe_id, parity_parents, SECOND_DEVICE) if not exact else gpu
    for name, tensor in gpu.items():
        assert tensor.device.type == "cpu" and tensor.dtype == cpu[name].dtype and tensor.shape == cpu[name].shape
        rtol, atol = ROUNDING[tensor.dtype]
        if method in THRESHOLDED:
            differing = ~torch.isclose(tensor, cpu[name], rtol=rtol, atol=atol)
            share = differing.float().mean().item()
            print(f"{recipe_id}: {name}: {int(differing.sum())} of {tensor.numel()} entries differ")
            assert share <= THRESHOLDED[method], f"{recipe_id}: {name}: {share:.2%} of entries differ"
        elif exact:
            where = f"{recipe_id}: {name}"
            torch.testing.assert_close(tensor, cpu[name], rtol=rtol, atol=atol, msg=lambda m, w=where: f"{w}: {m}")
        else:
            assert torch.equal(tensor, again[name]) and bool(torch.isfinite(tensor).all()), f"{recipe_id}: {name}"
