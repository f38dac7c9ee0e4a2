"""A wrong YAML value is explained in the YAML's words: what belongs at the key and what the file holds there.
No Python type or class name (NoneType, dict, InputModel, Tuple...) ever reaches the user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from genetics.search_config import load_search_config
from tasks.errors import RecipeError
from tasks.merge.recipe import parse_recipe
from tasks.merge.recipe_set import load_recipe

PYTHON_WORDS = re.compile(
    r"NoneType|\bdict\b|\bstr\b|\bint\b|\bfloat\b|\btuple\b|Tuple|List should|instance of|InputModel|"
    r"TokenizerConfig|ConditionalParameter|OutputSlice|InputSlice|Input should|Input tag|\blist\["
)

RECIPE_CASES = [
    (None, "<top level>", "the file is empty; a recipe is a YAML mapping"),
    ([1, 2], "<top level>", "but the file holds a list of 2 items"),
    ("hello", "<top level>", "but the file holds the text 'hello'"),
    (3, "<top level>", "but the file holds the number 3"),
    ({"merge_method": "linear", "models": 3}, "models", "expected a list, got the number 3"),
    ({"merge_method": "linear", "models": {"model": "a"}}, "models", "expected a list, got a mapping"),
    (
        {"merge_method": "linear", "models": ["a"]},
        "models.0",
        "expected a mapping (key: value lines), got the text 'a'",
    ),
    ({"merge_method": "linear", "models": [None]}, "models.0", "got nothing (an empty value)"),
    (
        {"merge_method": "linear", "models": [{"model": "a", "parameters": [1]}]},
        "models.0.parameters",
        "expected a mapping (key: value lines), got a list of 1 item",
    ),
    (
        {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": {"x": 1}}}]},
        "models.0.parameters.weight",
        "expected a number, a list of numbers (a gradient across the layers) or a list of `filter:` / `value:` "
        "entries, got a mapping",
    ),
    (
        {"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": [{"filter": 3, "value": 1}]}}]},
        "models.0.parameters.weight",
        "entry 0: filter: expected a text value, got the number 3",
    ),
    (
        {"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": 4}]}]},
        "slices.0.sources.0.layer_range",
        "expected a list, got the number 4",
    ),
    (
        {"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": [0, 1, 2]}]}]},
        "slices.0.sources.0.layer_range",
        "expected at most 2 items, got 3",
    ),
    (
        {"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": ["x", 2]}]}]},
        "slices.0.sources.0.layer_range.0",
        "expected a whole number, got the text 'x'",
    ),
    ({"merge_method": ["linear"], "models": [{"model": "a"}]}, "merge_method", "expected a text value, got a list"),
    ({"merge_method": "linear", "models": [{"model": "a"}], "tokenizer": "x"}, "tokenizer", "expected a mapping"),
    ({"models": [{"model": "a"}]}, "merge_method", "required, but missing"),
]


@pytest.mark.parametrize(("data", "key", "message"), RECIPE_CASES)
def test_a_wrong_recipe_value_is_described_as_yaml(data: object, key: str, message: str) -> None:
    with pytest.raises(RecipeError) as error:
        parse_recipe(data, "r.yaml")
    text = str(error.value)
    assert text.startswith(f"r.yaml: {key}: " if key != "<top level>" else "r.yaml: "), text
    assert message in text, text
    assert not PYTHON_WORDS.search(text), text


def test_an_empty_recipe_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing but a comment\n")
    with pytest.raises(RecipeError, match=r"empty\.yaml: the file is empty"):
        load_recipe(path)


def _search(tmp_path: Path, change: dict[str, object]) -> Path:
    config: dict[str, object] = {
        "name": "s",
        "recipe": {"merge_method": "task_arithmetic", "base_model": "zoo:base", "models": [{"model": "zoo:add"}]},
        "genes": [{"parameter": "weight", "model": "zoo:add", "low": 0.0, "high": 1.0}],
        "evaluation": {"tasks": ["evomerge_add"]},
        "algorithm": {"name": "ga"},
    }
    config.update(change)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SEARCH_CASES = [
    ({"genes": 3}, "genes", "expected a list, got the number 3"),
    ({"genes": ["weight"]}, "genes.0", "expected a mapping (key: value lines), got the text 'weight'"),
    ({"algorithm": ["ga"]}, "algorithm", "expected a mapping (key: value lines), got a list of 1 item"),
    ({"algorithm": {"name": "gaa"}}, "algorithm", "name: 'gaa' is not one of 'ga', 'cma-es', 'nsga2', 'random'"),
    ({"algorithm": {"name": "ga", "population_size": "many"}}, "algorithm.population_size", "expected a whole number"),
    ({"budget": 5}, "budget", "expected a mapping (key: value lines), got the number 5"),
    (
        {"evaluation": {"tasks": [5]}},
        "evaluation.tasks",
        "item 0: expected a task name or a mapping with `task:`, got the number 5",
    ),
    ({"seed": "x"}, "seed", "expected a whole number, got the text 'x'"),
    ({"recipe": [1]}, "recipe", "expected a mapping (key: value lines), got a list of 1 item"),
]


@pytest.mark.parametrize(("change", "key", "message"), SEARCH_CASES)
def test_a_wrong_search_value_is_described_as_yaml(tmp_path: Path, change: dict[str, object], key: str, message: str):
    path = _search(tmp_path, change)
    with pytest.raises(RecipeError) as error:
        load_search_config(path)
    text = str(error.value)
    assert f"{path}: {key}: {message}" in text, text
    assert not PYTHON_WORDS.search(text), text


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n"])
def test_a_search_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_search_config(path)
    assert "YAML mapping" in str(error.value)
    assert not PYTHON_WORDS.search(str(error.value))
