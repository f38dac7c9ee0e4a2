"""The forgetting guard on the demo zoo: the demo search without a binding guard and with one, side by side.
Prints each winner's skills, fitness, guard score, retention and held-out mean, and how many candidates broke
the guard; asserts nothing.

    .venv/bin/python tests/benchmarks/guard_experiment.py [--guard-task evomerge_copy] [--max-drop 0.02]

"Without" is the demo with a guard that cannot bind (max_drop 1): the same candidates and winner as the demo,
with every candidate's retention recorded, so both rows measure the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "searches" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guard-task", default="evomerge_copy")
    parser.add_argument("--max-drop", type=float, default=0.02)
    args = parser.parse_args()
    with scratch_dir("evomerge-guard-") as scratch:
        for label, max_drop in (("no guard (max_drop 1)", 1.0), (f"guard (max_drop {args.max_drop:g})", args.max_drop)):
            config = yaml.safe_load(DEMO.read_text())
            config["name"] = f"guard-{max_drop:g}".replace(".", "p")
            config["guard"] = {"tasks": [args.guard_task], "max_drop": max_drop, "reference": "base"}
            work = scratch / config["name"]
            work.mkdir()
            (work / "search.yaml").write_text(yaml.safe_dump(config))
            env = {
                **os.environ,
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                "PREFECT_HOME": str(work / "prefect"),
            }
            command = [
                sys.executable,
                "-m",
                "flows.cli",
                "search",
                str(work / "search.yaml"),
                "--out",
                str(work / "out"),
            ]
            subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            summary = json.loads((work / "out" / "summary.json").read_text())
            best, guard = summary["best"], summary["guard"]
            skills = ", ".join(f"{task} {best['scores'][task]:.3f}" for task in config["evaluation"]["tasks"])
            best_parent = max(summary["parent_fitness"].values())
            held_out = summary["held_out"]["models"][f"child {best['candidate_id']}"]["mean"]
            print(
                f"{label}: winner {best['candidate_id']}: {skills}; fitness {best['fitness']:.3f} "
                f"({best['fitness'] - best_parent:+.3f} over the best parent); {args.guard_task} "
                f"{best['scores'][args.guard_task]:.3f} against the base's {guard['reference_score']:.3f}, retention "
                f"{best['retention']:+.3f}; held-out mean {held_out['value']:.3f} [{held_out['low']:.3f}, "
                f"{held_out['high']:.3f}]; infeasible {guard['infeasible']} of {summary['evaluations']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
