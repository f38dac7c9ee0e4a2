"""The merged model's config.json spells its dtype as transformers itself writes it for the same model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tasks.merge.plan import plan_merge
from tasks.merge.recipe import Recipe
from tasks.merge.writer import write_model

DTYPE_KEYS = ("dtype", "torch_dtype")


def _dtype_entries(config_path: Path) -> dict[str, object]:
    config = json.loads(config_path.read_text())
    return {key: config[key] for key in DTYPE_KEYS if key in config}


def _saved_by_transformers(model_dir: Path, tmp_path: Path, dtype: torch.dtype) -> dict[str, object]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model.save_pretrained(tmp_path / "resaved")
    return _dtype_entries(tmp_path / "resaved" / "config.json")


@pytest.mark.parametrize(
    ("recipe_dtype", "legacy_parent"),
    [(None, False), ("bfloat16", False), ("float16", True), (None, True)],
)
def test_config_dtype_is_spelt_as_save_pretrained_spells_it(
    tiny_models: dict[str, Path], tmp_path: Path, recipe_dtype: str | None, legacy_parent: bool
) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(tiny_models["a"], parent)
    if legacy_parent:  # a checkpoint written by transformers 4: `torch_dtype` only
        config = json.loads((parent / "config.json").read_text())
        config["torch_dtype"] = config.pop("dtype", "float32")
        (parent / "config.json").write_text(json.dumps(config))
    recipe = Recipe.model_validate(
        {"merge_method": "linear", "models": [{"model": "p", "parameters": {"weight": 1.0}}], "dtype": recipe_dtype}
    )
    out = tmp_path / "child"
    write_model(plan_merge(recipe, {"p": parent}), out)
    written = _dtype_entries(out / "config.json")
    expected_dtype = getattr(torch, recipe_dtype) if recipe_dtype else torch.float32
    assert written == _saved_by_transformers(out, tmp_path, expected_dtype)
    assert written == {"dtype": recipe_dtype or "float32"}
