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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.errors import RecipeError
from tasks.merge.recipe import Recipe, parse_recipe

DECIMALS = 4


class GeneSpec(BaseModel):
    """A searched recipe parameter: `parameter` of `model` (or of the whole recipe when `model` is unset)."""

    model_config = ConfigDict(extra="forbid")
    parameter: str
    model: str | None = None
    low: float
    high: float
    layer_groups: int = Field(default=1, ge=1, le=64)

    @model_validator(mode="after")
    def _ordered(self) -> GeneSpec:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def names(self) -> list[str]:
        stem = self.parameter if self.model is None else f"{self.parameter}/{self.model}"
        return [stem] if self.layer_groups == 1 else [f"{stem}/g{i}" for i in range(self.layer_groups)]


@dataclass(frozen=True)
class GenomeSpec:
    template: dict[str, Any]
    genes: tuple[GeneSpec, ...]

    def __post_init__(self) -> None:
        models = [entry["model"] for entry in self.template.get("models") or []]
        for index, gene in enumerate(self.genes):
            if gene.model is not None and gene.model not in models:
                raise RecipeError(
                    f"genes.{index}.model: {gene.model!r} is not one of the recipe's models ({', '.join(models)})"
                )
        seen = [name for gene in self.genes for name in gene.names()]
        duplicates = {name for name in seen if seen.count(name) > 1}
        if duplicates:
            raise RecipeError(f"genes: the same parameter is searched twice: {', '.join(sorted(duplicates))}")

    @property
    def size(self) -> int:
        return sum(gene.layer_groups for gene in self.genes)

    def names(self) -> list[str]:
        return [name for gene in self.genes for name in gene.names()]

    def decode(self, genes: Sequence[float]) -> Recipe:
        if len(genes) != self.size:
            raise ValueError(f"expected {self.size} genes, got {len(genes)}")
        recipe = copy.deepcopy(self.template)
        position = 0
        for gene in self.genes:
            values = [
                round(gene.low + min(1.0, max(0.0, float(g))) * (gene.high - gene.low), DECIMALS)
                for g in genes[position : position + gene.layer_groups]
            ]
            position += gene.layer_groups
            setting: float | list[float] = values[0] if gene.layer_groups == 1 else values
            _parameters_of(recipe, gene.model)[gene.parameter] = setting
        return parse_recipe(recipe, "decoded genome")

    def encode(self, recipe: Recipe) -> list[float]:
        """Genes of a recipe whose searched parameters are plain numbers or gradients of the right length."""
        data = recipe.canonical_dict()
        genes: list[float] = []
        for gene in self.genes:
            setting = _parameters_of(data, gene.model).get(gene.parameter)
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
