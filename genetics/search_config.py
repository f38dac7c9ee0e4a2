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
from tasks.config_messages import describe_value, document_problem, validation_message
from tasks.errors import RecipeError


class TaskEntry(BaseModel):
    """One task the fitness is computed from: an lm-eval task, group or tag name, or a mapping with its own
    settings. `metric` is a key as lm-eval reports it (`acc`, `exact_match,strict-match`: metric, then
    filter); its direction comes from lm-eval's `higher_is_better`."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1)
    metric: str | None = None
    """Default: the evaluation's `metric`."""
    weight: float = Field(default=1.0, gt=0)
    limit: int | None = Field(default=None, ge=1)
    """Score only the first `limit` prompts (default: the evaluation's `limit`)."""
    held_out: str | None = None
    """The task's test split, scored only for the final report; default `<task>_test` where one exists;
    "" for none."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """As the lm_eval CLI's `--num_fewshot` (a task whose YAML says 0 stays zero-shot)."""
    gen_kwargs: dict[str, Any] | None = None
    """As the lm_eval CLI's `--gen_kwargs`, for generate_until tasks (e.g. {max_gen_toks: 16})."""

    @field_validator("metric")
    @classmethod
    def _plain_metric(cls, value: str | None) -> str | None:
        """`acc,none` is how lm-eval writes an unfiltered metric; the scores say `acc`."""
        if value is not None and value.endswith(",none"):
            return value.removesuffix(",none")
        return value


def _entries(value: Any) -> Any:
    """A bare task name is an entry with the defaults."""
    if not isinstance(value, list):
        return value
    for index, item in enumerate(value):
        if not isinstance(item, str | dict):
            raise ValueError(
                f"item {index}: expected a task name or a mapping with `task:`, got {describe_value(item)}"
            )
    return [{"task": item} if isinstance(item, str) else item for item in value]


class EvaluationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[TaskEntry] = Field(min_length=1)
    include_path: str | list[str] = Field(default_factory=list)
    """The user's lm-eval task folders (relative to the config file), searched after the repository's own
    tasks; any other name comes from lm-eval's built-in registry."""
    limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=256, ge=1)
    """Prompts generated together (see EvaluationConfig.batch_size); scores do not depend on it."""
    metric: str = "exact_match"
    """The metric of every task that names none."""
    held_out_tasks: list[str] | None = None
    """The test split of each task, in the same order (an entry's `held_out` says it per task)."""

    @field_validator("tasks", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        return _entries(value)

    @model_validator(mode="after")
    def _one_held_out_task_per_task(self) -> EvaluationSettings:
        names = self.task_names()
        if len(set(names)) != len(names):
            raise ValueError(f"a task is listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        if self.held_out_tasks and len(self.held_out_tasks) != len(self.tasks):
            raise ValueError(
                f"held_out_tasks names {len(self.held_out_tasks)} tasks for {len(self.tasks)} search tasks "
                "(one test split per task, in the same order)"
            )
        overlap = set(self.held_out_tasks or ()) | {entry.held_out for entry in self.tasks if entry.held_out}
        overlap &= set(names)
        if overlap:
            raise ValueError(f"held-out tasks must differ from the search tasks: {sorted(overlap)}")
        return self

    def task_names(self) -> list[str]:
        return [entry.task for entry in self.tasks]

    def metric_of(self, entry: TaskEntry) -> str:
        return entry.metric or self.metric.removesuffix(",none")

    def include_paths(self, config_dir: Path) -> list[Path]:
        paths = [self.include_path] if isinstance(self.include_path, str) else self.include_path
        return [(config_dir / path).resolve() for path in paths]


class GuardSettings(BaseModel):
    """A guard against forgetting: tasks the children must not lose (skills the reference already has). A
    candidate whose guard score falls more than `max_drop` below the reference's is infeasible: never the
    winner, ranked below every feasible candidate, kept in the log with its retention."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[TaskEntry] = Field(min_length=1)
    max_drop: float = Field(default=0.02, ge=0)
    """In the guard score's units (its tasks' oriented values, weighted mean)."""
    reference: str = "base"
    """`base` (the recipe's base model), a parent's name, or `best_parent` (the parent scoring highest on
    the guard tasks)."""
    objective: bool = False
    """NSGA-II only: take retention as one more objective instead of a constraint."""

    @field_validator("tasks", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        return _entries(value)


class FitnessSettings(BaseModel):
    """Fitness is one number per candidate: the weighted mean (or the weakest) of the tasks' values, each
    oriented so that higher is better (a lower-is-better metric counts negated)."""

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


class RunnerSettings(BaseModel):
    """Where candidates are scored: `local` (this process, one at a time, the next one merged ahead) or
    `dask` (one candidate per Dask worker at once, each worker with its own workbench). The runner never
    changes the search: the same seed gives the same candidates, scores and winner on either."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["local", "dask"] = "local"
    address: str | None = None
    """An existing scheduler (tcp://HOST:PORT); without it, a cluster of `workers` processes on this machine."""
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    """Dask threads per worker process; a worker scores one candidate at a time whatever this is, and torch
    takes the threads the model size asks for (EVOMERGE_TORCH_THREADS overrides)."""
    gpus_per_worker: int = Field(default=0, ge=0)
    """0: CPU workers. 1: one worker per GPU (each sees only its own, CUDA_VISIBLE_DEVICES), and a
    candidate goes only to a worker that offers a `GPU` resource."""


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    recipe: dict[str, Any]
    genes: list[GeneSpec] = Field(min_length=1)
    evaluation: EvaluationSettings
    guard: GuardSettings | None = None
    fitness: FitnessSettings = FitnessSettings()
    algorithm: AlgorithmSettings = GeneticAlgorithmSettings()
    budget: BudgetSettings = BudgetSettings()
    runner: RunnerSettings = RunnerSettings()
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


def guard_problem(config: SearchConfig) -> str | None:
    """What is wrong with the guard given the rest of the config (its reference, its tasks), if anything."""
    guard = config.guard
    if guard is None:
        return None
    parents = config.parent_models()
    if guard.reference == "base" and not config.recipe.get("base_model"):
        return "reference 'base' needs a recipe with a base_model (or name a parent)"
    if guard.reference not in {"base", "best_parent", *parents}:
        return f"reference {guard.reference!r} is not 'base', 'best_parent' or a parent ({', '.join(parents)})"
    if guard.objective and config.algorithm.name != "nsga2":
        return "objective: true needs algorithm nsga2 (the others rank on one number)"
    overlap = {entry.task for entry in guard.tasks} & set(config.evaluation.task_names())
    if overlap:
        return f"its tasks must differ from the search tasks: {sorted(overlap)}"
    return None


def load_search_config(path: Path | str) -> SearchConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RecipeError(f"{path}: cannot read search config: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    problem = document_problem(data, "search config", "name: my-search")
    if problem:
        raise RecipeError(f"{path}: {problem}")
    try:
        config = SearchConfig.model_validate(data)
    except ValidationError as error:
        message = validation_message(str(path), error, unknown_key="unknown key", tags=ALGORITHM_NAMES)
        raise RecipeError(message) from None
    problem = guard_problem(config)
    if problem:
        raise RecipeError(f"{path}: guard: {problem}")
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
