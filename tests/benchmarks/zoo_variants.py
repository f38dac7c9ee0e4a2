"""Zoo variants: how the experts' training decides what merging them can reach. Builds each variant of the
demo zoo's recipe (the base is the same in all; only the experts' fine-tuning changes), then, for two experts
(add, sort) and three (add, sort, reverse): the best parent's held-out mean, the best point of a coarse global
weight grid, and CMA-ES's winner (the search_quality.py setup: task arithmetic, 2 layer groups per expert),
each scored on the held-out split. Prints the table; asserts nothing.

    .venv/bin/python tests/benchmarks/zoo_variants.py [--variants default replay-0.5-350 ...] [--seeds 0 1 2]
        [--budget 96] [--grid-points 5] [--out DIR]

About 3 minutes per variant on 2 cores (a zoo build, then 6 searches of 96 evaluations and two grids).
Every variant's zoo is built in a temporary folder and removed at the end, unless `--out DIR` keeps them:
`EVOMERGE_ZOO_DIR=DIR/<variant>/zoo tests/benchmarks/search_quality.py` then runs the full protocol on one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
from pathlib import Path
from typing import Any

from scratch import scratch_dir
from search_quality import EXPERTS, HeldOut, grid, run_search, search_config

EASY_REPLAY = {"add_1digit": 0.13, "add_2plus1": 0.13, "sort_short": 0.13, "reverse_short": 0.13, "copy": 0.13}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "replay-0.4": {"expert_replay": 0.4},
    "replay-0.5": {"expert_replay": 0.5},
    "replay-0.5-350": {"expert_replay": 0.5, "expert_steps": 350},
    "replay-0.5-lr5e-4-400": {"expert_replay": 0.5, "expert_steps": 400, "expert_learning_rate": 5e-4},
    "easy-replay-0.5": {"expert_replay": 0.5, "expert_replay_mixture": EASY_REPLAY},
    "letters-replay-0.5-350": {
        "expert_replay": 0.5,
        "expert_steps": 350,
        "expert_replay_mixture": {**EASY_REPLAY, "add_small": 0.05, "sort": 0.015, "reverse": 0.04},
    },
    "more-letters-replay-0.25": {
        "expert_replay_mixture": {**EASY_REPLAY, "add_small": 0.25, "sort": 0.08, "reverse": 0.08}
    },
    "more-letters-replay-0.5-350": {
        "expert_replay": 0.5,
        "expert_steps": 350,
        "expert_replay_mixture": {**EASY_REPLAY, "add_small": 0.05, "sort": 0.08, "reverse": 0.08},
    },
}
"""Overrides of `ZooRecipe`'s defaults. `expert_replay_mixture` is what an expert replays instead of the base
mixture: the easy formats alone, or with the hard skills at other shares (the base mixture has add_small
0.25, sort 0.015, reverse 0.04). `expert_steps` sets the letter experts' steps; the add expert keeps its own
600 (`expert_steps_by_skill`)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--grid-points", type=int, default=5)
    parser.add_argument("--out", type=Path, help="keep each variant's zoo here, as OUT/<variant>/zoo")
    args = parser.parse_args()
    with scratch_dir("evomerge-zoo-variants-", keep=args.out) as scratch:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'mlflow.db'}")
        rows = [measure_variant(name, args, scratch / name) for name in args.variants]
    print_table(rows)


def measure_variant(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tasks.zoo import build_zoo
    from tasks.zoo.build import ZOO_DIR_ENV
    from tasks.zoo.recipe import ZooRecipe

    recipe = ZooRecipe(**VARIANTS[name])
    manifest = build_zoo(work / "zoo", recipe=recipe)
    os.environ[ZOO_DIR_ENV] = str(work / "zoo")  # read by the searches' zoo: references and by HeldOut
    weights = hashlib.sha256("".join(sorted(manifest.weight_hashes().values())).encode())
    print(f"{name}: zoo built in {manifest.build_seconds:.0f} s, weights sha256 {weights.hexdigest()[:16]}", flush=True)
    row: dict[str, Any] = {"variant": name, "experts": {}}
    for skill, entry in manifest.models.items():
        row["experts"][skill] = entry.test_accuracy
    for search_name, experts in EXPERTS.items():
        held_out = HeldOut(experts)
        best_parent = max(
            statistics.mean(entry.test_accuracy[e] for e in experts) for entry in manifest.models.values()
        )
        reference = grid(experts, args.grid_points, held_out)
        winners = []
        for seed in args.seeds:
            records = run_search(search_config(experts, "cma-es", seed, args.budget), work)
            winner = max((r for r in records if r["status"] == "ok"), key=lambda r: r["fitness"])
            winners.append(held_out.mean(winner["recipe"]))
        row[search_name] = {"parent": best_parent, "grid": reference["held_out"], "cma": winners}
        print(f"{name} / {search_name}: {row[search_name]}", flush=True)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nexperts' held-out exact match (add / sort / reverse), then the held-out mean of: the best parent,")
    print("the best global grid point, and CMA-ES's winner (median [min, max] over the seeds)")
    print(f"{'variant':30s} {'add expert':>15s} {'sort expert':>15s} {'reverse expert':>15s}", end="")
    for search_name in EXPERTS:
        print(f" | {search_name + ': parent':>13s} {'grid':>5s} {'cma-es':>20s}", end="")
    print()
    for row in rows:
        cells = [
            "/".join(f"{row['experts'][skill][s]:.2f}" for s in ("add", "sort", "reverse"))
            for skill in ("add", "sort", "reverse")
        ]
        print(f"{row['variant']:30s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s}", end="")
        for search_name in EXPERTS:
            result = row[search_name]
            cma = result["cma"]
            cma_cell = f"{statistics.median(cma):.3f} [{min(cma):.3f}, {max(cma):.3f}]"
            print(f" | {result['parent']:>13.3f} {result['grid']:>5.3f} {cma_cell:>20s}", end="")
        print()


if __name__ == "__main__":
    main()
