"""Multi-document recipes: mergekit-multi's format, several merges in one YAML file.

Documents are separated by `---`; each is an ordinary recipe with a `name:`, and a later one may use an
earlier one's name as a model (`base_model: first-merge`). At most one document goes unnamed: it is the
final merge, as in mergekit-multi. Which documents run, and in which order, follows from the references:
the output document and everything it reads, each after the documents it reads. A cycle, a name used
twice or an output that no document has is a mistake found here, before any model is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.config_messages import describe_value
from tasks.errors import RecipeError
from tasks.merge.recipe import Recipe, parse_recipe

SEPARATOR = "---\n"


@dataclass(frozen=True)
class RecipeDocument:
    number: int
    """Its position in the file, from 1 (what an error names)."""
    recipe: Recipe

    @property
    def name(self) -> str | None:
        return self.recipe.name

    @property
    def label(self) -> str:
        return f"document {self.number} ({self.name!r})" if self.name else f"document {self.number} (unnamed)"


@dataclass(frozen=True)
class RecipeSet:
    """The documents of one recipe file, in file order (a plain recipe is a set of one)."""

    source: str
    documents: tuple[RecipeDocument, ...]

    @property
    def names(self) -> list[str]:
        return [document.name for document in self.documents if document.name]

    def named(self, name: str) -> RecipeDocument | None:
        return next((document for document in self.documents if document.name == name), None)

    def reads(self, document: RecipeDocument) -> list[RecipeDocument]:
        """The documents whose results `document` uses as models, in the order it names them."""
        found = [self.named(model) for model in document.recipe.model_names()]
        return [other for other in found if other is not None]

    def output(self, name: str | None = None) -> RecipeDocument:
        """The document whose result is written to OUT: the one named `name`; else the unnamed one (the final
        merge of a mergekit-multi file); else the last."""
        if name is not None:
            chosen = self.named(name)
            if chosen is None:
                raise RecipeError(
                    f"{self.source}: no document is named {name!r} (its documents: {', '.join(self.names) or 'none'})"
                )
            return chosen
        unnamed = [document for document in self.documents if document.name is None]
        return unnamed[0] if unnamed else self.documents[-1]

    def order(self, output: RecipeDocument) -> list[RecipeDocument]:
        """`output` and every document it reads, directly or not, each after the ones it reads."""
        ordered: list[RecipeDocument] = []
        path: list[RecipeDocument] = []

        def visit(document: RecipeDocument) -> None:
            if document in ordered:
                return
            if document in path:
                cycle = [*path[path.index(document) :], document]
                raise RecipeError(
                    f"{self.source}: the documents read each other in a cycle: "
                    + " -> ".join(other.label for other in cycle)
                )
            path.append(document)
            for dependency in self.reads(document):
                visit(dependency)
            path.pop()
            ordered.append(document)

        visit(output)
        return ordered

    @property
    def is_multi(self) -> bool:
        return len(self.documents) > 1

    def to_yaml(self, documents: Iterable[RecipeDocument] | None = None) -> str:
        """Canonical multi-document YAML (mergekit-multi's format) of `documents` (default: all)."""
        return SEPARATOR.join(document.recipe.to_yaml() for document in documents or self.documents)

    def sha256(self, documents: Iterable[RecipeDocument] | None = None) -> str:
        """Content hash over the documents' own hashes, in order; one document hashes as its recipe."""
        chosen = list(documents or self.documents)
        if len(chosen) == 1:
            return chosen[0].recipe.sha256()
        return hashlib.sha256("\n".join(document.recipe.sha256() for document in chosen).encode()).hexdigest()


def parse_recipe_set(documents: list[Any], source: str) -> RecipeSet:
    """Validate each document as a recipe, then the set: names unique, at most one unnamed document, no
    document reading itself. Empty documents (a trailing `---`) are ignored."""
    present = [(number, data) for number, data in enumerate(documents, start=1) if data is not None]
    if not present:
        return RecipeSet(source, (RecipeDocument(1, parse_recipe(None, source)),))
    if len(present) == 1:
        return RecipeSet(source, (RecipeDocument(present[0][0], parse_recipe(present[0][1], source)),))
    parsed: list[RecipeDocument] = []
    for number, data in present:
        if not isinstance(data, dict):
            raise RecipeError(
                f"{source}: document {number}: a recipe must be a YAML mapping (key: value lines), but it holds "
                f"{describe_value(data)}"
            )
        name = data.get("name")
        where = f"{source}: document {number}" + (f" ({name!r})" if isinstance(name, str) else "")
        parsed.append(RecipeDocument(number, parse_recipe(data, where)))
    recipe_set = RecipeSet(source, tuple(parsed))
    seen: dict[str, RecipeDocument] = {}
    for document in parsed:
        if document.name is None:
            continue
        if document.name in seen:
            raise RecipeError(
                f"{source}: documents {seen[document.name].number} and {document.number} are both named "
                f"{document.name!r}; each name must be unique"
            )
        seen[document.name] = document
    unnamed = [document for document in parsed if document.name is None]
    if len(unnamed) > 1:
        numbers = " and ".join(str(document.number) for document in unnamed)
        raise RecipeError(
            f"{source}: documents {numbers} have no `name:`; only the final merge may go unnamed (give the others a "
            "name, which later documents use as a model)"
        )
    for document in parsed:
        if document.name is not None and document.name in document.recipe.model_names():
            raise RecipeError(f"{source}: {document.label} uses its own name as a model")
    return recipe_set


def load_recipe_set(path: Path | str) -> RecipeSet:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe: {error.strerror}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    return parse_recipe_set(documents, str(path))


def load_recipe(path: Path | str) -> Recipe:
    """The one recipe of a file; a multi-document file is refused here (it needs `evomerge merge`)."""
    recipe_set = load_recipe_set(path)
    if recipe_set.is_multi:
        raise RecipeError(
            f"{path}: holds {len(recipe_set.documents)} recipes (a multi-document file, as mergekit-multi runs); "
            "one recipe is expected here"
        )
    return recipe_set.documents[0].recipe
