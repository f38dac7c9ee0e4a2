"""lm-eval's own built-in tasks, end to end and offline: `gsm8k` (generate_until, two regex filters) and
`arc_easy` (multiple_choice), from their YAML in lm-eval's registry, on local data in their datasets'
format put into a datasets cache (`evomerge datasets prefill`), score in a search exactly as the `lm_eval`
CLI scores the saved winner on the same cache."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import EVOMERGE, ROOT, ZOO_TWO_EXPERTS, run_lm_eval, search_env, write_search

from tasks.evaluate import flatten_results

pytestmark = pytest.mark.integration

DATASETS = ROOT / "configs" / "datasets"
PREFILLS = [
    ("openai/gsm8k", "main", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}),
    (
        "allenai/ai2_arc",
        "ARC-Easy",
        {split: f"ai2_arc-ARC-Easy/{split}.jsonl" for split in ("train", "validation", "test")},
    ),
]
FEWSHOT = 2
GEN_KWARGS = {"max_gen_toks": 8}


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("hf-datasets")
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    for repo, name, splits in PREFILLS:
        command = [*EVOMERGE, "datasets", "prefill", repo, "--name", name]
        for split, file_name in splits.items():
            command += ["--split", f"{split}={DATASETS / file_name}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert f"{repo} ({name})" in done.stdout
    return env


@pytest.fixture(scope="module")
def search(offline_cache: dict[str, str], zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("builtin")
    entry = {"num_fewshot": FEWSHOT, "held_out": ""}
    config = {
        "name": "builtin",
        "seed": 1,
        "recipe": ZOO_TWO_EXPERTS,
        "genes": [{"parameter": "weight", "model": m, "low": 0.0, "high": 1.5} for m in ("zoo:add", "zoo:sort")],
        "evaluation": {
            "tasks": [
                {"task": "gsm8k", "metric": "exact_match,flexible-extract", "gen_kwargs": GEN_KWARGS, **entry},
                {"task": "arc_easy", "metric": "acc", **entry},
            ]
        },
        "algorithm": {"name": "random", "population_size": 3, "generations": 1},
    }
    write_search(work, config)
    env = {**search_env(work, zoo_dir), "HF_DATASETS_CACHE": offline_cache["HF_DATASETS_CACHE"]}
    result = subprocess.run(
        [*EVOMERGE, "search", str(work / "search.yaml"), "--out", str(work / "out")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "MLflow call failed" not in result.stdout + result.stderr
    out = work / "out"
    records = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    return {"summary": json.loads((out / "summary.json").read_text()), "records": records, "env": env}


def test_gsm8k_and_arc_easy_score_as_the_lm_eval_cli_scores_them(search: dict[str, Any], tmp_path: Path) -> None:
    summary = search["summary"]
    winner = next(r for r in search["records"] if r["candidate_id"] == summary["best"]["candidate_id"])
    options = ["--num_fewshot", str(FEWSHOT), "--gen_kwargs", ",".join(f"{k}={v}" for k, v in GEN_KWARGS.items())]
    env = {**search["env"], "OMP_NUM_THREADS": "1"}  # one thread, as the search
    output, _ = run_lm_eval(summary["best"]["model_dir"], ["gsm8k", "arc_easy"], tmp_path, *options, env=env)
    cli = flatten_results(output["results"], ("gsm8k", "arc_easy"))
    # every metric of every filter, value for value, on the same rows of the same cache
    assert winner["scores"]["gsm8k"] == cli["gsm8k"]
    assert set(cli["gsm8k"]) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert winner["scores"]["arc_easy"] == cli["arc_easy"]
    assert set(cli["arc_easy"]) == {"acc", "acc_norm"}
    assert output["n-samples"]["gsm8k"]["effective"] == 60 and output["n-samples"]["arc_easy"]["effective"] == 60
    assert output["configs"]["gsm8k"]["dataset_path"] == "openai/gsm8k"  # the registry's own YAML
    assert summary["best"]["scores"] == {
        "gsm8k": cli["gsm8k"]["exact_match,flexible-extract"],
        "arc_easy": cli["arc_easy"]["acc"],
    }


def test_prefill_is_idempotent_and_refuses_a_missing_file(offline_cache: dict[str, str], tmp_path: Path) -> None:
    from tasks.dataset_cache import prefill_dataset
    from tasks.errors import EvaluationError

    cache = Path(offline_cache["HF_DATASETS_CACHE"])
    files = {"train": DATASETS / "gsm8k/train.jsonl", "test": DATASETS / "gsm8k/test.jsonl"}
    again = prefill_dataset("openai/gsm8k", "main", files, cache)
    assert again.rows == {"train": 20, "test": 60}
    assert len(list((cache / "openai___gsm8k" / "main" / "0.0.0").iterdir())) == 1
    with pytest.raises(EvaluationError, match="no such file"):
        prefill_dataset("openai/gsm8k", "main", {"test": tmp_path / "missing.jsonl"}, cache)
