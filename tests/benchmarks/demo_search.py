"""Runs the demo search as a user would (`evomerge search configs/searches/demo.yaml`) and prints measured
numbers: wall time, evaluations, evaluations per minute, the parents-vs-child table, and the margins the
spine issue sets (child mean - best parent mean >= 0.08, weakest skill >= 0.65). Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/demo_search.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output directory, kept (default: temporary, removed)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "searches" / "demo.yaml")
    args = parser.parse_args()
    with scratch_dir("evomerge-demo-", args.out) as out:
        report(args.config, out)


def report(config: Path, out: Path) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", "zoo", "build"], check=True, cwd=ROOT)
    zoo_seconds = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.cli", "search", str(config), "--out", str(out)], check=True, cwd=ROOT)
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
    print(f"child mean - best parent mean: {child_mean - max(means.values()):+.3f} (target >= +0.08)")
    print(f"child's weakest skill: {min(child.values()):.3f} (target >= 0.65)")
    print(f"winner recipe: {json.dumps(summary['best']['recipe'])}")


if __name__ == "__main__":
    main()
