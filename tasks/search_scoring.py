"""How a search scores its candidates, from its config: the evaluation (search tasks, then the guard's, each
with its own settings), the fitness policy and the guard (each task's direction as lm-eval gives it), and
the test split of each task for the held-out report. Pure: no Prefect, no MLflow."""

from __future__ import annotations

from pathlib import Path

from genetics.search_config import SearchConfig, TaskEntry
from tasks.evaluate import EvaluationConfig, Evaluator, TaskOptions
from tasks.select import FitnessPolicy, GuardPolicy, Objective
from tasks.task_sources import REPO_TASKS, TaskSources, registry_names


def task_options(entry: TaskEntry, *, with_limit: bool = True) -> TaskOptions:
    """An entry's lm-eval settings (the held-out split is scored whole: no limit)."""
    gen_kwargs = tuple(sorted((entry.gen_kwargs or {}).items()))
    return TaskOptions(entry.limit if with_limit else None, entry.num_fewshot, gen_kwargs)


def search_evaluation(config: SearchConfig, config_dir: Path) -> EvaluationConfig:
    """What every candidate is scored on: the search tasks, then the guard's, with their own settings."""
    entries = [*config.evaluation.tasks, *(config.guard.tasks if config.guard else [])]
    options = tuple(
        (entry.task, task_options(entry))
        for entry in entries
        if entry.limit or entry.num_fewshot is not None or entry.gen_kwargs
    )
    return EvaluationConfig(
        tasks=tuple(entry.task for entry in entries),
        extra_include_paths=tuple(config.evaluation.include_paths(config_dir)),
        limit=config.evaluation.limit,
        options=options,
        batch_size=config.evaluation.batch_size,
    )


def fitness_policies(config: SearchConfig, evaluator: Evaluator) -> tuple[FitnessPolicy, GuardPolicy | None]:
    """The fitness and the guard, each task's direction as lm-eval's `higher_is_better` gives it."""

    def objective(entry: TaskEntry) -> Objective:
        metric = config.evaluation.metric_of(entry)
        return Objective(entry.task, metric, entry.weight, evaluator.higher_is_better(entry.task, metric))

    policy = FitnessPolicy(tuple(objective(e) for e in config.evaluation.tasks), config.fitness.aggregate)
    if config.guard is None:
        return policy, None
    guard = GuardPolicy(tuple(objective(e) for e in config.guard.tasks), config.guard.max_drop, config.guard.reference)
    return policy, guard


def held_out_tasks(config: SearchConfig, config_dir: Path) -> dict[str, str]:
    """Search task -> its test split: an entry's `held_out` ("" for none), else `held_out_tasks`, else
    `<task>_test` where a task folder or lm-eval's registry defines one."""
    configured = config.evaluation.held_out_tasks
    sources = TaskSources((REPO_TASKS, *config.evaluation.include_paths(config_dir)))
    known: set[str] | None = None
    chosen = {}
    for index, entry in enumerate(config.evaluation.tasks):
        if entry.held_out is not None:
            if entry.held_out:
                chosen[entry.task] = entry.held_out
            continue
        if configured is not None:
            if configured:
                chosen[entry.task] = configured[index]
            continue
        if known is None:
            known = set(sources.local_manager().task_index)
        name = f"{entry.task}_test"
        if name in known or (entry.task not in known and name in registry_names()):
            chosen[entry.task] = name
    return chosen
