"""The search YAML: what to breed from, which knobs to search, how to score, how long to look.

Validated up front (pydantic, unknown keys are errors) so that a typo is reported with its file and key
before any model is downloaded or merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genetics.genome import GeneSpec, GenomeSpec
from tasks.errors import RecipeError
from tasks.merge.recipe import validation_message


class EvaluationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=256, ge=1)
    """Prompts generated together (see EvaluationConfig.batch_size); scores do not depend on it."""
    metric: str = "exact_match"
    held_out_tasks: list[str] | None = None
    """The test split of each task, in the same order, scored only for the final report (parents and
    winner, with bootstrap 95 % intervals). Default: `<task>_test` where every task has one; [] for none."""

    @model_validator(mode="after")
    def _one_held_out_task_per_task(self) -> EvaluationSettings:
        if self.held_out_tasks and len(self.held_out_tasks) != len(self.tasks):
            raise ValueError(
                f"held_out_tasks names {len(self.held_out_tasks)} tasks for {len(self.tasks)} search tasks "
                "(one test split per task, in the same order)"
            )
        overlap = set(self.held_out_tasks or ()) & set(self.tasks)
        if overlap:
            raise ValueError(f"held_out_tasks must differ from the search tasks: {sorted(overlap)}")
        return self


class FitnessSettings(BaseModel):
    """Fitness is one number per candidate: the mean (or the weakest) of the tasks' `metric`."""

    model_config = ConfigDict(extra="forbid")
    aggregate: Literal["mean", "min"] = "mean"


class OperatorSettings(BaseModel):
    """Bounded variation (Deb's simulated binary crossover and polynomial mutation), shared by GA and NSGA-II."""

    model_config = ConfigDict(extra="forbid")
    crossover_probability: float = Field(default=0.7, ge=0, le=1)
    mutation_probability: float = Field(default=0.4, ge=0, le=1)
    gene_mutation_probability: float = Field(default=0.5, ge=0, le=1)
    crossover_eta: float = Field(default=10.0, gt=0)
    mutation_eta: float = Field(default=10.0, gt=0)


class GeneticAlgorithmSettings(OperatorSettings):
    name: Literal["ga"] = "ga"
    population_size: int = Field(default=12, ge=2)
    generations: int = Field(default=8, ge=1)
    tournament_size: int = Field(default=3, ge=1)
    elite: int = Field(default=2, ge=0)
    hall_of_fame: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _elite_fits(self) -> GeneticAlgorithmSettings:
        if self.elite >= self.population_size:
            raise ValueError(f"elite ({self.elite}) must be smaller than population_size ({self.population_size})")
        return self


class CmaEsSettings(BaseModel):
    """CMA-ES (Hansen & Ostermeier 2001) on `deap.cma.Strategy`, started at `centroid` in gene space."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["cma-es"] = "cma-es"
    population_size: int | None = Field(default=None, ge=2)
    """λ, candidates per generation; default DEAP's 4 + 3·ln(genes)."""
    generations: int = Field(default=8, ge=1)
    sigma: float = Field(default=0.25, gt=0, le=1)
    """Initial step size, in gene units (every gene spans [0, 1])."""
    centroid: float | list[float] = 0.5
    """Where the search starts: one value for every gene, or one per gene, each in [0, 1]."""

    @model_validator(mode="after")
    def _centroid_in_unit_box(self) -> CmaEsSettings:
        values = self.centroid if isinstance(self.centroid, list) else [self.centroid]
        if not values or any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"centroid must lie in [0, 1] (gene space), got {self.centroid}")
        return self


class Nsga2Settings(OperatorSettings):
    """NSGA-II (Deb et al. 2002): one objective per task, the Pareto front kept and reported."""

    name: Literal["nsga2"] = "nsga2"
    population_size: int = Field(default=12, ge=4)
    generations: int = Field(default=8, ge=1)
    crossover_probability: float = Field(default=0.9, ge=0, le=1)

    @model_validator(mode="after")
    def _multiple_of_four(self) -> Nsga2Settings:
        if self.population_size % 4:
            raise ValueError(
                f"population_size ({self.population_size}) must be a multiple of 4 (NSGA-II's paired tournament)"
            )
        return self


class RandomSearchSettings(BaseModel):
    """Uniform samples of the gene box: the baseline every other algorithm must beat."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["random"] = "random"
    population_size: int = Field(default=12, ge=1)
    """Candidates per generation (a generation is only a checkpoint and reporting unit here)."""
    generations: int = Field(default=8, ge=1)


AlgorithmSettings = Annotated[
    GeneticAlgorithmSettings | CmaEsSettings | Nsga2Settings | RandomSearchSettings, Field(discriminator="name")
]


ALGORITHM_NAMES = ("ga", "cma-es", "nsga2", "random")


class BudgetSettings(BaseModel):
    """When to stop, whichever comes first (besides the algorithm's own number of generations)."""

    model_config = ConfigDict(extra="forbid")
    max_evaluations: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    """Wall-clock limit of the search loop; a resumed search counts only its own time."""
    plateau_generations: int | None = Field(default=None, ge=1)
    """Stop when the best fitness has not risen by more than `plateau_delta` for this many generations."""
    plateau_delta: float = Field(default=0.0, ge=0)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    recipe: dict[str, Any]
    genes: list[GeneSpec] = Field(min_length=1)
    evaluation: EvaluationSettings
    fitness: FitnessSettings = FitnessSettings()
    algorithm: AlgorithmSettings = GeneticAlgorithmSettings()
    budget: BudgetSettings = BudgetSettings()
    output_dir: str | None = None
    registered_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]*$")
    """The MLflow Model Registry name the winner is registered under; default: the search's `name`;
    "" registers nothing."""

    def registry_name(self) -> str | None:
        name = self.name if self.registered_model is None else self.registered_model
        return name or None

    @field_validator("algorithm", mode="before")
    @classmethod
    def _ga_by_default(cls, value: Any) -> Any:
        """`algorithm:` without a `name` is the GA, as before other algorithms existed."""
        if isinstance(value, dict) and "name" not in value:
            return {"name": "ga", **value}
        return value

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
        message = validation_message(str(path), error, unknown_key="unknown key", tags=ALGORITHM_NAMES)
        raise RecipeError(message) from None
    try:
        genome = config.genome()
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None
    from tasks.merge.plan import check_recipe_alone  # torch: not for a config that fails above
    from tasks.merge.registry import recipe_method

    where = f"{path}: recipe"
    for setting in genome.method_settings():
        try:
            recipe = genome.decode(setting)
        except RecipeError as error:
            raise RecipeError(f"{path}: {error}") from None
        check_recipe_alone(recipe, recipe_method(recipe.merge_method, where), where)
    return config
