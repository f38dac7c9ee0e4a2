"""Genes in [0, 1] <-> a plain mergekit recipe.

A search declares a recipe template (the fixed part: method, base model, parents) and genes that fill in
parameters of it. Each gene is a float in [0, 1] mapped linearly onto its declared bounds; a gene with
`layer_groups: K` is K floats written as a mergekit gradient list, which mergekit (and we) interpolate
across the layers. `decode` is pure and its output is an ordinary recipe, so every candidate can be merged
again by `evomerge merge` or by mergekit itself.

Decoded values are rounded to `DECIMALS` places: a candidate is its recipe, and rounding makes equal
recipes (and so cache keys) out of genomes that differ only by noise below any meaningful coefficient.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.errors import RecipeError
from tasks.merge.recipe import Recipe, parse_recipe

if TYPE_CHECKING:
    from tasks.merge.recipe_set import RecipeSet

DECIMALS = 4


METHOD_GENE = "merge_method"
"""The one categorical gene: which merge method the candidate uses, out of `choices`."""


class GeneSpec(BaseModel):
    """A searched recipe parameter: `parameter` of `model` (or of the whole recipe when `model` is unset),
    a number in [low, high]; or, for `parameter: merge_method`, one of `choices`. In a multi-document
    recipe, `document` names the document it sets (default: the output document)."""

    model_config = ConfigDict(extra="forbid")
    parameter: str
    model: str | None = None
    document: str | None = None
    low: float | None = None
    high: float | None = None
    choices: list[str] | None = None
    layer_groups: int = Field(default=1, ge=1, le=64)

    @model_validator(mode="after")
    def _numeric_or_categorical(self) -> GeneSpec:
        if self.parameter == METHOD_GENE:
            if not self.choices or len(self.choices) < 2:
                raise ValueError("a merge_method gene needs `choices`: at least two merge methods")
            if self.model is not None or self.layer_groups != 1 or self.low is not None or self.high is not None:
                raise ValueError("a merge_method gene takes only `choices` (no model, low, high or layer_groups)")
            from tasks.merge.registry import get_method

            for choice in self.choices:
                try:
                    get_method(choice)
                except KeyError as error:
                    raise ValueError(str(error).strip("'\"")) from None
            return self
        if self.choices is not None:
            raise ValueError(f"`choices` is only for the {METHOD_GENE} gene; {self.parameter} takes low and high")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.parameter}: a numeric gene needs `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def value(self, gene: float) -> float | str:
        """The recipe value of one gene in [0, 1] (clamped): a rounded number, or the chosen method."""
        unit = min(1.0, max(0.0, float(gene)))
        if self.choices is not None:
            return self.choices[min(int(unit * len(self.choices)), len(self.choices) - 1)]
        assert self.low is not None and self.high is not None
        return round(self.low + unit * (self.high - self.low), DECIMALS)

    def names(self) -> list[str]:
        stem = self.parameter if self.model is None else f"{self.parameter}/{self.model}"
        stem = stem if self.document is None else f"{self.document}/{stem}"
        return [stem] if self.layer_groups == 1 else [f"{stem}/g{i}" for i in range(self.layer_groups)]


Template = dict[str, Any] | list[dict[str, Any]]
"""One recipe, or the documents of a multi-document recipe (mergekit-multi's format)."""


@dataclass(frozen=True)
class GenomeSpec:
    template: Template
    genes: tuple[GeneSpec, ...]

    def __post_init__(self) -> None:
        for index, gene in enumerate(self.genes):
            models = [entry["model"] for entry in self._document_of(index, gene).get("models") or []]
            if gene.model is not None and gene.model not in models:
                raise RecipeError(
                    f"genes.{index}.model: {gene.model!r} is not one of the recipe's models ({', '.join(models)})"
                )
        seen = [name for gene in self.genes for name in gene.names()]
        duplicates = {name for name in seen if seen.count(name) > 1}
        if duplicates:
            raise RecipeError(f"genes: the same parameter is searched twice: {', '.join(sorted(duplicates))}")
        self._check_ranges()

    @property
    def documents(self) -> list[dict[str, Any]]:
        return self.template if isinstance(self.template, list) else [self.template]

    def _document_index(self, index: int, gene: GeneSpec) -> int:
        """Which document gene `index` sets: the one it names, else the output (the unnamed one, else the last)."""
        documents = self.documents
        if gene.document is None:
            unnamed = [number for number, document in enumerate(documents) if not document.get("name")]
            return unnamed[0] if unnamed else len(documents) - 1
        for number, document in enumerate(documents):
            if document.get("name") == gene.document:
                return number
        names = ", ".join(str(document.get("name")) for document in documents if document.get("name")) or "none"
        raise RecipeError(f"genes.{index}.document: {gene.document!r} is not a document of the recipe ({names})")

    def _document_of(self, index: int, gene: GeneSpec) -> dict[str, Any]:
        return self.documents[self._document_index(index, gene)]

    def _check_ranges(self) -> None:
        """Each numeric gene's [low, high] inside its parameter's range, for every method it may be used with:
        out of it, every candidate drawn there fails (a density gene up to 1.5 failed 16 of 81 candidates).
        The range is an interval, so its two ends, as decoded, are all there is to check."""
        from tasks.merge.registry import recipe_method

        for index, gene in enumerate(self.genes):
            if gene.choices is not None:
                continue
            document = self._document_index(index, gene)
            method_gene = next(
                (
                    other
                    for number, other in enumerate(self.genes)
                    if other.parameter == METHOD_GENE and self._document_index(number, other) == document
                ),
                None,
            )
            template = self.documents[document]
            names = method_gene.choices if method_gene and method_gene.choices else [template.get(METHOD_GENE)]
            if not all(isinstance(name, str) for name in names):
                continue  # no merge_method at all: decoding says so, with the recipe's own message
            methods = [recipe_method(name) for name in names]
            specs = [(method, method.parameter(gene.parameter)) for method in methods]
            taken = [(method, spec) for method, spec in specs if spec is not None]
            if not taken:
                known = sorted({spec.name for method in methods for spec in method.parameters})
                raise RecipeError(
                    f"genes.{index}.parameter: {gene.parameter!r} is not a parameter of merge_method "
                    f"{' or '.join(method.name for method in methods)} (known: {', '.join(known)})"
                )
            for method, spec in taken:
                for end, unit in (("low", 0.0), ("high", 1.0)):
                    problem = spec.check(gene.value(unit))  # as decoded: rounded to DECIMALS
                    if problem:
                        where = f"genes.{index}.{end}: {gene.parameter}"
                        raise RecipeError(f"{where}: {problem} (merge_method {method.name})")

    def method_settings(self) -> list[list[float]]:
        """One genome per merge method the search may use (the method gene, if any, at each of its choices;
        every other gene mid-range): what a check of the whole recipe before the search needs to decode."""
        choices = next((len(gene.choices) for gene in self.genes if gene.choices), 1)
        settings = []
        for choice in range(choices):
            genome: list[float] = []
            for gene in self.genes:
                unit = (choice + 0.5) / choices if gene.choices else 0.5
                genome.extend([unit] * gene.layer_groups)
            settings.append(genome)
        return settings

    @property
    def size(self) -> int:
        return sum(gene.layer_groups for gene in self.genes)

    def names(self) -> list[str]:
        return [name for gene in self.genes for name in gene.names()]

    def decode(self, genes: Sequence[float]) -> Recipe:
        """The recipe of a one-document genome (`decode_documents` for a multi-document one)."""
        if isinstance(self.template, list):
            raise RecipeError("a multi-document recipe decodes with decode_documents, not decode")
        return parse_recipe(self._filled(genes)[0], "decoded genome")

    def decode_documents(self, genes: Sequence[float]) -> RecipeSet:
        """Every document of the template with the genes filled in: a file `evomerge merge` and
        `mergekit-multi` run as they are."""
        from tasks.merge.recipe_set import parse_recipe_set

        return parse_recipe_set(self._filled(genes), "decoded genome")

    def _filled(self, genes: Sequence[float]) -> list[dict[str, Any]]:
        if len(genes) != self.size:
            raise ValueError(f"expected {self.size} genes, got {len(genes)}")
        documents = copy.deepcopy(self.documents)
        searched_methods: set[int] = set()
        position = 0
        for index, gene in enumerate(self.genes):
            values = [gene.value(g) for g in genes[position : position + gene.layer_groups]]
            position += gene.layer_groups
            number = self._document_index(index, gene)
            if gene.parameter == METHOD_GENE:
                documents[number][METHOD_GENE] = values[0]
                searched_methods.add(number)
                continue
            setting = values[0] if gene.layer_groups == 1 else values
            _parameters_of(documents[number], gene.model)[gene.parameter] = setting
        for number in searched_methods:
            _keep_parameters_of_method(documents[number])
        return documents

    def encode(self, recipe: Recipe) -> list[float]:
        """Genes of a recipe whose searched parameters are plain numbers or gradients of the right length."""
        if isinstance(self.template, list):
            raise RecipeError("encode takes the recipe of a one-document genome")
        data = recipe.canonical_dict()
        genes: list[float] = []
        for gene in self.genes:
            if gene.choices is not None:
                genes.append((gene.choices.index(data[METHOD_GENE]) + 0.5) / len(gene.choices))
                continue
            assert gene.low is not None and gene.high is not None
            setting = _parameters_of(data, gene.model).get(gene.parameter)
            if setting is None and not _method_takes(data[METHOD_GENE], gene.parameter):
                genes.extend([0.5] * gene.layer_groups)  # unused by this method: any value decodes the same
                continue
            values = setting if isinstance(setting, list) else [setting] * gene.layer_groups
            if len(values) != gene.layer_groups or not all(isinstance(v, int | float) for v in values):
                raise RecipeError(f"recipe has no value of the expected form for gene {gene.names()[0]}")
            genes.extend((float(v) - gene.low) / (gene.high - gene.low) for v in values)
        return genes


def _parameters_of(recipe: dict[str, Any], model: str | None) -> dict[str, Any]:
    if model is None:
        params = recipe.setdefault("parameters", {})
    else:
        entry = next(e for e in recipe["models"] if e["model"] == model)
        params = entry.setdefault("parameters", {})
    assert isinstance(params, dict)
    return params


def _method_takes(method: str, parameter: str) -> bool:
    from tasks.merge.registry import get_method

    return get_method(method).parameter(parameter) is not None


def _keep_parameters_of_method(recipe: dict[str, Any]) -> None:
    """With the method itself searched, each candidate keeps only the parameters its method takes (a
    task_arithmetic child has no use for the density genes its ties siblings carry)."""
    from tasks.merge.registry import get_method

    accepted = {spec.name for spec in get_method(recipe[METHOD_GENE]).parameters}
    holders = [recipe, *(recipe.get("models") or [])]
    for holder in holders:
        parameters = holder.get("parameters")
        if isinstance(parameters, dict):
            for name in [name for name in parameters if name not in accepted]:
                del parameters[name]
            if not parameters:
                del holder["parameters"]
