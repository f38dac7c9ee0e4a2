"""Search throughput on the demo zoo: evaluations per minute, and the share of the search loop's wall time
spent outside the models' forward passes (merging, Prefect, MLflow, bookkeeping). Prints; asserts nothing.

    .venv/bin/python tests/benchmarks/search_throughput.py [--evaluations 48] [--config configs/searches/demo.yaml]
        [--without-candidate-logging]

The search runs in this process, as `evomerge search` runs it (Prefect flow, MLflow store, lm-eval). Three
clocks are added for the measurement only: one around the search loop (`flows.search._run_loop`,
which covers every candidate's merge, evaluation, MLflow logging, checkpoint), one around
`GenerationMixin.generate`, where lm-eval's generation (every forward pass) happens, and one around the
whole lm-eval call (`Evaluator._run`: building the requests, generating, scoring the answers). Two
more split what is left per candidate: one around the merge as the search's thread waits for it
(`Workbench.load_recipe`: a merge into the live model, or the wait for the merge that ran ahead in the
workbench's worker process, tasks/merge_ahead.py) and one around the merge and evaluate task calls
(Prefect's task runs, with what they run inside). Parent scoring, the held-out report and start-up are
outside the loop and not counted.
`EVOMERGE_MERGE_AHEAD=0` turns merging ahead off (tasks/workbench.py), for a side-by-side measurement.

After the search it measures Prefect's floor on this machine: the cost of a task run that does nothing,
decorated as `merge` and `evaluate` are (content-key cache, persisted result), run in a flow in the same
process and Prefect home. Two of them per candidate are what the design's merge and evaluate tasks cost
at the least, whatever the search does.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.active = True

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if self.active:
                    self.seconds += time.perf_counter() - started
                    self.calls += 1

        return timed


class TimedTask:
    """A Prefect task whose direct calls are timed; `.submit` and the rest pass through untouched."""

    def __init__(self, task: Any, clock: Clock) -> None:
        self._task = task
        self._call = clock.wrap(task.__call__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "searches" / "demo.yaml")
    parser.add_argument("--evaluations", type=int, default=48)
    parser.add_argument(
        "--without-candidate-logging",
        action="store_true",
        help="an experiment, not a mode: candidates are not logged to MLflow (what the MLflow worker costs)",
    )
    args = parser.parse_args()
    with scratch_dir("evomerge-throughput-") as scratch:
        measure(args, scratch)


def measure(args: argparse.Namespace, work: Path) -> None:
    config = yaml.safe_load(args.config.read_text())
    config["budget"] = {"max_evaluations": args.evaluations}
    config["algorithm"] = {**config.get("algorithm", {}), "generations": 1000}
    config["evaluation"]["held_out_tasks"] = []
    config_path = work / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("EVOMERGE_ZOO_DIR", str(ROOT / "zoo"))
    # a fresh Prefect home: merges and evaluations are cached by content across runs, and a cached
    # evaluation would make this measure nothing
    os.environ["PREFECT_HOME"] = str(work / "prefect")

    from transformers.generation.utils import GenerationMixin

    import flows  # noqa: F401  (Prefect and HF defaults)
    import flows.search as search_module
    import flows.stages as stages_module
    from flows.search_context import merge_ahead_enabled
    from tasks.evaluate import Evaluator
    from tasks.workbench import Workbench

    loop, forward, scoring, merging, waiting, tasks = Clock(), Clock(), Clock(), Clock(), Clock(), Clock()
    inner = (forward, scoring, merging, waiting, tasks)
    for clock in inner:
        clock.active = False
    original_loop = search_module._run_loop

    def timed_loop(*loop_args: Any, **loop_kwargs: Any) -> str:
        for clock in inner:
            clock.active = True
        try:
            return loop.wrap(original_loop)(*loop_args, **loop_kwargs)
        finally:
            for clock in inner:
                clock.active = False

    search_module._run_loop = timed_loop  # type: ignore[assignment]
    GenerationMixin.generate = forward.wrap(GenerationMixin.generate)  # type: ignore[method-assign]
    Evaluator._run = scoring.wrap(Evaluator._run)  # type: ignore[method-assign]
    Workbench.load_recipe = merging.wrap(Workbench.load_recipe)  # type: ignore[method-assign]
    Workbench._take_ahead = waiting.wrap(Workbench._take_ahead)  # type: ignore[method-assign]
    # the whole task runs, Prefect's engine included
    stages_module.merge = TimedTask(stages_module.merge, tasks)  # type: ignore[assignment]
    stages_module.evaluate = TimedTask(stages_module.evaluate, tasks)  # type: ignore[assignment]

    started = time.perf_counter()
    if args.without_candidate_logging:
        # dropped before they reach the MLflow worker (a patched tracker method would not cross to it)
        from flows.tracking_queue import TrackingQueue

        submit = TrackingQueue.submit

        def submit_but_candidates(self: TrackingQueue, description: str, function: Callable[[], Any]) -> None:
            if not description.startswith("candidate "):
                submit(self, description, function)

        TrackingQueue.submit = submit_but_candidates  # type: ignore[method-assign]
    summary = search_module.search(str(config_path), str(work / "out"), str(ROOT / "zoo"))
    total = time.perf_counter() - started

    evaluations = summary.evaluations
    outside = loop.seconds - forward.seconds
    print(f"config: {args.config} ({config['algorithm'].get('name', 'ga')}), budget {args.evaluations} evaluations")
    print(f"merge ahead (EVOMERGE_MERGE_AHEAD): {'on' if merge_ahead_enabled() else 'off'}")
    if args.without_candidate_logging:
        print("experiment: candidates NOT logged to MLflow")
    print(f"whole search (start-up, parents, loop, winner): {total:.1f} s")
    print(f"search loop: {loop.seconds:.1f} s for {evaluations} evaluations")
    print(f"evaluations per minute (loop): {60 * evaluations / loop.seconds:.1f}")
    print(f"generate (forward passes) in the loop: {forward.seconds:.1f} s in {forward.calls} calls")
    share = 100 * outside / loop.seconds
    print(f"outside forward passes: {outside:.1f} s = {share:.1f} % of the loop (target <= 10 %)")
    print(f"lm-eval calls (requests, generation, scoring) in the loop: {scoring.seconds:.1f} s")
    around = loop.seconds - scoring.seconds
    print(
        f"outside lm-eval (merge, Prefect, MLflow, bookkeeping): {around:.1f} s = {100 * around / loop.seconds:.1f} %"
    )
    per = 1000 / evaluations
    prefect = tasks.seconds - merging.seconds - scoring.seconds
    print(
        f"per candidate: generate {forward.seconds * per:.1f} ms, lm-eval around it "
        f"{(scoring.seconds - forward.seconds) * per:.1f} ms, merge (as the loop waits for it) "
        f"{merging.seconds * per:.1f} ms (of which waiting for a merge ahead {waiting.seconds * per:.1f} ms), "
        f"Prefect's two task runs {prefect * per:.1f} ms, "
        f"the rest of the loop {(loop.seconds - tasks.seconds) * per:.1f} ms"
    )
    floor = prefect_floor_ms()
    print(
        f"Prefect's floor here: an empty task run like merge/evaluate costs {floor:.1f} ms (median of 5 x 40); "
        f"two per candidate = {2 * floor:.1f} ms = {100 * 2 * floor / (1000 * loop.seconds / evaluations):.1f} % "
        "of a candidate's loop time"
    )


def prefect_floor_ms(rounds: int = 5, runs: int = 40) -> float:
    """Median over `rounds` of the mean wall time (ms) of `runs` empty task runs with fresh content keys."""
    import statistics
    import uuid

    from prefect import flow, task

    from flows.stages import _content_key

    @task(name="empty", task_run_name="empty-{label}", cache_key_fn=_content_key, persist_result=True)
    def empty(label: str, key: str) -> str:
        return key

    @flow(name="prefect-floor")
    def floor_flow() -> float:
        started = time.perf_counter()
        for index in range(runs):
            empty(str(index), key=uuid.uuid4().hex)
        return 1000 * (time.perf_counter() - started) / runs

    return statistics.median(floor_flow() for _ in range(rounds))


if __name__ == "__main__":
    main()
