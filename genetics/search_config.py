"""The search YAML: what to breed from, which knobs to search, how to score, how long to look.

Validated up front (pydantic, unknown keys are errors) so that a typo is reported with its file and key
before any model is downloaded or merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genetics.genome import GeneSpec, GenomeSpec
from tasks.errors import RecipeError
from tasks.merge.recipe import validation_message


class EvaluationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)
    metric: str = "exact_match"


class FitnessSettings(BaseModel):
    """Fitness is one number per candidate: the mean (or the weakest) of the tasks' `metric`."""

    model_config = ConfigDict(extra="forbid")
    aggregate: Literal["mean", "min"] = "mean"


class GeneticAlgorithmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["ga"] = "ga"
    population_size: int = Field(default=12, ge=2)
    generations: int = Field(default=8, ge=1)
    crossover_probability: float = Field(default=0.7, ge=0, le=1)
    mutation_probability: float = Field(default=0.4, ge=0, le=1)
    gene_mutation_probability: float = Field(default=0.5, ge=0, le=1)
    tournament_size: int = Field(default=3, ge=1)
    elite: int = Field(default=2, ge=0)
    crossover_eta: float = Field(default=10.0, gt=0)
    mutation_eta: float = Field(default=10.0, gt=0)
    hall_of_fame: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _elite_fits(self) -> GeneticAlgorithmSettings:
        if self.elite >= self.population_size:
            raise ValueError(f"elite ({self.elite}) must be smaller than population_size ({self.population_size})")
        return self


class BudgetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_evaluations: int | None = Field(default=None, ge=1)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    recipe: dict[str, Any]
    genes: list[GeneSpec] = Field(min_length=1)
    evaluation: EvaluationSettings
    fitness: FitnessSettings = FitnessSettings()
    algorithm: GeneticAlgorithmSettings = GeneticAlgorithmSettings()
    budget: BudgetSettings = BudgetSettings()
    output_dir: str | None = None

    def genome(self) -> GenomeSpec:
        return GenomeSpec(self.recipe, tuple(self.genes))

    def parent_models(self) -> list[str]:
        """The models whose own scores the report shows beside the child: every model the recipe names."""
        names = [self.recipe["base_model"]] if self.recipe.get("base_model") else []
        names += [entry["model"] for entry in self.recipe.get("models") or [] if entry["model"] not in names]
        return names


def load_search_config(path: Path | str) -> SearchConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RecipeError(f"{path}: cannot read search config: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a search config must be a YAML mapping")
    try:
        config = SearchConfig.model_validate(data)
    except ValidationError as error:
        raise RecipeError(validation_message(str(path), error)) from None
    try:
        config.genome()
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None
    return config
