"""Search quality on the demo zoo: each algorithm's winner, chosen on the search split, scored on the
held-out test split, for several seeds and budgets, against random search and an exhaustive grid over the
same weights. Prints the table; asserts nothing.

    .venv/bin/python tests/benchmarks/search_quality.py [--seeds 0 1 2 3 4] [--budgets 24 48 96]
        [--algorithms ga cma-es nsga2 random] [--experts two three] [--grid-points 7] [--plot quality.png]

Two searches: `two` (add + sort experts) and `three` (add + sort + reverse), each with one weight gene per
expert in 2 layer groups (mergekit gradients), task arithmetic on zoo:base. Each algorithm runs once per
seed with the largest budget; the winner at a smaller budget B is the best of its first B candidates (what
a search stopped at B would have returned). The grid tries every combination of `--grid-points` weights
per expert (one value for all layers); "reaches grid" is the first evaluation at which an algorithm's best
search-split fitness is within 0.01 of the grid's best, as a share of the grid's evaluations. `--plot`
draws the same medians and ranges against the budget, one panel per search, with the grid's held-out score.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
from pathlib import Path
from typing import Any

import yaml
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]
EXPERTS = {"two": ["add", "sort"], "three": ["add", "sort", "reverse"]}
LOW, HIGH = 0.0, 1.5
POPULATION = {"ga": 12, "cma-es": 8, "nsga2": 12, "random": 12}


def search_config(experts: list[str], algorithm: str, seed: int, budget: int) -> dict[str, Any]:
    settings: dict[str, Any] = {"name": algorithm, "generations": 1000, "population_size": POPULATION[algorithm]}
    if algorithm == "ga":
        settings["elite"] = 2
    return {
        "name": f"quality-{len(experts)}-{algorithm}-{seed}",
        "seed": seed,
        "recipe": {
            "merge_method": "task_arithmetic",
            "base_model": "zoo:base",
            "models": [{"model": f"zoo:{e}"} for e in experts],
        },
        "genes": [
            {"parameter": "weight", "model": f"zoo:{e}", "low": LOW, "high": HIGH, "layer_groups": 2} for e in experts
        ],
        "evaluation": {"tasks": [f"evomerge_{e}" for e in experts], "held_out_tasks": []},
        "algorithm": settings,
        "budget": {"max_evaluations": budget},
    }


class HeldOut:
    """Held-out mean of a recipe, scored in this process and cached by recipe hash."""

    def __init__(self, experts: list[str]) -> None:
        from tasks.evaluate import EvaluationConfig, Evaluator
        from tasks.workbench import Workbench
        from tasks.zoo import default_zoo_dir

        zoo = default_zoo_dir()
        paths = {f"zoo:{name}": zoo / name for name in ["base", *experts]}
        self.workbench = Workbench(paths, reference="zoo:base")
        self.evaluator = Evaluator(EvaluationConfig(tasks=tuple(f"evomerge_{e}_test" for e in experts)))
        self.cache: dict[str, float] = {}

    def mean(self, recipe_data: dict[str, Any]) -> float:
        from tasks.merge.recipe import parse_recipe
        from tasks.select import fitness_of

        recipe = parse_recipe(recipe_data, "benchmark recipe")
        key = recipe.sha256()
        if key not in self.cache:
            self.workbench.load_recipe(recipe)
            scores = self.evaluator.evaluate(self.workbench.model, self.workbench.tokenizer)
            self.cache[key] = fitness_of(scores, "exact_match", "mean")
        return self.cache[key]


def run_search(config: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    from flows.search import search

    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    search(str(path), str(work / config["name"]))
    lines = (work / config["name"] / "candidates.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def grid(experts: list[str], points: int, held_out: HeldOut) -> dict[str, Any]:
    """Every grid point scored on the search split in this process; the best point's held-out mean."""
    from tasks.evaluate import EvaluationConfig, Evaluator
    from tasks.merge.recipe import parse_recipe
    from tasks.select import fitness_of

    evaluator = Evaluator(EvaluationConfig(tasks=tuple(f"evomerge_{e}" for e in experts)))
    values = [LOW + i * (HIGH - LOW) / (points - 1) for i in range(points)]
    best: tuple[float, dict[str, Any]] | None = None
    for weights in itertools.product(values, repeat=len(experts)):
        recipe = {
            "merge_method": "task_arithmetic",
            "base_model": "zoo:base",
            "models": [
                {"model": f"zoo:{e}", "parameters": {"weight": round(w, 4)}}
                for e, w in zip(experts, weights, strict=True)
            ],
        }
        held_out.workbench.load_recipe(parse_recipe(recipe, "grid"))
        fitness = fitness_of(
            evaluator.evaluate(held_out.workbench.model, held_out.workbench.tokenizer), "exact_match", "mean"
        )
        if best is None or fitness > best[0]:
            best = (fitness, recipe)
    assert best is not None
    return {"evaluations": points ** len(experts), "search_fitness": best[0], "held_out": held_out.mean(best[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--algorithms", nargs="+", default=["ga", "cma-es", "nsga2", "random"])
    parser.add_argument("--experts", nargs="+", default=["two", "three"], choices=sorted(EXPERTS))
    parser.add_argument("--grid-points", type=int, default=7)
    parser.add_argument("--plot", type=Path, help="also draw the table as a figure (PNG) here")
    args = parser.parse_args()
    with scratch_dir("evomerge-quality-") as scratch:
        measure(args, scratch)


def measure(args: argparse.Namespace, work: Path) -> None:
    panels: dict[str, tuple[float, dict[str, dict[int, list[float]]]]] = {}
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")

    for name in args.experts:
        experts = EXPERTS[name]
        held_out = HeldOut(experts)
        reference = grid(experts, args.grid_points, held_out)
        print(f"\n== {name} experts ({', '.join(experts)}): held-out mean of the winner, median [min, max] over seeds")
        print(
            f"grid {args.grid_points}^{len(experts)} = {reference['evaluations']} evaluations: "
            f"search {reference['search_fitness']:.3f}, held-out {reference['held_out']:.3f}"
        )
        panels[name] = (reference["held_out"], {})
        header = f"{'algorithm':10s}" + "".join(f"{'budget ' + str(b):>22s}" for b in args.budgets) + "   reaches grid"
        print(header)
        for algorithm in args.algorithms:
            cells: dict[int, list[float]] = {b: [] for b in args.budgets}
            reach: list[float] = []
            for seed in args.seeds:
                records = run_search(search_config(experts, algorithm, seed, max(args.budgets)), work)
                for budget in args.budgets:
                    first = [r for r in records[:budget] if r["status"] == "ok"]
                    winner = max(first, key=lambda r: r["fitness"])
                    cells[budget].append(held_out.mean(winner["recipe"]))
                best_so_far = 0.0
                reached = float("inf")
                for index, record in enumerate(records, start=1):
                    best_so_far = max(best_so_far, record["fitness"] or 0.0)
                    if best_so_far >= reference["search_fitness"] - 0.01:
                        reached = index / reference["evaluations"]
                        break
                reach.append(reached)
            row = f"{algorithm:10s}"
            for budget in args.budgets:
                values = cells[budget]
                row += f"{statistics.median(values):>8.3f} [{min(values):.3f}, {max(values):.3f}]"
            median_reach = statistics.median(reach)
            row += f"   {'never' if median_reach == float('inf') else f'{100 * median_reach:.0f} % of grid'}"
            print(row, flush=True)
            panels[name][1][algorithm] = cells
    if args.plot:
        plot(panels, len(args.seeds), args.plot)
        print(f"\nplot: {args.plot}")


def plot(panels: dict[str, tuple[float, dict[str, dict[int, list[float]]]]], seeds: int, path: Path) -> None:
    """One panel per search: each algorithm's median held-out mean against the budget, its range over the
    seeds shaded, and the exhaustive grid's held-out score as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for axis, (name, (grid_score, algorithms)) in zip(axes[0], panels.items(), strict=True):
        for algorithm, cells in algorithms.items():
            budgets = sorted(cells)
            medians = [statistics.median(cells[b]) for b in budgets]
            line = axis.plot(budgets, medians, marker="o", label=algorithm)[0]
            lows, highs = [min(cells[b]) for b in budgets], [max(cells[b]) for b in budgets]
            axis.fill_between(budgets, lows, highs, color=line.get_color(), alpha=0.12)
        axis.axhline(grid_score, color="black", linestyle="--", linewidth=1, label="exhaustive grid")
        axis.set(
            title=f"{name} experts: winner's held-out mean ({seeds} seeds)",
            xlabel="evaluations (budget)",
            ylabel="held-out mean (median, range shaded)",
        )
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
