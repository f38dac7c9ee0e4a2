"""The evomerge tasks are ordinary lm-eval tasks: the `lm_eval` CLI runs them on a zoo model directory,
offline, from a working directory that is not the repository, and gets the zoo manifest's numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_runner import run_lm_eval

from tasks.evaluate import DEFAULT_INCLUDE_PATH
from tasks.zoo import read_manifest

pytestmark = pytest.mark.integration


def test_lm_eval_cli_scores_a_zoo_expert_like_the_manifest(zoo_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(zoo_dir)
    assert manifest is not None
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # Relative paths, resolved against a working directory that holds no task data: the task's loader
    # must find its JSONL beside its YAML, not beside the caller. Default model_args (batch size 1, BOS as
    # the tokenizer adds it) must agree with the Evaluator's batched in-memory scoring.
    output, completed = run_lm_eval(
        os.path.relpath(zoo_dir / "add", workdir),
        ["evomerge_add"],
        workdir,
        "--include_path",
        os.path.relpath(DEFAULT_INCLUDE_PATH, workdir),
        timeout=300,
    )
    results = output["results"]
    expected = manifest.models["add"].accuracy
    assert results["evomerge_add"]["exact_match,none"] == expected["add"] >= 0.8
    assert "evomerge_add" in completed.stdout and "exact_match" in completed.stdout
