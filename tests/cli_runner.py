"""`evomerge merge` and `evomerge search` run as a user runs them: their own process, from the repository
root, output captured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
EVOMERGE = [sys.executable, "-m", "flows.cli"]


def run_merge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVOMERGE, "merge", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


ZOO_TWO_EXPERTS = {
    "merge_method": "task_arithmetic",
    "base_model": "zoo:base",
    "models": [{"model": "zoo:add"}, {"model": "zoo:sort"}],
}
"""The recipe template the integration searches breed from: the zoo's add and sort experts on its base."""


def two_expert_search(
    name: str, seed: int, algorithm: dict[str, object], limit: int, held_out: bool = True, **extra: object
) -> dict[str, object]:
    """A small search config on ZOO_TWO_EXPERTS: one weight in [0, 1.5] per expert, both skills scored on
    their first `limit` prompts; `held_out=False` skips the held-out report; `extra` adds top-level keys."""
    evaluation: dict[str, object] = {"tasks": ["evomerge_add", "evomerge_sort"], "limit": limit}
    if not held_out:
        evaluation["held_out_tasks"] = []
    return {
        "name": name,
        "seed": seed,
        "recipe": ZOO_TWO_EXPERTS,
        "genes": [{"parameter": "weight", "model": m, "low": 0.0, "high": 1.5} for m in ("zoo:add", "zoo:sort")],
        "evaluation": evaluation,
        "algorithm": algorithm,
        **extra,
    }


def write_search(work: Path, config: dict[str, object]) -> None:
    """`work/search.yaml`: the config `search_command(work)` runs."""
    (work / "search.yaml").write_text(yaml.safe_dump(config))


def search_env(work: Path, zoo_dir: Path) -> dict[str, str]:
    """A search's own MLflow store and Prefect home under `work`, and the shared zoo."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "PREFECT_HOME": str(work / "prefect"),
        "EVOMERGE_ZOO_DIR": str(zoo_dir),
    }


def search_command(work: Path) -> list[str]:
    """`evomerge search work/search.yaml --out work/out`."""
    return [*EVOMERGE, "search", str(work / "search.yaml"), "--out", str(work / "out")]


def run_search(work: Path, zoo_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        search_command(work),
        capture_output=True,
        text=True,
        timeout=900,
        env=search_env(work, zoo_dir),
        cwd=ROOT,
    )


def run_lm_eval(
    model_dir: str | Path,
    tasks: list[str],
    workdir: Path,
    *options: str,
    env: dict[str, str] | None = None,
    timeout: int = 600,
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`lm_eval --model hf --model_args pretrained=MODEL_DIR --tasks ... OPTIONS` run in `workdir`, offline, as a
    user runs it; returns its results JSON (asserting it succeeded) and the finished process."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir}"]
    command += ["--tasks", ",".join(tasks), "--output_path", "results", *options]
    environment = {**os.environ, **(env or {}), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    completed = subprocess.run(
        command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (results_file,) = (workdir / "results").rglob("results_*.json")
    return json.loads(results_file.read_text()), completed
