"""`evomerge merge` as a user runs it: a real process, real files, transformers loading the result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tasks.merge.engine import tensors_sha256
from tasks.merge.writer import model_dir_sha256

pytestmark = pytest.mark.integration
EVOMERGE = [sys.executable, "-m", "flows.cli"]


def run_merge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVOMERGE, "merge", *args, "--quiet"], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})}, cwd=Path(__file__).parents[2],
    )


def write_recipe(path: Path, recipe: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_task_arithmetic_merge_loads_in_transformers_and_matches_the_formula(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path / "recipe.yaml", {
        "merge_method": "task_arithmetic", "base_model": str(tiny_models["base"]),
        "models": [{"model": str(tiny_models["a"]), "parameters": {"weight": 0.7}},
                   {"model": str(tiny_models["b"]), "parameters": {"weight": [0.2, 0.6]}}],
    })
    out = tmp_path / "child"
    result = run_merge(str(recipe), str(out))
    assert result.returncode == 0, result.stderr
    base, a, b = (load_file(tiny_models[n] / "model.safetensors") for n in ("base", "a", "b"))
    merged = load_file(out / "model.safetensors")
    assert set(merged) == set(base)
    # layer 1 of 2 sits at t = 1: the gradient gives b the weight 0.6; layer 0 gives 0.2
    for name, weight_b in (("model.layers.0.mlp.up_proj.weight", 0.2), ("model.layers.1.mlp.up_proj.weight", 0.6)):
        expected = base[name] + (0.7 * (a[name] - base[name]) + weight_b * (b[name] - base[name]))
        assert torch.allclose(merged[name], expected, atol=1e-6), name
    model = AutoModelForCausalLM.from_pretrained(out)
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 32) and torch.isfinite(logits).all()
    assert (out / "mergekit_config.yml").exists() and json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    assert not (tmp_path / "child.partial").exists()


def test_slerp_slices_recipe_in_mergekit_form(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "slerp.yaml", {
        "merge_method": "slerp", "base_model": str(tiny_models["base"]),
        "slices": [{"sources": [{"model": str(tiny_models["base"]), "layer_range": [0, 2]},
                                {"model": str(tiny_models["a"]), "layer_range": [0, 2]}]}],
        "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 1.0]}, {"value": 0.5}]},
    })
    out = tmp_path / "slerp-child"
    assert run_merge(str(recipe), str(out)).returncode == 0
    merged = load_file(out / "model.safetensors")
    a = load_file(tiny_models["a"] / "model.safetensors")
    base = load_file(tiny_models["base"] / "model.safetensors")
    assert torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.allclose(merged["model.layers.1.self_attn.q_proj.weight"], a["model.layers.1.self_attn.q_proj.weight"],
                          atol=1e-6)


def test_existing_output_is_refused_and_force_replaces_it(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {"merge_method": "linear", "models": [
        {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
        {"model": str(tiny_models["b"]), "parameters": {"weight": 1.0}}]})
    out = tmp_path / "out"
    out.mkdir()
    refused = run_merge(str(recipe), str(out))
    assert refused.returncode == 2
    assert "already exists; pass --force" in refused.stderr and "Traceback" not in refused.stderr
    assert run_merge(str(recipe), str(out), "--force").returncode == 0
    a = load_file(tiny_models["a"] / "model.safetensors")
    b = load_file(tiny_models["b"] / "model.safetensors")
    expected = tensors_sha256((name, (a[name].float() + b[name]) / 2) for name in a)
    assert model_dir_sha256(out) == expected


def test_bad_recipe_exits_2_with_the_key(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "bad.yaml", {"merge_method": "ties", "base_model": str(tiny_models["base"]),
                                                  "models": [{"model": str(tiny_models["a"]),
                                                              "parameters": {"weight": 1, "density": 0}}]})
    result = run_merge(str(recipe), str(tmp_path / "never"))
    assert result.returncode == 2
    assert "models.0.parameters.density: 0 is out of range (0, 1]" in " ".join(result.stderr.split())
    assert not (tmp_path / "never").exists() and not (tmp_path / "never.partial").exists()


def fill_hub_cache(cache: Path, repo_id: str, source: Path, revision: str = "0" * 40) -> Path:
    """The layout huggingface_hub writes: models--ORG--NAME/snapshots/REV plus refs/main naming REV."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    shutil.copytree(source, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def test_hub_models_resolve_from_a_prefilled_cache_offline(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "evomerge-test/tiny-base", tiny_models["base"])
    fill_hub_cache(cache, "evomerge-test/tiny-a", tiny_models["a"])
    recipe = write_recipe(tmp_path / "hub.yaml", {
        "merge_method": "task_arithmetic", "base_model": "evomerge-test/tiny-base",
        "models": [{"model": "evomerge-test/tiny-a", "parameters": {"weight": 1.0}}]})
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = tmp_path / "from-hub"
    result = run_merge(str(recipe), str(out), env=env)
    assert result.returncode == 0, result.stderr
    base = load_file(tiny_models["base"] / "model.safetensors")
    a = load_file(tiny_models["a"] / "model.safetensors")
    assert model_dir_sha256(out) == tensors_sha256((name, base[name] + (a[name] - base[name])) for name in base)

    missing = write_recipe(tmp_path / "missing.yaml", {"merge_method": "linear", "models": [
        {"model": "evomerge-test/not-cached", "parameters": {"weight": 1.0}}]})
    result = run_merge(str(missing), str(tmp_path / "x"), env=env)
    assert result.returncode == 2
    assert "'evomerge-test/not-cached' is not in the Hugging Face cache and HF_HUB_OFFLINE=1" in result.stderr
