"""Bad recipes are refused before any compute, with a message that names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ModelMismatchError, RecipeError
from tasks.merge.plan import plan_merge
from tasks.merge.recipe import parse_recipe
from tasks.merge.recipe_set import load_recipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "merge_method: linear\nmodels:\n  - model: a\n    paramters: {weight: 1}\n")
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert f"{path}: models.0.paramters: unknown key" in str(error.value)


def test_models_and_slices_are_exclusive() -> None:
    with pytest.raises(RecipeError, match="exactly one of `models` or `slices`"):
        parse_recipe({"merge_method": "linear"})


def test_layer_range_must_be_ordered() -> None:
    data = {"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": [4, 2]}]}]}
    with pytest.raises(RecipeError, match=r"slices\.0\.sources\.0\.layer_range"):
        parse_recipe(data)


def test_density_out_of_range_names_the_key(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe(
        {
            "merge_method": "ties",
            "base_model": "base",
            "models": [{"model": "a", "parameters": {"weight": 1.0, "density": 1.5}}],
        }
    )
    with pytest.raises(RecipeError, match=r"models\.0\.parameters\.density: 1\.5 is out of range \(0, 1\]"):
        plan_merge(recipe, tiny_models)


def test_density_in_a_gradient_is_checked_too(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe(
        {
            "merge_method": "ties",
            "base_model": "base",
            "parameters": {"density": [0.5, 0.0]},
            "models": [{"model": "a", "parameters": {"weight": 1.0}}],
        }
    )
    with pytest.raises(RecipeError, match=r"parameters\.density: 0\.0 is out of range"):
        plan_merge(recipe, tiny_models)


def test_missing_required_weight_names_the_model(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe(
        {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0}}, {"model": "b"}]}
    )
    with pytest.raises(RecipeError, match=r"models\.1\.parameters\.weight: required by linear"):
        plan_merge(recipe, tiny_models)


def test_unknown_parameter_for_the_method(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe(
        {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0, "density": 0.5}}]}
    )
    with pytest.raises(RecipeError, match=r"models\.0\.parameters\.density: unknown parameter for linear"):
        plan_merge(recipe, tiny_models)


def test_unknown_method_lists_the_known_ones(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe({"merge_method": "tiez", "models": [{"model": "a"}]})
    with pytest.raises(RecipeError, match=r"merge_method: unknown merge_method 'tiez'; known methods: .*ties"):
        plan_merge(recipe, tiny_models)


def test_task_arithmetic_needs_a_base_model(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe({"merge_method": "task_arithmetic", "models": [{"model": "a", "parameters": {"weight": 1}}]})
    with pytest.raises(RecipeError, match="base_model: required by merge_method task_arithmetic"):
        plan_merge(recipe, tiny_models)


def test_layer_range_past_the_end_names_the_model(tiny_models: dict[str, Path]) -> None:
    recipe = parse_recipe(
        {
            "merge_method": "slerp",
            "base_model": "base",
            "parameters": {"t": 0.5},
            "slices": [{"sources": [{"model": "base", "layer_range": [0, 3]}, {"model": "a", "layer_range": [0, 3]}]}],
        }
    )
    with pytest.raises(RecipeError, match=r"layer_range: \[0, 3\] is out of bounds for base, which has 2 layers"):
        plan_merge(recipe, tiny_models)


def test_shape_mismatch_names_the_tensor(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from tiny_models import make_tiny_llama

    wide = make_tiny_llama(tmp_path / "wide", 3, hidden=32)
    recipe = parse_recipe(
        {
            "merge_method": "linear",
            "models": [{"model": "a", "parameters": {"weight": 1}}, {"model": "wide", "parameters": {"weight": 1}}],
        }
    )
    with pytest.raises(ModelMismatchError, match=r"shape mismatch for model\.embed_tokens\.weight \(a: \[32, 16\]"):
        plan_merge(recipe, {**tiny_models, "wide": wide})


def test_truncated_safetensors_is_named(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["b"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    recipe = parse_recipe(
        {
            "merge_method": "linear",
            "models": [{"model": "a", "parameters": {"weight": 1}}, {"model": "broken", "parameters": {"weight": 1}}],
        }
    )
    with pytest.raises(ModelMismatchError, match=r"model\.safetensors: truncated safetensors file"):
        plan_merge(recipe, {**tiny_models, "broken": broken})


def test_equal_recipes_hash_equal_whatever_the_key_order() -> None:
    one = parse_recipe({"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0}}]})
    two = parse_recipe({"models": [{"parameters": {"weight": 1.0}, "model": "a"}], "merge_method": "linear"})
    assert one.sha256() == two.sha256()
    assert parse_recipe(__import__("yaml").safe_load(one.to_yaml())).sha256() == one.sha256()


TWO_MODELS = {"merge_method": "linear", "base_model": "a", "models": [{"model": "a"}, {"model": "b"}]}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tokenizer_source": "c"}, "tokenizer_source: 'c' is neither `base`, `union` nor one of the recipe's models"),
        ({"tokenizer_source": "union", "tokenizer": {}}, "tokenizer: cannot be used together with `tokenizer_source`"),
        ({"tokenizer": {"source": "zz"}}, "tokenizer.source: 'zz' is neither"),
        ({"tokenizer": {"sorce": "union"}}, "tokenizer.sorce: unknown key"),
        ({"tokenizer": {"pad_to_multiple_of": -8}}, "tokenizer.pad_to_multiple_of: must be a positive number"),
        ({"tokenizer": {"tokens": {"x": {"source": {"kind": "one"}}}}}, "tokenizer.tokens.x.source: kind must be"),
        (
            {"tokenizer": {"tokens": {"x": {"source": {"kind": "model_token", "model": "a"}}}}},
            "tokenizer.tokens.x.source: give exactly one of `token` or `token_id`",
        ),
        (
            {"tokenizer": {"tokens": {"x": {"source": {"kind": "model_token", "model": "q", "token_id": 1}}}}},
            "tokenizer.tokens.x.source.model: 'q' is not one of the recipe's models",
        ),
        ({"tokenizer": {"tokens": {"x": {"source": "q"}}}}, "tokenizer.tokens.x.source: 'q' is not one of"),
        ({"tokenizer": {"tokens": {"x": {"source": [1]}}}}, "tokenizer.tokens.x.source: must be a model name"),
        ({"tokenizer": {"tokens": {"x": {"force": True}}}}, "tokenizer.tokens.x: `force` needs a `source`"),
        ({"chat_template": "zephyr"}, "chat_template: 'zephyr' is neither `auto`, a built-in template"),
    ],
)
def test_tokenizer_settings_are_checked_with_their_key(settings: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeError) as error:
        parse_recipe({**TWO_MODELS, **settings}, "r.yaml")
    assert f"r.yaml: {message}" in str(error.value)


def test_tokenizer_settings_mergekit_accepts_parse() -> None:
    recipe = parse_recipe(
        {
            **TWO_MODELS,
            "tokenizer": {
                "pad_to_multiple_of": 64,
                "tokens": {
                    "<|im_start|>": {"source": {"kind": "model_token", "model": "b", "token": "<s>"}},
                    "<|im_end|>": {"source": "b", "force": True},
                    "<pad>": {"source": {"kind": "zero"}},
                },
            },
            "chat_template": "chatml",
        }
    )
    assert recipe.tokenizer is not None and recipe.tokenizer.source == "union"  # mergekit's default
    assert parse_recipe(__import__("yaml").safe_load(recipe.to_yaml())).sha256() == recipe.sha256()
    assert parse_recipe({**TWO_MODELS, "tokenizer_source": "b"}).tokenizer_source == "b"
