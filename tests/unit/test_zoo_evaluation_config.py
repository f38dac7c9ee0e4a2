"""EvaluationConfig's cache key and the flattening of lm-eval results (no lm-eval run needed)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tasks.errors import EvaluationError
from tasks.evaluate import DEFAULT_INCLUDE_PATH, EvaluationConfig, flatten_results, task_files_digest


@pytest.fixture
def task_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    shutil.copytree(DEFAULT_INCLUDE_PATH, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_default_include_path_is_the_repo_task_folder() -> None:
    assert Path(__file__).resolve().parents[2] / "configs" / "lm_eval_tasks" == DEFAULT_INCLUDE_PATH
    assert (DEFAULT_INCLUDE_PATH / "evomerge_add.yaml").is_file()


def test_config_normalises_tasks_and_path() -> None:
    config = EvaluationConfig(tasks=["evomerge_add"], include_path=str(DEFAULT_INCLUDE_PATH))  # type: ignore[arg-type]
    assert config.tasks == ("evomerge_add",)
    assert config.include_path == DEFAULT_INCLUDE_PATH
    assert (config.limit, config.batch_size, config.device) == (None, 256, "cpu")
    assert hash(config) == hash(EvaluationConfig(tasks=("evomerge_add",)))
    assert EvaluationConfig(tasks="evomerge_add").tasks == ("evomerge_add",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"tasks": ()}, {"tasks": ("evomerge_add",), "limit": 0}, {"tasks": ("x",), "batch_size": 0}]
)
def test_invalid_configs_raise_evaluation_error(kwargs: dict) -> None:
    with pytest.raises(EvaluationError):
        EvaluationConfig(**kwargs)


def test_key_is_the_sha256_of_fields_and_task_file_contents(task_folder: Path) -> None:
    config = EvaluationConfig(tasks=("evomerge_add", "evomerge_sort"), include_path=task_folder, limit=50)
    files = task_files_digest(task_folder)
    assert "evomerge_add.yaml" in files and "data/evomerge_add.jsonl" in files
    assert "_evomerge_template_yaml" in files and "dataset_loader.py" in files
    data = (task_folder / "data" / "evomerge_add.jsonl").read_bytes()
    assert files["data/evomerge_add.jsonl"] == hashlib.sha256(data).hexdigest()
    payload = {"tasks": ["evomerge_add", "evomerge_sort"], "limit": 50, "batch_size": 256, "device": "cpu"}
    expected = hashlib.sha256(json.dumps({**payload, "task_files": files}, sort_keys=True).encode()).hexdigest()
    assert config.sha256() == expected


def test_key_ignores_where_the_task_folder_is_but_not_what_it_holds(task_folder: Path, tmp_path: Path) -> None:
    config = EvaluationConfig(tasks=("evomerge_add",), include_path=task_folder)
    assert config.sha256() == EvaluationConfig(tasks=("evomerge_add",)).sha256()
    moved = shutil.copytree(task_folder, tmp_path / "elsewhere")
    assert EvaluationConfig(tasks=("evomerge_add",), include_path=moved).sha256() == config.sha256()
    (task_folder / "__pycache__").mkdir(exist_ok=True)
    (task_folder / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    assert config.sha256() == EvaluationConfig(tasks=("evomerge_add",)).sha256()
    data = task_folder / "data" / "evomerge_sort.jsonl"
    data.write_text(data.read_text().replace('"answer": "', '"answer": "x', 1))
    assert config.sha256() != EvaluationConfig(tasks=("evomerge_add",)).sha256()


def test_key_changes_with_every_field() -> None:
    base = EvaluationConfig(tasks=("evomerge_add",))
    variants = [
        EvaluationConfig(tasks=("evomerge_sort",)),
        EvaluationConfig(tasks=("evomerge_add", "evomerge_sort")),
        EvaluationConfig(tasks=("evomerge_add",), limit=10),
        EvaluationConfig(tasks=("evomerge_add",), batch_size=32),
        EvaluationConfig(tasks=("evomerge_add",), device="cuda"),
    ]
    keys = {base.sha256(), *(variant.sha256() for variant in variants)}
    assert len(keys) == 1 + len(variants)
    assert len(base.sha256()) == 64


def test_missing_task_folder_raises() -> None:
    with pytest.raises(EvaluationError, match="not found"):
        EvaluationConfig(tasks=("evomerge_add",), include_path=Path("/nonexistent/tasks")).sha256()


def test_flatten_results_strips_no_filter_suffix_and_stderr() -> None:
    results = {
        "evomerge_add": {
            "alias": "evomerge_add",
            "exact_match,none": 0.915,
            "exact_match_stderr,none": "N/A",
        },
        "evomerge_sort": {
            "alias": "evomerge_sort",
            "exact_match,none": 1,
            "exact_match_stderr,none": 0.0,
            "exact_match,strict": 0.5,
        },
        "not_requested": {"exact_match,none": 0.1},
    }
    scores = flatten_results(results, ("evomerge_add", "evomerge_sort"))
    assert scores == {
        "evomerge_add": {"exact_match": 0.915},
        "evomerge_sort": {"exact_match": 1.0, "exact_match,strict": 0.5},
    }
    assert type(scores["evomerge_sort"]["exact_match"]) is float
