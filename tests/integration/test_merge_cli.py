"""`evomerge merge` as a user runs it: a real process, real files, transformers loading the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import run_merge
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tasks.merge.engine import tensors_sha256
from tasks.merge.writer import model_dir_sha256

pytestmark = pytest.mark.integration


def write_recipe(path: Path, recipe: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_task_arithmetic_merge_loads_in_transformers_and_matches_the_formula(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {
            "merge_method": "task_arithmetic",
            "base_model": str(tiny_models["base"]),
            "models": [
                {"model": str(tiny_models["a"]), "parameters": {"weight": 0.7}},
                {"model": str(tiny_models["b"]), "parameters": {"weight": [0.2, 0.6]}},
            ],
        },
    )
    out = tmp_path / "child"
    result = run_merge(str(recipe), str(out), "--sha256")
    assert result.returncode == 0, result.stderr
    # the printed identity is the one the search records: the hash of the tensors as written
    assert f"sha256 {model_dir_sha256(out)}" in result.stdout
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
    assert (out / "mergekit_config.yml").exists() and json.loads((out / "config.json").read_text())[
        "num_hidden_layers"
    ] == 2
    assert not (tmp_path / "child.partial").exists()


def test_slerp_slices_recipe_in_mergekit_form(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "slerp.yaml",
        {
            "merge_method": "slerp",
            "base_model": str(tiny_models["base"]),
            "slices": [
                {
                    "sources": [
                        {"model": str(tiny_models["base"]), "layer_range": [0, 2]},
                        {"model": str(tiny_models["a"]), "layer_range": [0, 2]},
                    ]
                }
            ],
            "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 1.0]}, {"value": 0.5}]},
        },
    )
    out = tmp_path / "slerp-child"
    assert run_merge(str(recipe), str(out)).returncode == 0
    merged = load_file(out / "model.safetensors")
    a = load_file(tiny_models["a"] / "model.safetensors")
    base = load_file(tiny_models["base"] / "model.safetensors")
    assert torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.allclose(
        merged["model.layers.1.self_attn.q_proj.weight"], a["model.layers.1.self_attn.q_proj.weight"], atol=1e-6
    )


def test_existing_output_is_refused_and_force_replaces_it(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {
            "merge_method": "linear",
            "models": [
                {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
                {"model": str(tiny_models["b"]), "parameters": {"weight": 1.0}},
            ],
        },
    )
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
    recipe = write_recipe(
        tmp_path / "bad.yaml",
        {
            "merge_method": "ties",
            "base_model": str(tiny_models["base"]),
            "models": [{"model": str(tiny_models["a"]), "parameters": {"weight": 1, "density": 0}}],
        },
    )
    result = run_merge(str(recipe), str(tmp_path / "never"))
    assert result.returncode == 2
    assert "models.0.parameters.density: 0 is out of range (0, 1]" in " ".join(result.stderr.split())
    assert not (tmp_path / "never").exists() and not (tmp_path / "never.partial").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; a recipe is a YAML mapping (key: value lines, e.g. `merge_method: linear`)"),
        ("- model: a\n- model: b\n", "a recipe must be a YAML mapping (key: value lines), but the file holds a list"),
        ("merge_method: linear\nmodels: 3\n", "models: expected a list, got the number 3"),
        ("merge_method: linear\nmodels: [a]\n", "models.0: expected a mapping (key: value lines), got the text 'a'"),
    ],
)
def test_a_malformed_recipe_is_explained_in_yaml_terms(tmp_path: Path, text: str, message: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    result = run_merge(str(recipe), str(tmp_path / "never"))
    assert result.returncode == 2
    assert f"error: {recipe}: {message}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and "NoneType" not in result.stderr
    assert not (tmp_path / "never").exists()


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
    recipe = write_recipe(
        tmp_path / "hub.yaml",
        {
            "merge_method": "task_arithmetic",
            "base_model": "evomerge-test/tiny-base",
            "models": [{"model": "evomerge-test/tiny-a", "parameters": {"weight": 1.0}}],
        },
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = tmp_path / "from-hub"
    result = run_merge(str(recipe), str(out), env=env)
    assert result.returncode == 0, result.stderr
    base = load_file(tiny_models["base"] / "model.safetensors")
    a = load_file(tiny_models["a"] / "model.safetensors")
    assert model_dir_sha256(out) == tensors_sha256((name, base[name] + (a[name] - base[name])) for name in base)

    missing = write_recipe(
        tmp_path / "missing.yaml",
        {"merge_method": "linear", "models": [{"model": "evomerge-test/not-cached", "parameters": {"weight": 1.0}}]},
    )
    result = run_merge(str(missing), str(tmp_path / "x"), env=env)
    assert result.returncode == 2
    assert "'evomerge-test/not-cached' is not in the Hugging Face cache and HF_HUB_OFFLINE=1" in result.stderr


def test_plan_checks_and_prints_the_cost_without_merging(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "plan.yaml",
        {
            "merge_method": "ties",
            "base_model": str(tiny_models["base"]),
            "models": [{"model": str(tiny_models["a"]), "parameters": {"weight": 1.0, "density": 0.5}}],
        },
    )
    result = run_merge(str(recipe), "--plan")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    base_bytes = (tiny_models["base"] / "model.safetensors").stat().st_size
    assert "ties over 2 model(s): compatible" in text and "output tensors: 21, layers: 2" in text
    assert "predicted peak memory" in text
    # reads the base and one model in full (headers excluded): a bit under two files' worth
    read_kb = float(text.split("to read: ")[1].split(" KB")[0])
    assert 1.8 * base_bytes / 1000 < read_kb < 2 * base_bytes / 1000


def test_non_finite_parent_is_refused_with_check_finite(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    poisoned = tmp_path / "poisoned"
    shutil.copytree(tiny_models["b"], poisoned)
    tensors = load_file(poisoned / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(tensors, str(poisoned / "model.safetensors"), metadata={"format": "pt"})
    recipe = write_recipe(
        tmp_path / "nan.yaml",
        {
            "merge_method": "linear",
            "models": [
                {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
                {"model": str(poisoned), "parameters": {"weight": 1.0}},
            ],
        },
    )
    result = run_merge(str(recipe), str(tmp_path / "out"), "--check-finite")
    assert result.returncode == 2
    assert "tensor model.layers.1.mlp.up_proj.weight holds 1 non-finite value(s)" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


def test_pickle_checkpoint_needs_allow_pickle(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copyfile(tiny_models["b"] / "config.json", pickled / "config.json")
    torch.save(load_file(tiny_models["b"] / "model.safetensors"), pickled / "pytorch_model.bin")
    recipe = write_recipe(
        tmp_path / "pickle.yaml",
        {
            "merge_method": "linear",
            "models": [
                {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
                {"model": str(pickled), "parameters": {"weight": 1.0}},
            ],
        },
    )
    refused = run_merge(str(recipe), str(tmp_path / "refused"))
    assert refused.returncode == 2 and "unless you pass --allow-pickle" in " ".join(refused.stderr.split())
    allowed = run_merge(str(recipe), str(tmp_path / "allowed"), "--allow-pickle")
    assert allowed.returncode == 0, allowed.stderr
    reference = run_merge(
        str(
            write_recipe(
                tmp_path / "st.yaml",
                {
                    "merge_method": "linear",
                    "models": [
                        {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
                        {"model": str(tiny_models["b"]), "parameters": {"weight": 1.0}},
                    ],
                },
            )
        ),
        str(tmp_path / "reference"),
    )
    assert reference.returncode == 0
    assert model_dir_sha256(tmp_path / "allowed") == model_dir_sha256(tmp_path / "reference")


def test_vocabulary_mismatch_asks_for_tokenizer_source(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from tiny_models import make_tiny_llama

    bigger_vocab = make_tiny_llama(tmp_path / "vocab40", 5, vocab=40)
    recipe = write_recipe(
        tmp_path / "vocab.yaml",
        {
            "merge_method": "linear",
            "models": [
                {"model": str(tiny_models["a"]), "parameters": {"weight": 1.0}},
                {"model": str(bigger_vocab), "parameters": {"weight": 1.0}},
            ],
        },
    )
    result = run_merge(str(recipe), str(tmp_path / "out"))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "vocabulary size mismatch in model.embed_tokens.weight" in message and "tokenizer_source" in message
