"""The scores a search records are lm-eval's own, for every output type.

One NSGA-II search on the zoo scores its candidates on four tasks, one per lm-eval output type
(generate_until, multiple_choice, loglikelihood, loglikelihood_rolling), with a metric per task, two of
them lower-is-better; the held-out report scores their test splits. The `lm_eval` CLI, run as a user runs
it on the winner's saved model directory, must compute the same value for every metric the search
recorded, and the same test-split values the report shows; `evomerge lineage` and `reproduce` must find
and rebuild that winner. The search's reuse layer (tasks/lm_eval_reuse.py) is on, so this also checks that
it changes no score of any type.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import EVOMERGE, ROOT, ZOO_TWO_EXPERTS, run_lm_eval, run_search, search_env, write_search

from tasks.evaluate import DEFAULT_INCLUDE_PATH, flatten_results
from tasks.merge.writer import model_dir_sha256

pytestmark = pytest.mark.integration

LIMIT = 40
TASKS: list[dict[str, Any]] = [
    {"task": "evomerge_add"},  # generate_until, exact_match (the default metric)
    {"task": "evomerge_add_choice", "metric": "acc"},  # multiple_choice
    {"task": "evomerge_add_logprob", "metric": "perplexity", "weight": 0.01},  # loglikelihood, lower is better
    {"task": "evomerge_sort_ppl", "metric": "bits_per_byte"},  # loglikelihood_rolling, lower is better
]
OUTPUT_TYPES = {
    "evomerge_add": "generate_until",
    "evomerge_add_choice": "multiple_choice",
    "evomerge_add_logprob": "loglikelihood",
    "evomerge_sort_ppl": "loglikelihood_rolling",
}


@pytest.fixture(scope="module")
def search(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("every-type")
    config = {
        "name": "every-type",
        "seed": 3,
        "recipe": ZOO_TWO_EXPERTS,
        "genes": [{"parameter": "weight", "model": m, "low": 0.0, "high": 1.5} for m in ("zoo:add", "zoo:sort")],
        "evaluation": {"tasks": TASKS, "limit": LIMIT},
        "algorithm": {"name": "nsga2", "population_size": 4, "generations": 2},
    }
    write_search(work, config)
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "MLflow call failed" not in result.stdout + result.stderr
    out = work / "out"
    records = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    return {
        "work": work,
        "env": search_env(work, zoo_dir),
        "summary": json.loads((out / "summary.json").read_text()),
        "records": {record["candidate_id"]: record for record in records},
    }


def lm_eval_cli(model_dir: Path, tasks: list[str], workdir: Path, limit: int | None) -> dict[str, Any]:
    """`lm_eval --model hf --include_path ...` on a model directory, as a user would run it."""
    # One intra-op thread, as the search scores models this small (tasks/workbench.py: search_torch_threads):
    # a float32 sum's rounding follows how its work splits over threads, and at the CLI's default two threads
    # one batch-1 perplexity differs from the search's batched one in the seventh digit. Thread for thread,
    # every value is identical.
    limits = ["--limit", str(limit)] if limit else []
    options = ["--include_path", str(DEFAULT_INCLUDE_PATH), *limits]
    output, _ = run_lm_eval(model_dir, tasks, workdir, *options, env={"OMP_NUM_THREADS": "1"})
    return output


def test_every_output_type_scores_as_the_lm_eval_cli_scores_the_saved_winner(
    search: dict[str, Any], tmp_path: Path
) -> None:
    summary = search["summary"]
    winner = search["records"][summary["best"]["candidate_id"]]
    assert [o["output_type"] for o in summary["objectives"]] == list(OUTPUT_TYPES.values())
    assert [o["higher_is_better"] for o in summary["objectives"]] == [True, True, False, False]
    output = lm_eval_cli(Path(summary["best"]["model_dir"]), list(OUTPUT_TYPES), tmp_path / "search-split", LIMIT)
    cli = flatten_results(output["results"], tuple(OUTPUT_TYPES))
    for task in OUTPUT_TYPES:
        assert winner["scores"][task] == cli[task], task  # every metric, value for value
        assert output["n-samples"][task]["effective"] == LIMIT
    for objective in summary["objectives"]:
        assert summary["best"]["scores"][objective["task"]] == cli[objective["task"]][objective["metric"]]
    # the lower-is-better metrics count negated: the fitness is the weighted mean of the oriented values
    values = [cli[o["task"]][o["metric"]] * (1 if o["higher_is_better"] else -1) for o in summary["objectives"]]
    weights = [o["weight"] for o in summary["objectives"]]
    expected = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    assert winner["fitness"] == pytest.approx(expected, rel=1e-12)


def test_the_held_out_report_gives_the_cli_values_of_every_type(search: dict[str, Any], tmp_path: Path) -> None:
    summary = search["summary"]
    held_out = summary["held_out"]
    test_tasks = [f"{task}_test" for task in OUTPUT_TYPES]
    assert held_out["tasks"] == test_tasks
    output = lm_eval_cli(Path(summary["best"]["model_dir"]), test_tasks, tmp_path / "test-split", None)
    cli = flatten_results(output["results"], tuple(test_tasks))
    child = held_out["models"][f"child {summary['best']['candidate_id']}"]
    for task in test_tasks:
        interval = child["tasks"][task]
        assert interval["value"] == pytest.approx(cli[task][held_out["metrics"][task]], rel=1e-12), task
        assert interval["low"] <= interval["value"] <= interval["high"]
    assert list(held_out["higher_is_better"].values()) == [True, True, False, False]
    # NSGA-II reported its Pareto front on the raw values
    assert summary["pareto_front"] and all(set(m["scores"]) == set(OUTPUT_TYPES) for m in summary["pareto_front"])


def test_lineage_and_reproduce_find_and_rebuild_the_winner(search: dict[str, Any], tmp_path: Path) -> None:
    summary = search["summary"]

    def evomerge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EVOMERGE, *args], capture_output=True, text=True, timeout=600, env=search["env"], cwd=ROOT
        )

    lineage = evomerge("lineage", summary["mlflow_run_id"], "--format", "json")
    assert lineage.returncode == 0, lineage.stderr
    candidate = json.loads(lineage.stdout)["candidate"]
    assert candidate["candidate_id"] == summary["best"]["candidate_id"]
    assert candidate["fitness"] == pytest.approx(summary["best"]["fitness"])
    rebuilt = tmp_path / "rebuilt"
    reproduce = evomerge("reproduce", summary["mlflow_run_id"], str(rebuilt))
    assert reproduce.returncode == 0, reproduce.stderr
    assert model_dir_sha256(rebuilt) == summary["best"]["tensors_sha256"]
