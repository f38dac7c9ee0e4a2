"""What `evomerge search` and `serve` check before they import the flow: the config file, the lm-eval tasks it
names and the metrics it asks of them. The flow's imports (torch's model code, Prefect, MLflow) take
seconds; a misspelt task or metric, or a gene out of range, should be reported in the time the config takes
to read, not after them. lm-eval's registry is read only for names no local task folder defines
(tasks/task_sources.py)."""

from __future__ import annotations

from pathlib import Path

from genetics.search_config import SearchConfig, TaskEntry, load_search_config
from tasks.errors import EvaluationError
from tasks.task_sources import REPO_TASKS, TaskSources, reported_metrics


def check_search_config(config_path: str) -> SearchConfig:
    """The validated config, or the error naming the file and key to fix."""
    config = load_search_config(config_path)
    check_tasks_exist(config, config_path)
    return config


def check_tasks_exist(config: SearchConfig, config_path: str) -> None:
    """Every lm-eval task the config names (search, held-out, guard) is defined, and reports the metric the
    config asks of it: a misspelt held-out task would otherwise surface only after the whole search, when
    the final report scores the test splits."""
    evaluation = config.evaluation
    try:
        sources = TaskSources((REPO_TASKS, *evaluation.include_paths(Path(config_path).resolve().parent)))
    except EvaluationError as error:
        raise EvaluationError(f"{config_path}: evaluation.include_path: {error}") from None
    entries: list[tuple[str, TaskEntry]] = [(f"evaluation.tasks[{i}]", e) for i, e in enumerate(evaluation.tasks)]
    if config.guard is not None:
        entries += [(f"guard.tasks[{i}]", e) for i, e in enumerate(config.guard.tasks)]
    held_out = [entry.held_out for _, entry in entries if entry.held_out]
    named = [*(entry.task for _, entry in entries), *(evaluation.held_out_tasks or []), *held_out]
    try:
        manager = sources.manager_for(list(dict.fromkeys(named)))
    except EvaluationError as error:
        raise EvaluationError(f"{config_path}: evaluation: {error}") from None
    for where, entry in entries:
        metric = evaluation.metric_of(entry)
        reported = reported_metrics(manager, entry.task)
        if reported is None or metric in reported:
            continue
        if not reported:
            raise EvaluationError(
                f"{config_path}: {where} ({entry.task}): a tag or a group without aggregate_metric_list reports "
                "no score of its own; name its tasks one by one, or a group that aggregates them"
            )
        raise EvaluationError(
            f"{config_path}: {where} ({entry.task}): metric {metric!r} is not one the task reports "
            f"(it reports: {', '.join(sorted(reported))}); set `metric:` on the entry"
        )
