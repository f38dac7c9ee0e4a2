"""Scale-out on Dask: what the runner costs per candidate, how the search speeds up with workers, and how
much worker time the generation barrier leaves idle. Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/scaleout.py [--workers 1 2 4 8] [--skip-demo] [--skip-stand-in]

1. The demo search (configs/searches/demo.yaml, 96 evaluations) with the local runner, and on a local Dask
   cluster of 1 and 2 workers (1 thread each): evaluations per minute of the search loop (from
   summary.json's `runner.loop_seconds`), the whole command's wall time, a candidate's median time where it
   was scored (candidates.jsonl's `seconds`), and whether the winner is the same.
2. The runner's own cost per candidate: the search loop with a stand-in evaluation that returns at once,
   scored on 1 Dask worker through the Prefect `score` task, against the same loop scoring in process.
3. A stand-in evaluation that sleeps 1 s (equal) or 1 s ± 50 % (varied, uniform, fixed per candidate) on
   1, 2, 4 and 8 workers: speed-up against 1 worker and the idle share of worker time. Random search,
   16 candidates a generation, 3 generations. Workers that sleep need no cores, so 8 fit on 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

PARENT_HASHES = {"zoo:base": "a" * 64, "zoo:add": "b" * 64, "zoo:sort": "c" * 64}


def stand_in(recipe: Any, label: str, parent: str | None = None, seconds: float = 1.0, spread: float = 0.0) -> Any:
    """A candidate's evaluation replaced by a sleep of `seconds` × (1 ± `spread`), drawn from its label."""
    from distributed import get_worker

    from genetics.candidate import Outcome

    draw = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    took = seconds * (1 + spread * (2 * draw - 1))
    time.sleep(took)
    return Outcome(scores={"task": {"acc": draw}}, seconds=took, worker=str(get_worker().name))


def random_search(evaluation_key: str, generations: int, population: int = 16) -> tuple[Any, Any, Any]:
    """The demo's genome under a seeded random search, judged on the stand-in's one score: (decoder,
    algorithm, judge) for `run_generations`."""
    from genetics.algorithm import make_algorithm
    from genetics.fitness import Judge
    from genetics.loop import Decoder
    from genetics.search_config import RandomSearchSettings, load_search_config
    from tasks.select import FitnessPolicy, Objective

    config = load_search_config(ROOT / "configs" / "searches" / "demo.yaml")
    decoder = Decoder(config.genome(), PARENT_HASHES, evaluation_key)
    algorithm = make_algorithm(RandomSearchSettings(population_size=population, generations=generations), 4, 0)
    return decoder, algorithm, Judge(FitnessPolicy((Objective("task", "acc"),)))


def stand_in_loop(
    workers: int, seconds: float, spread: float, generations: int = 3, population: int = 16
) -> dict[str, float]:
    """The real search loop and Dask runner (Prefect score tasks in a flow), evaluations replaced."""
    from functools import partial

    from prefect import flow

    from flows.dask_runner import DaskRunner, dask_client
    from genetics.loop import SearchState, run_generations
    from genetics.search_config import BudgetSettings, RunnerSettings

    @flow(name="scaleout-stand-in")
    def run() -> dict[str, float]:
        settings = RunnerSettings(name="dask", workers=workers)
        with dask_client(settings, Path(os.environ["SCALEOUT_WORK"]) / "dask") as client:
            runner = DaskRunner(client, function=partial(stand_in, seconds=seconds, spread=spread))
            runner.prepare(None)
            client.wait_for_workers(workers, timeout=120)
            # a new evaluation key each run: no result cached by an earlier one
            decoder, algorithm, judge = random_search(f"scaleout-{time.time_ns()}", generations, population)
            state = SearchState()
            started = time.perf_counter()
            run_generations(algorithm, decoder, runner, judge.judge, state, BudgetSettings(), generations, [])
            wall = time.perf_counter() - started
            report = runner.report()
        return {"wall": wall, "evaluations": state.evaluations, "idle": report["idle_share"] or 0.0}

    return run()


def in_process_loop(evaluations: int = 48) -> float:
    """The same loop with an in-process scorer that returns at once: the floor the runner adds to."""
    from genetics.candidate import Candidate, Outcome
    from genetics.loop import SearchState, run_generations
    from genetics.search_config import BudgetSettings

    class Instant:
        def start(self, batch: Sequence[Candidate]) -> None:
            pass

        def score(self, batch: Sequence[Candidate]) -> Iterator[Outcome]:
            for _candidate in batch:
                yield Outcome(scores={"task": {"acc": 0.5}})

    decoder, algorithm, judge = random_search("in-process", evaluations // 16)
    started = time.perf_counter()
    run_generations(algorithm, decoder, Instant(), judge.judge, SearchState(), BudgetSettings(), evaluations // 16, [])
    return time.perf_counter() - started


def demo(work: Path, flags: list[str]) -> dict[str, Any]:
    out = work / ("local" if not flags else "dask-" + flags[-1])
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
        "PREFECT_HOME": str(out / "prefect"),
        "EVOMERGE_ZOO_DIR": str(ROOT / "zoo"),
    }
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "flows.cli", "search", str(ROOT / "configs" / "searches" / "demo.yaml")]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--out", str(out / "out"), *flags], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    summary = json.loads((out / "out" / "summary.json").read_text())
    lines = (out / "out" / "candidates.jsonl").read_text().splitlines()
    seconds = statistics.median(json.loads(line)["seconds"] for line in lines)
    return {"wall": wall, "summary": summary, "candidate_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-stand-in", action="store_true")
    args = parser.parse_args()
    import tempfile

    import flows  # noqa: F401  (Prefect and HF defaults)

    work = Path(tempfile.mkdtemp(prefix="evomerge-scaleout-"))
    os.environ["SCALEOUT_WORK"] = str(work)
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    print(f"machine: {os.cpu_count()} cores; work in {work}")

    if not args.skip_demo:
        print("\n1. the demo search (96 evaluations), one run each")
        rows = {"local": demo(work, []), "dask 1": demo(work, ["--runner", "dask", "--workers", "1"])}
        rows["dask 2"] = demo(work, ["--runner", "dask", "--workers", "2"])
        one = None
        for name, row in rows.items():
            runner = row["summary"]["runner"]
            rate = 60 * runner["loop_evaluations"] / runner["loop_seconds"]
            one = rate if name == "dask 1" else one
            idle = runner.get("idle_share")
            print(
                f"  {name:7s} loop {runner['loop_seconds']:6.1f} s = {rate:6.1f} evaluations/min; whole command "
                f"{row['wall']:5.1f} s; winner {row['summary']['best']['candidate_id']} "
                f"{row['summary']['best']['fitness']:.3f}; a candidate {row['candidate_seconds']:.3f} s (median)"
                + (f"; idle {100 * idle:.1f} %" if idle is not None else "")
            )
        two = rows["dask 2"]["summary"]["runner"]
        rate_two = 60 * two["loop_evaluations"] / two["loop_seconds"]
        print(f"  2 workers against 1: {rate_two / one:.2f}x (target >= 1.6x)")
        same = len({json.dumps(row["summary"]["best"]["recipe"], sort_keys=True) for row in rows.values()}) == 1
        print(f"  the same winner on every runner: {same}")

    if not args.skip_stand_in:
        print("\n2. the runner's cost per candidate (48 candidates that take no time)")
        floor = in_process_loop()
        instant = stand_in_loop(1, 0.0, 0.0)
        per = 1000 * (instant["wall"] - floor) / instant["evaluations"]
        print(
            f"  in process: {1000 * floor / 48:.1f} ms a candidate; on 1 Dask worker through Prefect: "
            f"{1000 * instant['wall'] / instant['evaluations']:.1f} ms; the runner adds {per:.1f} ms"
        )

        print("\n3. a stand-in evaluation of 1 s (equal) or 1 s ± 50 % (varied); 48 candidates, 16 a generation")
        columns = f"{'wall':>12} {'speed-up':>9} {'/N':>5} {'idle':>6}"
        print(f"  {'':7} {'equal':^34}   {'varied':^34}")
        print(f"  {'workers':>7} {columns}   {columns}")
        base: dict[str, float] = {}
        for count in args.workers:
            cells = []
            for mode, spread in (("equal", 0.0), ("varied", 0.5)):
                result = stand_in_loop(count, 1.0, spread)
                base.setdefault(mode, result["wall"] if count == 1 else float("nan"))
                speedup = base[mode] / result["wall"]
                cells.append(
                    f"{result['wall']:11.1f}s {speedup:9.2f} {speedup / count:5.2f} {100 * result['idle']:5.1f}%"
                )
            print(f"  {count:7d} {cells[0]}   {cells[1]}")
        print("  targets: speed-up >= 0.85 x N with equal times; idle <= 15 % with varied ones")


if __name__ == "__main__":
    main()
