"""The search flow: download the parents, then per generation merge and evaluate each new candidate,
select, breed; finally write the winner as a full model and the summary.

This module is wiring: the loop and its rules are genetics/loop.py, a candidate is scored by a runner
(flows/local_scorer.py), and what is recorded goes through the loop's hooks. Every finished candidate is
appended to `candidates.jsonl` the moment it finishes and logged to MLflow from a worker process
(flows/tracking_queue.py: the search never waits on MLflow, nor dies of its outage), and the algorithm is
checkpointed after every generation (flows/search_state.py), so a kill at any moment loses nothing:
rerunning the same command on the same output directory resumes, and a candidate whose recipe, parents and
evaluation were already scored is never evaluated again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.console import console
from flows.finish import finish_search, mlflow_wait
from flows.live import SearchProgress
from flows.nightly import NightlyMode, plan_night
from flows.paths import runs_dir
from flows.preflight import check_search_config
from flows.runners import Runner, open_runner
from flows.search_context import SearchContext, prepare_search, set_guard_reference, start_search
from flows.search_state import (
    Checkpoint,
    checkpoint_bytes,
    load_checkpoint,
    read_candidate_log,
    save_checkpoint,
    write_checkpoint,
)
from flows.summary import SearchSummary
from flows.tracking import sync_candidates
from flows.tracking_queue import TrackingQueue
from genetics.candidate import Candidate
from genetics.fitness import best_candidate
from genetics.loop import GenerationStats, Hooks, SearchState, StopReason, budget_raised, run_generations
from genetics.search_config import RunnerSettings, SearchConfig
from tasks.errors import EvomergeError
from tasks.faults import set_fault_scope


def check_search_inputs(
    config_path: str,
    output_dir: str | None,
    resume: bool,
    nightly: NightlyMode | None = None,
    evaluations_per_night: int | None = None,
    timezone: str = "UTC",
    runner: dict[str, Any] | None = None,
) -> tuple[SearchConfig, Path, Checkpoint | None]:
    """The config, the output directory and its checkpoint, or the error a user must fix first (a bad config,
    a directory holding another search, `--resume` with nothing to resume). Runs before anything is written;
    the CLI calls it before starting the flow, so these errors come without a Prefect traceback.

    A scheduled (`nightly`) run gets its night's output directory, seed and budget (flows/nightly.py).
    `runner` overrides the config's `runner:` settings (the CLI's --runner, --address, --workers, ...)."""
    config = check_search_config(config_path)
    if runner:
        config = config.model_copy(update={"runner": RunnerSettings(**{**config.runner.model_dump(), **runner})})
    out = Path(output_dir or config.output_dir or runs_dir() / config.name).resolve()
    if nightly is not None:
        scheduled = flow_run.get_scheduled_start_time() or datetime.now(UTC)
        night = plan_night(nightly, scheduled, timezone, out, len(read_candidate_log(out)), evaluations_per_night)
        out = night.output_dir
        updates: dict[str, Any] = {}
        if night.seed is not None:
            updates["seed"] = night.seed
        if night.max_evaluations is not None:
            updates["budget"] = config.budget.model_copy(update={"max_evaluations": night.max_evaluations})
        config = config.model_copy(update=updates)
    checkpoint = load_checkpoint(out, config)
    if resume and checkpoint is None:
        raise EvomergeError(f"{out}: nothing to resume (no checkpoint); run without --resume to start")
    return config, out, checkpoint


@flow(name="evomerge-search", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=64))
def search(
    config_path: str,
    output_dir: str | None = None,
    zoo_dir: str | None = None,
    resume: bool = False,
    nightly: str | None = None,
    evaluations_per_night: int | None = None,
    timezone: str = "UTC",
    runner: dict[str, Any] | None = None,
) -> SearchSummary:
    """Breed a child from the parents in `config_path`; returns the summary written to `summary.json`.

    An output directory holding a checkpoint of the same search is resumed; `resume=True` insists on it.
    `nightly` is set by a scheduled deployment (`evomerge serve`): "continue" goes on with the same search,
    `evaluations_per_night` more each night; "new" starts one per night, seeded from the date. `runner`
    overrides the config's `runner:` (where candidates are scored: this process, or a Dask cluster)."""
    # The body lives in a plain function: a served deployment's runner pickles the flow function by value
    # with the globals it names, and the console (a lock inside) cannot be pickled.
    # (Parameter types are builtins for the same reason: Prefect validates them where only those are known.)
    mode = cast(NightlyMode | None, nightly)  # plan_night refuses any other value
    return run_search(config_path, output_dir, zoo_dir, resume, mode, evaluations_per_night, timezone, runner)


def run_search(
    config_path: str,
    output_dir: str | None,
    zoo_dir: str | None,
    resume: bool,
    nightly: NightlyMode | None,
    evaluations_per_night: int | None,
    timezone: str,
    runner: dict[str, Any] | None = None,
) -> SearchSummary:
    set_fault_scope(str(flow_run.get_id() or ""))
    config, out, checkpoint = check_search_inputs(
        config_path, output_dir, resume, nightly, evaluations_per_night, timezone, runner
    )
    out.mkdir(parents=True, exist_ok=True)
    tracking = TrackingQueue(console)  # first: its process imports MLflow while the search sets up
    try:
        context = prepare_search(config, config_path, out, checkpoint, zoo_dir, tracking)
    except BaseException:
        tracking.close(timeout=0)
        raise
    ok = False
    state = SearchState()
    loop: dict[str, float] = {}
    """This run's loop: its wall time and the candidates it scored (the runner's throughput)."""
    try:
        with open_runner(context) as scorer:
            resumed = checkpoint is not None
            if checkpoint is None:
                checkpoint = start_search(context, Path(config_path).read_text(), scorer.score_parent)
            set_guard_reference(context, checkpoint)
            if resumed:
                state = _resumed_state(context, checkpoint)
            if budget_raised(checkpoint.stop_reason, config.budget, state.evaluations):
                checkpoint.stop_reason = None  # a search stopped by its budget goes on when given more
            if checkpoint.stop_reason is None:
                started, done = time.perf_counter(), state.evaluations
                checkpoint.stop_reason = _run_loop(context, checkpoint, state, scorer)
                loop = {
                    "loop_seconds": round(time.perf_counter() - started, 3),
                    "loop_evaluations": state.evaluations - done,
                }
                context.candidate_log.sync()
                save_checkpoint(out, checkpoint)
            report = {**scorer.report(), **loop}
        summary = finish_search(context, checkpoint, state, report)
        ok = True
        return summary
    finally:
        # a call cut off mid-way (server lost while answering) may have left a partial or duplicate run
        _sync_mlflow(context, state, "check MLflow against candidates.jsonl")
        context.tracking.submit("end the search run", partial(context.tracker.finish, ok))
        try:
            context.candidate_log.close()
        finally:
            context.workbench.close()
            _close_tracking(context)


def _resumed_state(context: SearchContext, checkpoint: Checkpoint) -> SearchState:
    """The candidates already scored, judged again (their objectives and guard standing are not logged)."""
    state = SearchState(read_candidate_log(context.out))
    for candidate in state.candidates:
        context.judge.judge(candidate)
    _sync_mlflow(context, state, "sync candidates.jsonl to MLflow")
    console.print(
        f"resuming {context.out} at generation {checkpoint.algorithm.generation}: "
        f"{state.evaluations} candidates already evaluated"
    )
    return state


def _run_loop(context: SearchContext, checkpoint: Checkpoint, state: SearchState, scorer: Runner) -> StopReason:
    """The loop with this flow's runner and records. A generation's checkpoint is taken as soon as it is
    told, and written once the next generation has been asked for and its first candidate sent to merge
    ahead: that merge then runs while the checkpoint is fsynced and Prefect starts the merge task, instead
    of after them. What is written is the same."""
    config = context.config
    told: list[bytes] = []

    def write_told(_batch: Sequence[Candidate] = ()) -> None:
        if told:
            context.candidate_log.sync()
            write_checkpoint(context.out, told.pop())
            _print_generation(checkpoint.history[-1], state)

    def scored(candidate: Candidate) -> None:
        context.candidate_log.append(candidate)
        context.tracking.submit(
            f"candidate {candidate.candidate_id}",
            partial(context.tracker.log_candidate, candidate, context.parent_hashes),
        )
        best = best_candidate(state.candidates)  # the pure function: a Prefect task run per line costs 25 ms
        progress.update(
            evaluations=state.evaluations,
            generation=candidate.generation,
            best=best.fitness if best else None,
            workers=scorer.busy_line(),
        )

    def on_told(_stats: GenerationStats) -> None:
        told.append(checkpoint_bytes(checkpoint))

    with SearchProgress(config, state.evaluations, console) as progress:
        reason = run_generations(
            checkpoint.algorithm,
            context.decoder,
            scorer,
            context.judge.judge,
            state,
            config.budget,
            config.algorithm.generations,
            checkpoint.history,
            Hooks(asked=write_told, scored=scored, told=on_told),
        )
    write_told()
    return reason


def _print_generation(stats: GenerationStats, state: SearchState) -> None:
    console.print(
        f"generation {stats.generation}: {stats.evaluations} evaluations, best {stats.best_fitness:.3f}, "
        f"generation mean {stats.mean_fitness:.3f}" + (f" (failed {state.failed})" if state.failed else "")
    )


def _sync_mlflow(context: SearchContext, state: SearchState, label: str) -> None:
    context.tracking.submit(
        label, partial(sync_candidates, context.tracker, list(state.candidates), context.parent_hashes)
    )


def _close_tracking(context: SearchContext) -> None:
    left = context.tracking.close(mlflow_wait())
    if left:
        console.print(
            f"[yellow]MLflow ({context.tracker.uri}) did not take {len(left)} call(s): {', '.join(left[:5])}"
            + (" ..." if len(left) > 5 else "")
            + f".[/] Nothing is lost: rerun the same command on {context.out} when MLflow is reachable to sync them."
        )
