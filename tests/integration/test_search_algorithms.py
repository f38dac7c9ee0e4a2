"""Each search algorithm end to end on the zoo (real Prefect, MLflow, lm-eval), with the outputs it owes:
a winner that is the best candidate, the leaderboard, fitness.png, and for NSGA-II a non-dominated
Pareto front over the tasks and pareto.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_search, two_expert_search, write_search

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n"

ALGORITHMS = {
    "cma-es": {"name": "cma-es", "population_size": 4, "generations": 2, "sigma": 0.3},
    "nsga2": {"name": "nsga2", "population_size": 4, "generations": 2},
    "random": {"name": "random", "population_size": 4, "generations": 2},
}


@pytest.fixture(scope="module", params=sorted(ALGORITHMS))
def finished(request: pytest.FixtureRequest, zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    name = request.param
    work = tmp_path_factory.mktemp(name)
    config = two_expert_search(f"algo-{name}", 2, ALGORITHMS[name], limit=30)
    write_search(work, config)
    result = run_search(work, zoo_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (work / "out" / "candidates.jsonl").read_text().splitlines()]
    summary = json.loads((work / "out" / "summary.json").read_text())
    return {"name": name, "out": work / "out", "summary": summary, "records": records, "stdout": result.stdout}


def test_winner_leaderboard_and_fitness_plot(finished: dict) -> None:  # type: ignore[type-arg]
    summary, records = finished["summary"], finished["records"]
    assert summary["algorithm"] == finished["name"]
    assert summary["stop_reason"] == "generations"
    assert len(summary["history"]) == 2
    assert 0 < summary["evaluations"] == len(records) <= 8
    assert summary["best"]["fitness"] == max(r["fitness"] for r in records)
    fitness = [leader["fitness"] for leader in summary["leaderboard"]]
    assert fitness == sorted(fitness, reverse=True) and fitness[0] == summary["best"]["fitness"]
    assert [h["best_fitness"] for h in summary["history"]] == sorted(h["best_fitness"] for h in summary["history"])
    assert (finished["out"] / "fitness.png").read_bytes().startswith(PNG)
    assert "leaderboard" in finished["stdout"]


def test_nsga2_reports_a_non_dominated_front(finished: dict) -> None:  # type: ignore[type-arg]
    if finished["name"] != "nsga2":
        assert "pareto_front" not in finished["summary"]
        assert not (finished["out"] / "pareto.png").exists()
        return
    tasks = ["evomerge_add", "evomerge_sort"]
    scored = [tuple(r["scores"][t]["exact_match"] for t in tasks) for r in finished["records"]]
    front = [tuple(member["scores"][t] for t in tasks) for member in finished["summary"]["pareto_front"]]
    assert front

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    for member in front:  # nothing evaluated dominates a front member, and every undominated point is on it
        assert not any(dominates(other, member) for other in scored)
    assert {s for s in scored if not any(dominates(o, s) for o in scored)} == set(front)
    assert (finished["out"] / "pareto.png").read_bytes().startswith(PNG)
