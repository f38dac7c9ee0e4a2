"""Task arithmetic over two zoo experts on a weight grid, each point merged in memory by the workbench and
scored by the Evaluator, exactly as the search does. Prints the grid of mean scores, the best points, the
parents' scores, and the time per candidate (merge + evaluation). Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/zoo_merge_grid.py [--zoo DIR] [--experts add sort] [--split _test]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tasks.evaluate import EvaluationConfig, Evaluator
from tasks.merge.recipe import parse_recipe
from tasks.workbench import Workbench
from tasks.zoo import default_zoo_dir, ensure_zoo
from tasks.zoo.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--zoo", type=Path, default=None, help="a built zoo, used as it is (default: the demo zoo, built if missing)"
    )
    parser.add_argument("--experts", nargs=2, default=["add", "sort"])
    parser.add_argument("--split", default="", help="'' for the search split, '_test' for the held-out one")
    parser.add_argument("--steps", type=int, default=8, help="grid points per axis, spaced 0.2 from 0")
    args = parser.parse_args()
    if args.zoo is None:
        zoo = default_zoo_dir()
        ensure_zoo(zoo)
    else:
        # Never ensure_zoo here: it would rebuild a zoo of another recipe (a zoo_variants.py --out one) as the
        # default zoo, in place.
        zoo = args.zoo
        if read_manifest(zoo) is None:
            raise SystemExit(f"--zoo {zoo}: no zoo there (no zoo.json); build one with `evomerge zoo build --out`")
    first, second = args.experts
    tasks = (f"evomerge_{first}{args.split}", f"evomerge_{second}{args.split}")
    evaluator = Evaluator(EvaluationConfig(tasks=tasks))
    workbench = Workbench({name: zoo / name for name in ("base", first, second)}, reference="base")

    def score() -> tuple[float, float]:
        scores = evaluator.evaluate(workbench.model, workbench.tokenizer)
        return scores[tasks[0]]["exact_match"], scores[tasks[1]]["exact_match"]

    for name in ("base", first, second):
        workbench.load_parent(name)
        a, b = score()
        print(f"parent {name:<8} {tasks[0]} {a:.3f}  {tasks[1]} {b:.3f}  mean {(a + b) / 2:.3f}")
    grid = [round(0.2 * i, 1) for i in range(args.steps)]
    results: dict[tuple[float, float], tuple[float, float]] = {}
    started = time.perf_counter()
    for x in grid:
        for y in grid:
            recipe = parse_recipe(
                {
                    "merge_method": "task_arithmetic",
                    "base_model": "base",
                    "models": [
                        {"model": first, "parameters": {"weight": x}},
                        {"model": second, "parameters": {"weight": y}},
                    ],
                }
            )
            workbench.load_recipe(recipe)
            results[(x, y)] = score()
    seconds = time.perf_counter() - started
    print(
        f"\n{len(results)} candidates in {seconds:.1f} s: {seconds / len(results):.3f} s per candidate "
        f"(in-memory merge + lm-eval on {len(tasks)} x 200 prompts)"
    )
    print(f"\nmean score; rows: weight of {first}, columns: weight of {second}")
    print("      " + " ".join(f"{y:5.1f}" for y in grid))
    for x in grid:
        print(f"{x:5.1f} " + " ".join(f"{sum(results[(x, y)]) / 2:5.3f}" for y in grid))
    ranked = sorted(results.items(), key=lambda item: -sum(item[1]))
    print("\nbest points by mean:")
    for (x, y), (a, b) in ranked[:5]:
        print(f"  {first}={x:.1f} {second}={y:.1f}: {a:.3f} / {b:.3f}, mean {(a + b) / 2:.3f}, min {min(a, b):.3f}")


if __name__ == "__main__":
    main()
