"""Builds the demo zoo into a temporary directory and prints what was measured: build wall time, CPU
count, the numerics the workers ran, each model's size on disk and lm-eval accuracy on every skill (both
splits), the weight hashes and how they compare with the recorded ones, the wall time of one evaluation
(200 prompts x 2 tasks) and, with --rebuild, whether a second build with the same seed is byte-identical.

With --against REV, it also builds the zoo with the code of commit REV (a git worktree, this venv), the two
builds alternating --repeats times, and prints both wall times and their ratio: a before/after on one
machine in one run. Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/zoo_build.py [--seed N] [--rebuild] [--out DIR] [--against REV [--repeats K]]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.zoo import SKILLS, ZooManifest, build_zoo  # noqa: E402


def _print_event(event: object) -> None:
    print(f"  [{event.elapsed_seconds:6.1f} s] {event.completed}/{event.total} {event.message}", flush=True)


def _build(out: Path, seed: int) -> tuple[ZooManifest, float]:
    started = time.perf_counter()
    manifest = build_zoo(out, seed=seed, progress=_print_event)
    return manifest, time.perf_counter() - started


def _evaluation_timing(zoo_dir: Path, repeats: int = 10) -> tuple[float, float, list[float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.evaluate import EvaluationConfig, Evaluator

    started = time.perf_counter()
    evaluator = Evaluator(EvaluationConfig(tasks=("evomerge_add", "evomerge_sort")))
    setup = time.perf_counter() - started
    model = AutoModelForCausalLM.from_pretrained(zoo_dir / "add")
    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / "add")
    started = time.perf_counter()
    evaluator.evaluate(model, tokenizer)
    first = time.perf_counter() - started
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluator.evaluate(model, tokenizer)
        timings.append(time.perf_counter() - started)
    return setup, first, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="build a second time and compare weight hashes")
    parser.add_argument("--out", type=Path, default=None, help="zoo directory, kept (default: temporary, removed)")
    parser.add_argument("--against", metavar="REV", help="also build with commit REV's code, alternating")
    parser.add_argument("--repeats", type=int, default=2, help="builds of each side with --against")
    args = parser.parse_args()
    with scratch_dir("evomerge-zoo-") as scratch:
        if args.against:
            compare(args, scratch)
        else:
            measure(args, args.out or scratch / "zoo")


def compare(args: argparse.Namespace, scratch: Path) -> None:
    """Alternate builds of REV's code and this code, each a fresh process (as `make zoo` would be)."""
    worktree = scratch / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.against], cwd=ROOT, check=True)
    try:
        walls: dict[str, list[float]] = {"before": [], "after": []}
        for repeat in range(args.repeats):
            for side, root in (("before", worktree), ("after", ROOT)):
                out = scratch / f"{side}-{repeat}" / "zoo"
                command = [sys.executable, str(root / "tests/benchmarks/zoo_build.py"), "--out", str(out)]
                printed = subprocess.run(command, cwd=root, check=True, capture_output=True, text=True).stdout
                wall = float(re.search(r"build wall time: ([0-9.]+) s", printed).group(1))
                walls[side].append(wall)
                hashes = re.findall(r"^  (\S+/model\.safetensors)\s+([0-9a-f]{64})", printed, flags=re.M)
                print(
                    f"{side} ({args.against if side == 'before' else 'this tree'}), build {repeat + 1}: {wall:.1f} s; "
                    + ", ".join(f"{path.split('/')[0]} {digest[:12]}" for path, digest in hashes),
                    flush=True,
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    before, after = min(walls["before"]), min(walls["after"])
    print(
        f"\nzoo build, min of {args.repeats}: before {before:.1f} s, after {after:.1f} s, "
        f"after / before = {after / before:.2f} (all: before {walls['before']}, after {walls['after']})"
    )


def measure(args: argparse.Namespace, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    print(f"building the zoo (seed {args.seed}) into {out}")
    manifest, wall = _build(out, args.seed)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"build wall time: {wall:.1f} s (manifest: {manifest.build_seconds:.1f} s) on {cores} CPU cores")
    print(f"workers: {manifest.workers}; torch {manifest.torch_version}; transformers {manifest.transformers_version}")
    numerics = manifest.numerics
    pins = " ".join(f"{name}={value}" for name, value in numerics.environment.items())
    print(f"numerics: {'pinned: ' + pins if numerics.pinned else 'this machine' + chr(39) + 's own (not pinned)'}")
    header = "".join(f"{skill:>9}" for skill in SKILLS)
    print(f"\n{'model':<9}{'train s':>9}{'MB':>7}{header}{'mean':>7}{'min':>7}   test split:{header}")
    for name, entry in manifest.models.items():
        search = [entry.accuracy[skill] for skill in SKILLS]
        test = "".join(f"{entry.test_accuracy[skill]:>9.3f}" for skill in SKILLS)
        print(
            f"{name:<9}{entry.train_seconds:>9.1f}{entry.size_bytes / 1e6:>7.2f}"
            + "".join(f"{value:>9.3f}" for value in search)
            + f"{statistics.mean(search):>7.3f}{min(search):>7.3f}              {test}"
        )
    print("\nweight files (sha256):")
    for path, digest in manifest.weight_hashes().items():
        print(f"  {path:<28} {digest}")
    check = manifest.weight_check
    print(f"against tasks/zoo/expected_weights.json: {check.status}" + (f" ({check.reason})" if check.reason else ""))

    setup, first, timings = _evaluation_timing(out)
    print(
        f"\nevaluation of 200 prompts x 2 tasks: Evaluator setup {setup:.2f} s, first call {first:.2f} s, "
        f"then median {statistics.median(timings):.3f} s (min {min(timings):.3f}, max {max(timings):.3f})"
    )

    if args.rebuild:
        second_out = out.with_name(out.name + "-rebuild")
        print(f"\nrebuilding into {second_out}")
        second, second_wall = _build(second_out, args.seed)
        identical = second.weight_hashes() == manifest.weight_hashes()
        print(f"rebuild wall time: {second_wall:.1f} s; byte-identical weights: {identical}")


if __name__ == "__main__":
    main()
