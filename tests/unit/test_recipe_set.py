"""Multi-document recipes (mergekit-multi's format): which documents run, in which order, and the mistakes
found before any model is opened."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.errors import RecipeError
from tasks.merge.recipe_set import RecipeSet, load_recipe, load_recipe_set, parse_recipe_set


def doc(name: str | None, *models: str, method: str = "linear") -> dict[str, object]:
    recipe: dict[str, object] = {
        "merge_method": method,
        "models": [{"model": m, "parameters": {"weight": 1.0}} for m in models],
    }
    if name is not None:
        recipe["name"] = name
    return recipe


def names(recipe_set: RecipeSet, output: str | None = None) -> list[str | None]:
    return [document.name for document in recipe_set.order(recipe_set.output(output))]


def test_documents_run_after_the_documents_they_read_and_only_when_needed() -> None:
    recipe_set = parse_recipe_set(
        [
            doc(None, "x", "mid"),  # the final merge may come first in the file
            doc("unused", "p"),
            doc("mid", "first", "q"),
            doc("first", "p", "q"),
        ],
        "r.yaml",
    )
    assert names(recipe_set) == ["first", "mid", None]
    assert names(recipe_set, "mid") == ["first", "mid"]
    assert names(recipe_set, "unused") == ["unused"]


def test_without_an_unnamed_document_the_last_is_the_output() -> None:
    recipe_set = parse_recipe_set([doc("a", "p"), doc("b", "a"), doc("c", "p")], "r.yaml")
    assert recipe_set.output().name == "c"
    assert names(recipe_set) == ["c"]


def test_a_document_read_twice_runs_once() -> None:
    recipe_set = parse_recipe_set([doc("x", "p"), doc("y", "x", "q"), doc(None, "x", "y")], "r.yaml")
    assert names(recipe_set) == ["x", "y", None]


def test_a_cycle_names_its_documents() -> None:
    recipe_set = parse_recipe_set([doc("one", "two", "p"), doc("two", "one"), doc(None, "two")], "r.yaml")
    with pytest.raises(RecipeError) as error:
        recipe_set.order(recipe_set.output())
    assert str(error.value) == (
        "r.yaml: the documents read each other in a cycle: document 2 ('two') -> document 1 ('one') -> "
        "document 2 ('two')"
    )


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([doc("same", "p"), doc("same", "q"), doc(None, "same")], "documents 1 and 2 are both named 'same'"),
        ([doc(None, "p"), doc("b", "p"), doc(None, "b")], "documents 1 and 3 have no `name:`; only the final merge"),
        ([doc("me", "me", "p"), doc(None, "me")], "document 1 ('me') uses its own name as a model"),
        (
            [doc("a", "p"), [1, 2]],
            "document 2: a recipe must be a YAML mapping (key: value lines), but it holds a list",
        ),
        (
            [doc("a", "p"), {"name": "b", "merge_method": "linear", "models": 3}],
            "r.yaml: document 2 ('b'): models: expected a list, got the number 3",
        ),
    ],
)
def test_set_mistakes_name_the_documents(documents: list[object], message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe_set(documents, "r.yaml")


def test_an_output_no_document_has_lists_the_names() -> None:
    recipe_set = parse_recipe_set([doc("a", "p"), doc("b", "a")], "r.yaml")
    with pytest.raises(RecipeError, match=r"r\.yaml: no document is named 'c' \(its documents: a, b\)"):
        recipe_set.output("c")


def test_a_file_of_one_document_is_a_plain_recipe(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc(None, "p")) + "---\n")  # a trailing separator is no document
    recipe_set = load_recipe_set(path)
    assert not recipe_set.is_multi
    assert load_recipe(path) == recipe_set.documents[0].recipe
    assert recipe_set.sha256() == recipe_set.documents[0].recipe.sha256()


def test_a_single_recipe_command_refuses_several_documents(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc("a", "p")) + "---\n" + yaml.safe_dump(doc(None, "a")))
    with pytest.raises(RecipeError, match="holds 2 recipes .* one recipe is expected here"):
        load_recipe(path)


def test_the_canonical_text_round_trips(tmp_path: Path) -> None:
    recipe_set = parse_recipe_set([doc("a", "p"), doc("b", "a", "q"), doc(None, "b")], "r.yaml")
    path = tmp_path / "again.yaml"
    path.write_text(recipe_set.to_yaml())
    again = load_recipe_set(path)
    assert [d.recipe for d in again.documents] == [d.recipe for d in recipe_set.documents]
    assert again.sha256() == recipe_set.sha256()
    assert path.read_text().startswith("name: a\n")
