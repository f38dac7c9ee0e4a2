"""How long `evomerge search` takes to refuse a wrong config, as a user sees it (a fresh process, the CLI's
own imports included): a misspelt task (the repository's, or lm-eval's built-in), a metric the task does
not report, an unknown key or a zero weight in a task entry, a missing include folder, a gene out of its
parameter's range. Prints the seconds of each (min and median of --runs) and the error (up to its list of
known tasks); asserts nothing.

    .venv/bin/python tests/benchmarks/preflight.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "searches" / "demo.yaml"


def _misspelt_task(config: dict[str, Any]) -> None:
    config["evaluation"]["tasks"] = ["evomerge_add", "evomerge_srot"]


def _misspelt_builtin_task(config: dict[str, Any]) -> None:
    config["evaluation"]["tasks"] = ["evomerge_add", "gsm8kk"]


def _metric_not_reported(config: dict[str, Any]) -> None:
    config["evaluation"]["tasks"] = ["evomerge_add", {"task": "arc_easy", "metric": "exact_match"}]


def _unknown_entry_key(config: dict[str, Any]) -> None:
    config["evaluation"]["tasks"] = ["evomerge_add", {"task": "evomerge_sort", "wieght": 2}]


def _weight_not_positive(config: dict[str, Any]) -> None:
    config["evaluation"]["tasks"] = ["evomerge_add", {"task": "evomerge_sort", "weight": 0}]


def _include_path_missing(config: dict[str, Any]) -> None:
    config["evaluation"]["include_path"] = ["my_taks"]


def _gene_out_of_range(config: dict[str, Any]) -> None:
    config["recipe"]["merge_method"] = "ties"
    config["genes"].append({"parameter": "density", "model": "zoo:add", "low": 0.2, "high": 1.5})


CASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "misspelt task": _misspelt_task,
    "misspelt built-in task": _misspelt_builtin_task,
    "metric the task does not report": _metric_not_reported,
    "unknown key in a task entry": _unknown_entry_key,
    "weight 0": _weight_not_positive,
    "include folder missing": _include_path_missing,
    "gene out of range": _gene_out_of_range,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with scratch_dir("evomerge-preflight-") as scratch:
        for name, break_config in CASES.items():
            config = yaml.safe_load(DEMO.read_text())
            break_config(config)
            path = scratch / f"{name.replace(' ', '-').replace('/', '-')}.yaml"
            path.write_text(yaml.safe_dump(config))
            seconds, error = [], ""
            for _ in range(args.runs):
                command = [sys.executable, "-m", "flows.cli", "search", str(path), "--out", str(scratch / "out")]
                started = time.perf_counter()
                result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                seconds.append(time.perf_counter() - started)
                error = " ".join(result.stderr.split())
            print(
                f"{name}: min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s "
                f"(exit {result.returncode}); {error.split('; known:')[0]}",
                flush=True,
            )


if __name__ == "__main__":
    main()
