"""The search YAML's evaluation section: a task is a name or a mapping with its own settings; include
folders are relative to the config file; held-out splits and guard settings are checked against the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from genetics.search_config import EvaluationSettings, load_search_config
from tasks.errors import RecipeError

DEMO = Path(__file__).parents[2] / "configs" / "searches" / "demo.yaml"


def _write(tmp_path: Path, change: dict[str, Any]) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    config.update(change)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_names_and_mappings_become_entries_with_defaults() -> None:
    settings = EvaluationSettings.model_validate(
        {
            "tasks": [
                "evomerge_add",
                {"task": "gsm8k", "metric": "exact_match,strict-match", "weight": 2, "limit": 50},
            ],
            "metric": "acc,none",
            "include_path": ["mine", "/abs/theirs"],
        }
    )
    add, gsm8k = settings.tasks
    assert (add.task, add.metric, add.weight, add.limit, add.held_out) == ("evomerge_add", None, 1.0, None, None)
    assert settings.metric_of(add) == "acc"  # lm-eval's unfiltered `acc,none` is the scores' `acc`
    assert settings.metric_of(gsm8k) == "exact_match,strict-match" and gsm8k.weight == 2.0 and gsm8k.limit == 50
    assert settings.include_paths(Path("/configs")) == [Path("/configs/mine"), Path("/abs/theirs")]
    assert EvaluationSettings.model_validate({"tasks": ["a"], "include_path": "one"}).include_paths(Path("/c")) == [
        Path("/c/one")
    ]


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"tasks": [{"task": "a", "weight": 0}]}, "evaluation.tasks.0.weight"),
        ({"tasks": [{"task": "a", "wieght": 1}]}, "evaluation.tasks.0.wieght: unknown key"),
        ({"tasks": [{"task": "a", "limit": 0}]}, "evaluation.tasks.0.limit"),
        ({"tasks": ["a", "a"]}, "a task is listed twice: ['a']"),
        ({"tasks": [{"task": "a", "held_out": "b"}, "b"]}, "held-out tasks must differ from the search tasks"),
    ],
)
def test_a_wrong_entry_names_its_key(tmp_path: Path, evaluation: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_search_config(_write(tmp_path, {"evaluation": evaluation}))


@pytest.mark.parametrize(
    ("guard", "extra", "message"),
    [
        ({"tasks": ["evomerge_copy"], "reference": "zoo:nobody"}, {}, "guard: reference 'zoo:nobody' is not"),
        ({"tasks": ["evomerge_copy"], "objective": True}, {}, "guard: objective: true needs algorithm nsga2"),
        ({"tasks": ["evomerge_add"]}, {}, "guard: its tasks must differ from the search tasks"),
        ({"tasks": ["evomerge_copy"], "max_drop": -0.1}, {}, "guard.max_drop"),
    ],
)
def test_a_wrong_guard_is_refused(tmp_path: Path, guard: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_search_config(_write(tmp_path, {"guard": guard, **extra}))


def test_a_guard_with_its_defaults(tmp_path: Path) -> None:
    config = load_search_config(_write(tmp_path, {"guard": {"tasks": ["evomerge_copy"]}}))
    assert config.guard is not None
    assert (config.guard.max_drop, config.guard.reference, config.guard.objective) == (0.02, "base", False)
    assert config.guard.tasks[0].task == "evomerge_copy"
