"""Runs the demo search as a user would (`evomerge search configs/searches/demo.yaml`) and prints measured
numbers: wall time, evaluations, evaluations per minute, the parents-vs-child table, and the demo's promise
(child mean - best parent mean >= 0.10, weakest skill >= 0.70). Prints; asserts nothing.

With --capabilities, it runs the search once per ATen CPU capability (`native`: what this CPU picks; the
others as ATEN_CPU_CAPABILITY sets them for the search process) and prints, against the first one, whether the
winner is the same and how many candidates (matched by key) differ in their merged tensors or their scores:
what the README's "exact / may differ" table rests on.

    .venv/bin/python tests/benchmarks/demo_search.py [--out DIR] [--capabilities native default avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output directory, kept (default: temporary, removed)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "searches" / "demo.yaml")
    parser.add_argument("--capabilities", nargs="+", metavar="CAPABILITY", help="native, default, avx2, avx512")
    args = parser.parse_args()
    with scratch_dir("evomerge-demo-", args.out) as out:
        if args.capabilities:
            compare_capabilities(args.config, out, args.capabilities)
        else:
            report(args.config, out)


def compare_capabilities(config: Path, out: Path, capabilities: list[str]) -> None:
    records: dict[str, dict[str, dict[str, Any]]] = {}
    winners: dict[str, dict[str, Any]] = {}
    for capability in capabilities:
        env = {name: value for name, value in os.environ.items() if name != "ATEN_CPU_CAPABILITY"}
        if capability != "native":
            env["ATEN_CPU_CAPABILITY"] = capability
        print(f"\n=== search with ATen CPU capability {capability}", flush=True)
        report(config, out / capability, env)
        lines = (out / capability / "candidates.jsonl").read_text().splitlines()
        records[capability] = {record["key"]: record for record in map(json.loads, lines)}
        winners[capability] = json.loads((out / capability / "summary.json").read_text())["best"]
    first, *others = capabilities
    print()
    for capability in others:
        reference, run = records[first], records[capability]
        shared = [key for key in run if key in reference]
        tensors = sum(run[key]["tensors_sha256"] != reference[key]["tensors_sha256"] for key in shared)
        scores = sum(run[key]["scores"] != reference[key]["scores"] for key in shared)
        winner, reference_winner = winners[capability], winners[first]
        same_winner = (winner["candidate_id"], winner["recipe"]) == (
            reference_winner["candidate_id"],
            reference_winner["recipe"],
        )
        print(
            f"{capability} against {first}: same winner: {same_winner}; {len(shared)} of {len(run)} candidates "
            f"with the same key; of those, merged tensors differ in {tensors}, scores differ in {scores}"
        )


def report(config: Path, out: Path, env: dict[str, str] | None = None) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", "zoo", "build"], check=True, cwd=ROOT)
    zoo_seconds = time.perf_counter() - started
    started = time.perf_counter()
    command = [sys.executable, "-m", "flows.cli", "search", str(config), "--out", str(out)]
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    search_seconds = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    tasks = list(summary["best"]["scores"])
    means = {name: sum(scores[t] for t in tasks) / len(tasks) for name, scores in summary["parents"].items()}
    child = summary["best"]["scores"]
    child_mean = sum(child.values()) / len(child)
    print(f"zoo ready (built or reused): {zoo_seconds:.1f} s")
    print(
        f"search wall time: {search_seconds:.1f} s for {summary['evaluations']} evaluations "
        f"({summary['evaluations'] / search_seconds * 60:.1f} evaluations/min including start-up)"
    )
    print(f"{'model':<22}" + "".join(f"{t:>16}" for t in tasks) + f"{'mean':>8}")
    for name, scores in summary["parents"].items():
        print(f"{name:<22}" + "".join(f"{scores[t]:>16.3f}" for t in tasks) + f"{means[name]:>8.3f}")
    print(
        f"{'child ' + summary['best']['candidate_id']:<22}"
        + "".join(f"{child[t]:>16.3f}" for t in tasks)
        + f"{child_mean:>8.3f}"
    )
    print(f"child mean - best parent mean: {child_mean - max(means.values()):+.3f} (target >= +0.10)")
    print(f"child's weakest skill: {min(child.values()):.3f} (target >= 0.70)")
    print(f"winner recipe: {json.dumps(summary['best']['recipe'])}")


if __name__ == "__main__":
    main()
