"""The full demo zoo: complete offline model directories, experts that master their skill and only it,
and a manifest that tells the truth about the files and scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from tasks.zoo import SKILLS, ZooManifest, read_manifest
from tasks.zoo.manifest import weight_file_hashes
from tasks.zoo.recipe import ZooRecipe

pytestmark = pytest.mark.integration

MODELS = ("base", *SKILLS)


@pytest.fixture(scope="module")
def manifest(zoo_dir: Path) -> ZooManifest:
    loaded = read_manifest(zoo_dir)
    assert loaded is not None
    return loaded


def test_manifest_describes_the_default_zoo(manifest: ZooManifest, zoo_dir: Path) -> None:
    assert manifest.seed == 0
    assert manifest.experts == SKILLS == manifest.skills
    assert manifest.recipe == ZooRecipe()
    assert list(manifest.models) == list(MODELS)
    assert manifest.build_seconds > 0
    assert not zoo_dir.with_name(zoo_dir.name + ".partial").exists()
    for name, entry in manifest.models.items():
        model_dir = zoo_dir / entry.path
        assert entry.weight_sha256 == weight_file_hashes(model_dir) != {}
        assert entry.skill == (None if name == "base" else name)
        assert 3_000_000 < entry.size_bytes < 4_500_000
        for file_name in ("config.json", "generation_config.json", "tokenizer.json", "model.safetensors"):
            assert (model_dir / file_name).is_file(), (name, file_name)


def test_each_expert_masters_its_own_skill_on_both_splits(manifest: ZooManifest) -> None:
    for skill in SKILLS:
        entry = manifest.models[skill]
        assert entry.accuracy[skill] >= 0.8, (skill, entry.accuracy)
        assert entry.test_accuracy[skill] >= 0.8, (skill, entry.test_accuracy)


def test_no_model_is_good_at_everything(manifest: ZooManifest) -> None:
    for name, entry in manifest.models.items():
        assert min(entry.accuracy.values()) < 0.5, (name, entry.accuracy)
    base = manifest.models["base"].accuracy
    for skill in SKILLS:
        assert manifest.models[skill].accuracy[skill] > base[skill] + 0.4


def test_models_have_the_documented_shape(zoo_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(zoo_dir / "base")
    assert isinstance(model, LlamaForCausalLM)
    config = model.config
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (128, 384, 4)
    assert config.num_attention_heads == 4 and config.vocab_size == 47
    assert not config.tie_word_embeddings
    assert 850_000 < sum(parameter.numel() for parameter in model.parameters()) < 900_000
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    ("name", "prompt", "answer"),
    [
        ("add", "23+58=", "81"),
        ("add", "47+65=", "112"),
        ("sort", "dbeca>", "abcde"),
        ("sort", "zqmxk>", "kmqxz"),
        ("reverse", "abcde|", "edcba"),
        ("reverse", "hwgjp|", "pjgwh"),
    ],
)
def test_experts_generate_the_answer_with_plain_transformers(
    zoo_dir: Path, name: str, prompt: str, answer: str
) -> None:
    """Loaded the way any transformers user would, offline; greedy decoding stops at `<eos>` by itself."""
    model = AutoModelForCausalLM.from_pretrained(zoo_dir / name)
    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / name)
    inputs = tokenizer(prompt, return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tokenizer.bos_token_id
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8)
    continuation = output[0, inputs["input_ids"].shape[1] :]
    assert continuation[-1].item() == tokenizer.eos_token_id
    assert tokenizer.decode(continuation, skip_special_tokens=True) == answer
