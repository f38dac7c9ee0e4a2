"""What `evomerge search` and `serve` check before they import the flow: the config file and the lm-eval
tasks it names. The flow's imports (torch's model code, Prefect, MLflow) take seconds; a misspelt task or a
gene out of range should be reported in the time the config takes to read, not after them."""

from __future__ import annotations

from genetics.search_config import SearchConfig, load_search_config
from tasks.errors import EvaluationError
from tasks.evaluate import DEFAULT_INCLUDE_PATH, available_tasks, unknown_tasks_message


def check_search_config(config_path: str) -> SearchConfig:
    """The validated config, or the error naming the file and key to fix."""
    config = load_search_config(config_path)
    check_tasks_exist(config, config_path)
    return config


def check_tasks_exist(config: SearchConfig, config_path: str) -> None:
    """Every lm-eval task the config names, search and held-out, is defined: a misspelt held-out task would
    otherwise surface only after the whole search, when the final report scores the test splits."""
    known = available_tasks()
    named = [*config.evaluation.tasks, *(config.evaluation.held_out_tasks or [])]
    unknown = [task for task in named if task not in known]
    if unknown:
        raise EvaluationError(
            f"{config_path}: evaluation: {unknown_tasks_message(unknown, known, DEFAULT_INCLUDE_PATH)}"
        )
