"""The search flow: download the parents, then per generation merge and evaluate each new candidate,
select, breed; finally write the winner as a full model and the summary.

Every finished candidate is appended to `candidates.jsonl` the moment it finishes and logged to MLflow from
a worker process (flows/tracking_queue.py: the search never waits on MLflow, nor dies of its outage), and
the algorithm is checkpointed after every generation (flows/search_state.py), so a kill at any moment loses
nothing: rerunning the same command on the same output directory resumes, and a candidate whose recipe,
parents and evaluation were already scored is never evaluated again.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from prefect import flow
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from rich.console import Console

from flows import stages
from flows.live import SearchProgress
from flows.nightly import NightlyMode, plan_night
from flows.paths import evomerge_version, runs_dir
from flows.preflight import check_search_config
from flows.search_state import (
    CANDIDATES_NAME,
    CandidateLog,
    Checkpoint,
    GenerationStats,
    checkpoint_bytes,
    config_identity,
    load_checkpoint,
    read_candidate_log,
    save_checkpoint,
    write_checkpoint,
    write_json_atomically,
)
from flows.tracking import SearchTracker, library_tags, sync_candidates
from flows.tracking_queue import TrackingQueue
from genetics.algorithm import make_algorithm
from genetics.genome import GenomeSpec
from genetics.individual import Individual
from genetics.search_config import SearchConfig
from tasks.candidate import CandidateRecord, candidate_key, merge_key
from tasks.errors import EvomergeError, StageFailure
from tasks.evaluate import EvaluationConfig, Evaluator
from tasks.faults import set_fault_scope
from tasks.held_out import BOOTSTRAP_ITERATIONS, CONFIDENCE, bootstrap_scores
from tasks.merge.plan import plan_merge
from tasks.merge.writer import write_model
from tasks.search_scoring import fitness_policies, held_out_tasks, search_evaluation, task_options
from tasks.select import FitnessPolicy, GuardPolicy, Objective, best_candidate
from tasks.workbench import Workbench, search_torch_threads

console = Console(file=sys.stderr)
"""Bound to the stream stderr is now: lm-eval's calls swap `sys.stderr` for /dev/null process-wide (to hide
its bars), and the MLflow worker's reports (printed by a listener thread) must not vanish meanwhile."""


@dataclass
class SearchState:
    records: list[CandidateRecord] = field(default_factory=list)
    by_key: dict[str, CandidateRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {record.key: record for record in self.records}

    @property
    def evaluations(self) -> int:
        return len(self.records)

    def add(self, record: CandidateRecord) -> None:
        self.records.append(record)
        self.by_key[record.key] = record


@dataclass
class SearchContext:
    """Everything one search run holds while it loops; built once per process."""

    config: SearchConfig
    genome: GenomeSpec
    out: Path
    workbench: Workbench
    evaluator: Evaluator
    tracker: SearchTracker
    tracking: TrackingQueue
    """Every MLflow call after the search run exists goes through it, in order."""
    parent_hashes: dict[str, str]
    evaluation_key: str
    policy: FitnessPolicy
    guard: GuardPolicy | None
    candidate_log: CandidateLog
    config_dir: Path = Path()
    """Where the config file is: its relative include paths start there."""
    guard_reference: float | None = None
    """The reference model's guard score, known once the parents are scored."""

    @property
    def task_order(self) -> list[str]:
        return self.policy.tasks

    def objectives(self, record: CandidateRecord) -> tuple[float, ...]:
        """NSGA-II's objectives: each task's value oriented so that higher is better (and the retention, when
        the guard is an objective); a failed candidate gets zeros, and ranks last by its violation."""
        count = len(self.task_order) + (1 if self.guard_is_objective else 0)
        if record.status != "ok":
            return (0.0,) * count
        values = self.policy.oriented(record.scores)
        return (*values, record.retention or 0.0) if self.guard_is_objective else values

    @property
    def guard_is_objective(self) -> bool:
        return self.guard is not None and self.config.guard is not None and self.config.guard.objective

    def judge(self, record: CandidateRecord) -> None:
        """Fitness, and with a guard the retention and feasibility, of a scored candidate."""
        record.fitness = self.policy.fitness(record.scores)
        if self.guard is not None and self.guard_reference is not None:
            record.retention = self.guard.score(self.guard.raw(record.scores)) - self.guard_reference
            record.feasible = self.guard_is_objective or not self.guard.violation(record.retention)

    def violation(self, record: CandidateRecord) -> float:
        if record.status != "ok":
            return float("inf")
        if self.guard is None or record.retention is None or self.guard_is_objective:
            return 0.0
        return self.guard.violation(record.retention)


def _evaluate_candidate(
    record: CandidateRecord,
    context: SearchContext,
    merge_next: Callable[[], None] | None = None,
) -> None:
    """Merge and score one candidate in place; a failure is recorded on the candidate, not raised (except a
    `StageFailure`, which is the run's, not the candidate's: it fails the flow run for a retry to redo).
    Once it is merged, `merge_next` starts the next candidate's merge ahead, to run while this one is
    scored (tasks/workbench.py)."""
    started = time.perf_counter()
    label = record.candidate_id
    # quoted: Prefect would otherwise walk the workbench, the evaluator (lm-eval's tasks and their documents)
    # and the recipe looking for futures, on every call
    workbench, evaluator, recipe = quote(context.workbench), quote(context.evaluator), quote(record.recipe)
    try:
        record.tensors_sha256 = stages.merge(
            workbench, recipe, label, key=merge_key(record.recipe, context.parent_hashes)
        )
    except StageFailure:
        raise
    except Exception as error:  # noqa: BLE001 - any candidate failure is recorded and the search goes on
        _record_failure(record, error)
    if merge_next is not None:
        merge_next()
    if record.status == "ok":
        try:
            record.scores = stages.evaluate(
                workbench, evaluator, label, recipe, key=record.key, tensors_sha256=record.tensors_sha256
            )
            context.judge(record)
        except StageFailure:
            raise
        except Exception as error:  # noqa: BLE001
            _record_failure(record, error)
    record.seconds = time.perf_counter() - started


def _record_failure(record: CandidateRecord, error: Exception) -> None:
    record.status = "failed"
    record.fitness = None
    record.error = f"{type(error).__name__}: {error}"
    console.print(f"[red]candidate {record.candidate_id} failed:[/] {record.error}")
    if not isinstance(error, EvomergeError):
        console.print(traceback.format_exc(), style="dim")


def check_search_inputs(
    config_path: str,
    output_dir: str | None,
    resume: bool,
    nightly: NightlyMode | None = None,
    evaluations_per_night: int | None = None,
    timezone: str = "UTC",
) -> tuple[SearchConfig, Path, Checkpoint | None]:
    """The config, the output directory and its checkpoint, or the error a user must fix first (a bad config,
    a directory holding another search, `--resume` with nothing to resume). Runs before anything is written;
    the CLI calls it before starting the flow, so these errors come without a Prefect traceback.

    A scheduled (`nightly`) run gets its night's output directory, seed and budget (flows/nightly.py)."""
    config = check_search_config(config_path)
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


@flow(name="evomerge-search", log_prints=False)
def search(
    config_path: str,
    output_dir: str | None = None,
    zoo_dir: str | None = None,
    resume: bool = False,
    nightly: str | None = None,
    evaluations_per_night: int | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """Breed a child from the parents in `config_path`; returns the summary written to `summary.json`.

    An output directory holding a checkpoint of the same search is resumed; `resume=True` insists on it.
    `nightly` is set by a scheduled deployment (`evomerge serve`): "continue" goes on with the same search,
    `evaluations_per_night` more each night; "new" starts one per night, seeded from the date."""
    # The body lives in a plain function: a served deployment's runner pickles the flow function by value
    # with the globals it names, and this module's console (a lock inside) cannot be pickled.
    # (Parameter types are builtins for the same reason: Prefect validates them where only those are known.)
    mode = cast(NightlyMode | None, nightly)  # plan_night refuses any other value
    return run_search(config_path, output_dir, zoo_dir, resume, mode, evaluations_per_night, timezone)


def run_search(
    config_path: str,
    output_dir: str | None,
    zoo_dir: str | None,
    resume: bool,
    nightly: NightlyMode | None,
    evaluations_per_night: int | None,
    timezone: str,
) -> dict[str, Any]:
    set_fault_scope(str(flow_run.get_id() or ""))
    config, out, checkpoint = check_search_inputs(
        config_path, output_dir, resume, nightly, evaluations_per_night, timezone
    )
    out.mkdir(parents=True, exist_ok=True)
    tracking = TrackingQueue(console)  # first: its process imports MLflow while the search sets up
    try:
        context = _prepare(config_path, config, out, checkpoint, zoo_dir, tracking)
    except BaseException:
        tracking.close(timeout=0)
        raise
    tracker, parent_hashes, references = context.tracker, context.parent_hashes, config.parent_models()
    ok = False
    state = SearchState()
    try:
        if checkpoint is None:
            checkpoint = _start(context, config_path, references)
        else:
            state = SearchState(read_candidate_log(out))
            context.tracking.submit(
                "sync candidates.jsonl to MLflow", partial(sync_candidates, tracker, list(state.records), parent_hashes)
            )
            console.print(
                f"resuming {out} at generation {checkpoint.algorithm.generation}: "
                f"{state.evaluations} candidates already evaluated"
            )
        _set_guard_reference(context, checkpoint)
        if _budget_raised(checkpoint, config, state):
            checkpoint.stop_reason = None  # a search stopped by its budget goes on when given more
        if checkpoint.stop_reason is None:
            checkpoint.stop_reason = _run_generations(context, checkpoint, state)
            context.candidate_log.sync()
            save_checkpoint(out, checkpoint)
        summary = _finish(context, checkpoint, state)
        ok = True
        return summary
    finally:
        # a call cut off mid-way (server lost while answering) may have left a partial or duplicate run
        context.tracking.submit(
            "check MLflow against candidates.jsonl",
            partial(sync_candidates, tracker, list(state.records), parent_hashes),
        )
        context.tracking.submit("end the search run", partial(tracker.finish, ok))
        try:
            context.candidate_log.close()
        finally:
            context.workbench.close()
            _close_tracking(context)


def _prepare(
    config_path: str,
    config: SearchConfig,
    out: Path,
    checkpoint: Checkpoint | None,
    zoo_dir: str | None,
    tracking: TrackingQueue,
) -> SearchContext:
    """Parents downloaded and checked, evaluator, MLflow run and workbench built: the search, ready to loop."""
    genome = config.genome()
    base_dir = str(Path(config_path).resolve().parent)

    references = config.parent_models()
    resolved = {ref: stages.download(ref, base_dir, zoo_dir) for ref in references}
    paths = {ref: model.path for ref, model in resolved.items()}
    parent_hashes = {ref: model.content_sha256 for ref, model in resolved.items()}
    plan_merge(genome.decode([0.5] * genome.size), paths, f"{config_path}: recipe")  # fail fast on a bad recipe
    if checkpoint is not None and checkpoint.parent_hashes != parent_hashes:
        changed = sorted(ref for ref in parent_hashes if checkpoint.parent_hashes.get(ref) != parent_hashes[ref])
        raise EvomergeError(
            f"{out}: the search there was run on other parent models ({', '.join(changed)} changed since); "
            "use another output directory (--out) to search on these"
        )

    evaluation = search_evaluation(config, Path(base_dir))
    evaluator = Evaluator(evaluation)
    policy, guard = fitness_policies(config, evaluator)
    tracker = SearchTracker(
        experiment=f"evomerge/{config.name}",
        run_name=f"{config.name}-seed{config.seed}",
        resume_run_id=checkpoint.mlflow_run_id if checkpoint else None,
    )
    workbench = Workbench(paths, reference=config.recipe.get("base_model") or references[0])
    torch.set_num_threads(search_torch_threads(workbench.parameter_count(), _requested_threads()))
    if merge_ahead_enabled():
        workbench.start_merging_ahead()  # its worker starts while the parents are scored
    context = SearchContext(
        config=config,
        genome=genome,
        out=out,
        workbench=workbench,
        evaluator=evaluator,
        tracker=tracker,
        tracking=tracking,
        parent_hashes=parent_hashes,
        evaluation_key=evaluation.sha256(),
        policy=policy,
        guard=guard,
        candidate_log=CandidateLog(out),
        config_dir=Path(base_dir),
    )
    return context


def _all_objectives(context: SearchContext) -> list[Objective]:
    return [*context.policy.objectives, *(context.guard.objectives if context.guard else ())]


def _set_guard_reference(context: SearchContext, checkpoint: Checkpoint) -> None:
    """The reference's guard score, from the parents' stored scores (a resumed search finds them there)."""
    guard = context.guard
    if guard is None:
        return
    name = guard.reference_model(checkpoint.parents, context.config.recipe.get("base_model"))
    context.guard_reference = guard.score(checkpoint.parents[name])
    console.print(
        f"guard: {', '.join(o.task for o in guard.objectives)}: reference {name} scores "
        f"{context.guard_reference:.3f}; a candidate may drop at most {guard.max_drop:g} below it"
    )


MLFLOW_WAIT_SECONDS = 60.0
"""How long a search that has ended waits for MLflow to take what is still queued (`EVOMERGE_MLFLOW_WAIT`),
before it writes summary.json and again before it exits."""


def _budget_raised(checkpoint: Checkpoint, config: SearchConfig, state: SearchState) -> bool:
    if checkpoint.stop_reason == "max_minutes":
        return True  # the clock is per run
    limit = config.budget.max_evaluations
    return checkpoint.stop_reason == "max_evaluations" and (limit is None or limit > state.evaluations)


def _requested_threads() -> int | None:
    value = os.environ.get("EVOMERGE_TORCH_THREADS")
    return int(value) if value else None


def _mlflow_wait() -> float:
    return float(os.environ.get("EVOMERGE_MLFLOW_WAIT", MLFLOW_WAIT_SECONDS))


def _close_tracking(context: SearchContext) -> None:
    left = context.tracking.close(_mlflow_wait())
    if left:
        console.print(
            f"[yellow]MLflow ({context.tracker.uri}) did not take {len(left)} call(s): {', '.join(left[:5])}"
            + (" ..." if len(left) > 5 else "")
            + f".[/] Nothing is lost: rerun the same command on {context.out} when MLflow is reachable to sync them."
        )


def _start(context: SearchContext, config_path: str, references: list[str]) -> Checkpoint:
    """A new search: log its config, score the parents, and checkpoint the untouched algorithm."""
    config = context.config
    context.tracking.submit(
        "log the search's config",
        partial(
            context.tracker.log_search,
            Path(config_path).read_text(),
            params={
                "seed": config.seed,
                "algorithm": config.algorithm.name,
                "genome_size": context.genome.size,
                "tasks": ",".join(config.evaluation.task_names()),
                "output_dir": str(context.out),
            },
            tags={
                "prefect.flow_run_id": str(flow_run.get_id() or ""),
                "search.name": config.name,
                "evaluation_key": context.evaluation_key,
                "config_dir": str(Path(config_path).resolve().parent),
                **library_tags(),
                **{
                    f"direction/{o.task}/{o.metric}".replace(",", "_"): "higher" if o.higher_is_better else "lower"
                    for o in _all_objectives(context)
                },
                **{f"parent_model_sha256/{ref}": digest for ref, digest in context.parent_hashes.items()},
            },
        ),
    )
    parents: dict[str, dict[str, float]] = {}
    for ref in references:
        stages.merge(context.workbench, None, ref, parent=ref)
        scores = stages.evaluate(context.workbench, context.evaluator, ref)
        parents[ref] = _raw_values(context, scores)
        context.tracking.submit(f"parent {ref} scores", partial(context.tracker.log_parent_scores, ref, parents[ref]))
        console.print(
            f"parent {ref}: "
            + ", ".join(f"{o.task} {parents[ref][o.task]:.3f}{o.arrow}" for o in _all_objectives(context))
        )
    (context.out / CANDIDATES_NAME).write_text("")
    checkpoint = Checkpoint(
        config_identity=config_identity(config),
        algorithm=make_algorithm(config.algorithm, context.genome.size, config.seed),
        mlflow_run_id=context.tracker.run_id,
        parent_hashes=context.parent_hashes,
        parents=parents,
    )
    save_checkpoint(context.out, checkpoint)
    return checkpoint


def _run_generations(context: SearchContext, checkpoint: Checkpoint, state: SearchState) -> str:
    """Ask, score, tell, checkpoint, until a stop rule fires; returns which one did.

    A generation's checkpoint is taken as soon as it is told, and written once the next generation has
    been asked for and its first candidate sent to merge ahead: that merge then runs while the checkpoint
    is fsynced and Prefect starts the merge task, instead of after them. What is written is the same."""
    config = context.config
    algorithm = checkpoint.algorithm
    budget = config.budget
    started = time.monotonic()
    told: bytes | None = None
    """The last generation's checkpoint, not yet written."""
    with SearchProgress(config, state.evaluations, console) as progress:
        try:
            while algorithm.generation < config.algorithm.generations:
                generation = algorithm.generation
                individuals = algorithm.ask()
                _merge_next(context, state, individuals, None)
                if told is not None:
                    _write_told(context, checkpoint, state, told)
                    told = None
                for index, individual in enumerate(individuals):
                    if individual.fitness is not None:  # an elite carried over, already scored
                        continue
                    if budget.max_evaluations is not None and state.evaluations >= budget.max_evaluations:
                        return "max_evaluations"
                    if budget.max_minutes is not None and time.monotonic() - started >= 60 * budget.max_minutes:
                        return "max_minutes"
                    merge_next = partial(_merge_next, context, state, individuals, index)
                    _score(context, state, individual, generation, index, merge_next)
                    best = best_candidate(state.records)  # the pure function: a Prefect task run per line costs 25 ms
                    progress.update(
                        evaluations=state.evaluations, generation=generation, best=best.fitness if best else None
                    )
                context.workbench.settle()
                algorithm.tell(individuals)
                checkpoint.history.append(_generation_stats(generation, state, individuals))
                told = checkpoint_bytes(checkpoint)
                if _plateaued(checkpoint.history, budget.plateau_generations, budget.plateau_delta):
                    _write_told(context, checkpoint, state, told)
                    return "plateau"
            if told is not None:
                _write_told(context, checkpoint, state, told)
        finally:
            context.workbench.settle()
    return "generations"


def _write_told(context: SearchContext, checkpoint: Checkpoint, state: SearchState, told: bytes) -> None:
    """Write the checkpoint taken when the last generation was told, and report that generation."""
    context.candidate_log.sync()
    write_checkpoint(context.out, told)
    _print_generation(checkpoint.history[-1], state)


def merge_ahead_enabled() -> bool:
    return os.environ.get("EVOMERGE_MERGE_AHEAD", "1").strip().lower() not in {"0", "false", "no", "off"}


def _merge_next(context: SearchContext, state: SearchState, individuals: list[Individual], index: int | None) -> None:
    """Start merging the candidate that will be scored after individual `index` (None: before any of this
    generation), if the budget leaves room for it: the next one of this generation not scored yet (the
    current one is not in the log yet)."""
    limit = context.config.budget.max_evaluations
    in_flight = 0 if index is None else 1
    if not context.workbench.merging_ahead or (limit is not None and state.evaluations + in_flight >= limit):
        return
    current = None if index is None else context.genome.decode(individuals[index].genes).sha256()
    for later in range(0 if index is None else index + 1, len(individuals)):
        if individuals[later].fitness is not None:
            continue
        recipe = context.genome.decode(individuals[later].genes)
        key = candidate_key(recipe, context.parent_hashes, context.evaluation_key)
        if key in state.by_key or recipe.sha256() == current:
            continue
        context.workbench.merge_ahead(recipe)
        return


def _score(
    context: SearchContext,
    state: SearchState,
    individual: Individual,
    generation: int,
    index: int,
    merge_next: Callable[[], None] | None = None,
) -> None:
    """Give `individual` its fitness: from the log when its key was scored before, else merged and evaluated."""
    recipe = context.genome.decode(individual.genes)
    key = candidate_key(recipe, context.parent_hashes, context.evaluation_key)
    record = state.by_key.get(key)
    if record is None:
        record = CandidateRecord(
            candidate_id=f"g{generation:02d}-c{index:02d}",
            generation=generation,
            key=key,
            recipe=recipe,
            genes=dict(zip(context.genome.names(), individual.genes, strict=True)),
            genetic_parents=individual.genetic_parents,
            origin=individual.origin,
        )
        _evaluate_candidate(record, context, merge_next)
        context.candidate_log.append(record)
        state.add(record)
        context.tracking.submit(
            f"candidate {record.candidate_id}", partial(context.tracker.log_candidate, record, context.parent_hashes)
        )
    individual.candidate_id = record.candidate_id
    individual.fitness = record.fitness if record.fitness is not None else 0.0
    individual.objectives = context.objectives(record)
    individual.violation = context.violation(record)
    individual.feasible = individual.violation == 0.0


def _generation_stats(generation: int, state: SearchState, individuals: list[Individual]) -> GenerationStats:
    best = best_candidate(state.records)  # the pure function: the select task serialises every record
    return GenerationStats(
        generation=generation,
        evaluations=state.evaluations,
        best_fitness=best.fitness if best is not None and best.fitness is not None else 0.0,
        mean_fitness=_mean([ind.fitness or 0.0 for ind in individuals if ind.violation != float("inf")]),
    )


def _mean(values: list[float]) -> float:
    """The generation's mean fitness over the candidates that finished (a failed one has no fitness: counted
    as 0 it would be the best of a lower-is-better search)."""
    return sum(values) / len(values) if values else 0.0


def _print_generation(stats: GenerationStats, state: SearchState) -> None:
    failed = sum(r.status == "failed" for r in state.records)
    console.print(
        f"generation {stats.generation}: {stats.evaluations} evaluations, best {stats.best_fitness:.3f}, "
        f"generation mean {stats.mean_fitness:.3f}" + (f" (failed {failed})" if failed else "")
    )


def _plateaued(history: list[GenerationStats], generations: int | None, delta: float) -> bool:
    """True when the best fitness so far rose by no more than `delta` over the last `generations`."""
    if generations is None or len(history) <= generations:
        return False
    return history[-1].best_fitness - history[-1 - generations].best_fitness <= delta


def _finish(context: SearchContext, checkpoint: Checkpoint, state: SearchState) -> dict[str, Any]:
    """Write the winner as a model (checked against the evaluated tensors), log it, write summary.json."""
    config = context.config
    best = stages.select(state.records)
    if best is None:
        kept = [r for r in state.records if r.status == "ok" and r.retention is not None]
        if kept and context.guard is not None:
            closest = max(r.retention or 0.0 for r in kept)
            raise EvomergeError(
                f"no candidate kept the guard: all {len(kept)} scored ones fell more than {context.guard.max_drop:g} "
                f"below the reference (the best retention was {closest:+.3f}); see candidates.jsonl, and raise "
                "guard.max_drop or search longer"
            )
        raise EvomergeError("no candidate finished; see candidates.jsonl and MLflow for the errors")
    best_dir = context.out / "best"
    written = write_model(context.workbench.plan(best.recipe), best_dir, force=True)
    if written != best.tensors_sha256:
        raise EvomergeError(f"the winner written to {best_dir} differs from the evaluated tensors")
    context.tracking.submit("log the winner", partial(context.tracker.log_best, best))
    registry_name = config.registry_name()
    if registry_name:
        description = (
            f"{best.candidate_id} of search {config.name!r} (seed {config.seed}, {config.algorithm.name}): "
            f"fitness {best.fitness:.4f} on {', '.join(context.task_order)}.\n\nRecipe:\n\n{best.recipe.to_yaml()}"
        )
        context.tracking.submit(
            f"register the winner as {registry_name!r}",
            partial(context.tracker.register_winner, registry_name, best, best_dir, description),
        )
    by_id = {record.candidate_id: record for record in state.records}
    summary = {
        "search": config.name,
        "seed": config.seed,
        "algorithm": config.algorithm.name,
        "metric": config.evaluation.metric,
        "objectives": [
            {**o.to_json(), "output_type": context.evaluator.output_type(o.task)} for o in context.policy.objectives
        ],
        "fitness_label": context.policy.label(),
        "parents": checkpoint.parents,
        "parent_fitness": {ref: _parent_fitness(context, values) for ref, values in checkpoint.parents.items()},
        "best": {
            "candidate_id": best.candidate_id,
            "recipe": best.recipe.canonical_dict(),
            "scores": _raw_values(context, best.scores),
            "fitness": best.fitness,
            "retention": best.retention,
            "tensors_sha256": best.tensors_sha256,
            "model_dir": str(best_dir),
        },
        "evaluations": state.evaluations,
        "failed": sum(r.status == "failed" for r in state.records),
        "stop_reason": checkpoint.stop_reason,
        "history": [vars(stats) for stats in checkpoint.history],
        ("pareto_front" if config.algorithm.name == "nsga2" else "hall_of_fame"): [
            {"candidate_id": ind.candidate_id, "scores": _raw_values(context, by_id[ind.candidate_id].scores)}
            for ind in checkpoint.algorithm.best()
            if ind.candidate_id in by_id and by_id[ind.candidate_id].status == "ok"
        ],
        "mlflow_run_id": context.tracker.run_id,
        "registered_model": config.registry_name(),
        "mlflow_tracking_uri": context.tracker.uri,
        "prefect_flow_run_id": str(flow_run.get_id() or ""),
        "prefect_flow_run_name": str(flow_run.get_name() or ""),
        "evomerge_version": evomerge_version(),
    }
    if context.guard is not None and config.guard is not None:
        summary["guard"] = {
            "objectives": [o.to_json() for o in context.guard.objectives],
            "max_drop": context.guard.max_drop,
            "reference": context.guard.reference_model(checkpoint.parents, config.recipe.get("base_model")),
            "reference_score": context.guard_reference,
            "objective": config.guard.objective,
            "infeasible": sum(r.status == "ok" and not r.feasible for r in state.records),
        }
    summary["leaderboard"] = _leaderboard(context, state)
    held_out = _held_out(context, checkpoint, state, best)
    if held_out is not None:
        summary["held_out"] = held_out
    # summary.json says the search is over: by then MLflow holds every candidate, unless it stayed unreachable
    context.tracking.wait(_mlflow_wait())
    write_json_atomically(context.out / "summary.json", summary)
    for artifact in [context.out / "summary.json", context.out / CANDIDATES_NAME, *_plots(context, checkpoint, state)]:
        context.tracking.submit(f"artifact {artifact.name}", partial(context.tracker.log_artifact, artifact))
    return summary


LEADERBOARD_SIZE = 10


def _held_out(
    context: SearchContext, checkpoint: Checkpoint, state: SearchState, best: CandidateRecord
) -> dict[str, Any] | None:
    """Parents, winner (and NSGA-II's Pareto set) scored on the test splits, with bootstrap intervals."""
    config = context.config
    splits = held_out_tasks(config, context.config_dir)
    if not splits:
        if config.evaluation.held_out_tasks is None:
            console.print("no held-out test split (no <task>_test task for any task): search-split scores only")
        return None
    objectives = {o.task: o for o in context.policy.objectives}
    entries = {entry.task: entry for entry in config.evaluation.tasks}
    tasks = list(splits.values())
    options = tuple((split, task_options(entries[task], with_limit=False)) for task, split in splits.items())
    evaluation = search_evaluation(config, context.config_dir)
    evaluator = Evaluator(
        EvaluationConfig(
            tasks=tuple(tasks),
            extra_include_paths=evaluation.extra_include_paths,
            options=options,
            batch_size=config.evaluation.batch_size,
        )
    )
    metrics = {split: objectives[task].metric for task, split in splits.items()}
    weights = {split: objectives[task].weight for task, split in splits.items()}
    by_id = {record.candidate_id: record for record in state.records}
    shown: list[tuple[str, CandidateRecord | None, str | None]] = [(ref, None, ref) for ref in checkpoint.parents]
    shown.append((f"child {best.candidate_id}", best, None))
    if config.algorithm.name == "nsga2":
        for member in checkpoint.algorithm.best():
            record = by_id.get(member.candidate_id)
            if record is not None and record is not best and record.status == "ok":
                shown.append((f"front {record.candidate_id}", record, None))
    models = {}
    for name, record, parent in shown:
        stages.merge(context.workbench, record.recipe if record else None, f"held-out {name}", parent=parent)
        items = evaluator.item_scores(context.workbench.model, context.workbench.tokenizer, metrics)
        scores = bootstrap_scores(
            {task: items[task] for task in tasks}, seed=config.seed, weights=weights, aggregate=config.fitness.aggregate
        ).to_json()
        models[name] = scores
        context.tracking.submit(
            f"held-out scores of {name}",
            partial(context.tracker.log_held_out, name, {**scores["tasks"], "mean": scores["mean"]}),
        )
    return {
        "tasks": tasks,
        "search_tasks": list(splits),
        "metrics": metrics,
        "higher_is_better": {split: objectives[task].higher_is_better for task, split in splits.items()},
        "confidence": CONFIDENCE,
        "bootstrap_iterations": BOOTSTRAP_ITERATIONS,
        "models": models,
    }


def _raw_values(context: SearchContext, scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each search (and guard) task's value as lm-eval reported it, in the config's order."""
    return {o.task: o.value(scores) for o in _all_objectives(context)}


def _leaderboard(context: SearchContext, state: SearchState) -> list[dict[str, Any]]:
    """The best finished candidates, best first (earliest first among equals); with a guard, the feasible
    ones first, as the search ranks them."""
    finished = [r for r in state.records if r.status == "ok" and r.fitness is not None]
    ranked = sorted(finished, key=lambda r: (r.feasible, r.fitness or 0.0), reverse=True)[:LEADERBOARD_SIZE]
    return [
        {
            "candidate_id": r.candidate_id,
            "fitness": r.fitness,
            "scores": _raw_values(context, r.scores),
            "retention": r.retention,
            "feasible": r.feasible,
            "recipe_sha256": r.recipe.sha256(),
        }
        for r in ranked
    ]


def _parent_fitness(context: SearchContext, values: dict[str, float]) -> float:
    return context.policy.fitness({o.task: {o.metric: values[o.task]} for o in context.policy.objectives})


def _plots(context: SearchContext, checkpoint: Checkpoint, state: SearchState) -> list[Path]:
    from flows.plots import plot_fitness, plot_pareto

    written = []
    if checkpoint.history:
        parent_fitness = [_parent_fitness(context, values) for values in checkpoint.parents.values() if values]
        written.append(plot_fitness(checkpoint.history, context.out / "fitness.png", max(parent_fitness, default=None)))
    if context.config.algorithm.name == "nsga2" and len(context.task_order) >= 2:
        finished = [context.objectives(r) for r in state.records if r.status == "ok"]
        front = [ind.objectives for ind in checkpoint.algorithm.best()]
        parents = {
            name: tuple(o.orient(values[o.task]) for o in context.policy.objectives)
            for name, values in checkpoint.parents.items()
        }
        written.append(plot_pareto(context.task_order, finished, front, parents, context.out / "pareto.png"))
    return written
