"""`--device cuda`: the math on a GPU gives the CPU's model. Runs where a CUDA GPU is present (a lent GPU
machine); elsewhere it is skipped, and the test that does run checks the clear refusal instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import run_merge

from tasks.merge.tensor_io import ModelSource

pytestmark = pytest.mark.integration
HAS_CUDA = torch.cuda.is_available()
RECIPES = {
    "linear": {"merge_method": "linear", "models": ["a", "b"], "parameters": {"weight": 0.5}},
    "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": "base", "models": ["a", "b"]},
    "ties": {"merge_method": "ties", "base_model": "base", "models": ["a", "b"], "density": 0.5},
    "slerp": {"merge_method": "slerp", "base_model": "base", "models": ["a"], "t": 0.3},
}


def recipe_file(tiny_models: dict[str, Path], tmp_path: Path, method: str) -> Path:
    spec = RECIPES[method]
    weight = spec.get("parameters", {}).get("weight", 1.0)
    density = spec.get("density")
    models = []
    for name in spec["models"]:
        parameters = {"weight": weight} | ({"density": density} if density else {})
        models.append({"model": str(tiny_models[name]), "parameters": parameters})
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
