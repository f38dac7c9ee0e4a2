"""The end of a search: the winner written as a model (checked against the tensors it was scored on) and
registered, the parents and winner (and NSGA-II's front) scored on the held-out test split, the summary,
the leaderboard and the plots."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from flows import stages
from flows.console import console
from flows.paths import evomerge_version
from flows.search_context import SearchContext
from flows.search_state import CANDIDATES_NAME, Checkpoint, write_json_atomically
from flows.summary import FrontMember, GuardReport, HeldOutReport, LeaderboardRow, SearchSummary, Winner
from genetics.candidate import Candidate
from genetics.fitness import leaders
from genetics.loop import SearchState
from tasks.errors import EvomergeError
from tasks.evaluate import EvaluationConfig, Evaluator
from tasks.held_out import BOOTSTRAP_ITERATIONS, CONFIDENCE, bootstrap_scores
from tasks.merge.writer import write_model
from tasks.search_scoring import held_out_tasks, search_evaluation, task_options

LEADERBOARD_SIZE = 10
MLFLOW_WAIT_SECONDS = 60.0
"""How long a search that has ended waits for MLflow to take what is still queued (`EVOMERGE_MLFLOW_WAIT`),
before it writes summary.json and again before it exits."""


def mlflow_wait() -> float:
    return float(os.environ.get("EVOMERGE_MLFLOW_WAIT", MLFLOW_WAIT_SECONDS))


def finish_search(
    context: SearchContext, checkpoint: Checkpoint, state: SearchState, runner: dict[str, Any]
) -> SearchSummary:
    """Write the winner as a model (checked against the evaluated tensors), log it, write summary.json."""
    config = context.config
    best = stages.select(state.candidates)
    if best is None:
        raise EvomergeError(_no_winner(context, state))
    assert best.recipe is not None and best.fitness is not None
    best_dir = context.out / "best"
    written = write_model(context.workbench.plan(best.recipe), best_dir, force=True)
    if written != best.tensors_sha256:
        raise EvomergeError(f"the winner written to {best_dir} differs from the evaluated tensors")
    context.tracking.submit("log the winner", partial(context.tracker.log_best, best))
    registry_name = config.registry_name()
    if registry_name:
        description = (
            f"{best.candidate_id} of search {config.name!r} (seed {config.seed}, {config.algorithm.name}): "
            f"fitness {best.fitness:.4f} on {', '.join(context.policy.tasks)}.\n\nRecipe:\n\n{best.recipe.to_yaml()}"
        )
        context.tracking.submit(
            f"register the winner as {registry_name!r}",
            partial(context.tracker.register_winner, registry_name, best, best_dir, description),
        )
    by_id = {candidate.candidate_id: candidate for candidate in state.candidates}
    summary = SearchSummary(
        search=config.name,
        seed=config.seed,
        algorithm=config.algorithm.name,
        metric=config.evaluation.metric,
        objectives=[
            {**o.to_json(), "output_type": context.evaluator.output_type(o.task)} for o in context.policy.objectives
        ],
        fitness_label=context.policy.label(),
        parents=checkpoint.parents,
        parent_fitness={ref: context.parent_fitness(values) for ref, values in checkpoint.parents.items()},
        best=Winner(
            candidate_id=best.candidate_id,
            recipe=best.recipe.canonical_dict(),
            scores=context.raw_values(best.scores),
            fitness=best.fitness,
            retention=best.retention,
            tensors_sha256=best.tensors_sha256,
            model_dir=str(best_dir),
        ),
        evaluations=state.evaluations,
        failed=state.failed,
        stop_reason=checkpoint.stop_reason,
        history=[vars(stats) for stats in checkpoint.history],
        best_set=[
            FrontMember(candidate_id=member.candidate_id, scores=context.raw_values(by_id[member.candidate_id].scores))
            for member in checkpoint.algorithm.best()
            if member.candidate_id in by_id and by_id[member.candidate_id].status == "ok"
        ],
        mlflow_run_id=context.tracker.run_id,
        registered_model=registry_name,
        mlflow_tracking_uri=context.tracker.uri,
        prefect_flow_run_id=str(flow_run.get_id() or ""),
        prefect_flow_run_name=str(flow_run.get_name() or ""),
        evomerge_version=evomerge_version(),
        runner=runner,
        leaderboard=[
            LeaderboardRow(
                candidate_id=c.candidate_id,
                fitness=c.fitness or 0.0,
                scores=context.raw_values(c.scores),
                retention=c.retention,
                feasible=c.feasible,
                recipe_sha256=c.recipe.sha256() if c.recipe else "",
            )
            for c in leaders(state.candidates, LEADERBOARD_SIZE)
        ],
    )
    if context.guard is not None and config.guard is not None:
        summary.guard = GuardReport(
            objectives=[o.to_json() for o in context.guard.objectives],
            max_drop=context.guard.max_drop,
            reference=context.guard.reference_model(checkpoint.parents, config.recipe.get("base_model")),
            reference_score=context.judge.guard_reference,
            objective=config.guard.objective,
            infeasible=sum(c.status == "ok" and not c.feasible for c in state.candidates),
        )
    summary.held_out = score_held_out(context, checkpoint, state, best)
    # summary.json says the search is over: by then MLflow holds every candidate, unless it stayed unreachable
    context.tracking.wait(mlflow_wait())
    write_json_atomically(context.out / "summary.json", summary.to_json())
    for artifact in [context.out / "summary.json", context.out / CANDIDATES_NAME, *_plots(context, checkpoint, state)]:
        context.tracking.submit(f"artifact {artifact.name}", partial(context.tracker.log_artifact, artifact))
    return summary


def _no_winner(context: SearchContext, state: SearchState) -> str:
    kept = [c for c in state.candidates if c.status == "ok" and c.retention is not None]
    if kept and context.guard is not None:
        closest = max(c.retention or 0.0 for c in kept)
        return (
            f"no candidate kept the guard: all {len(kept)} scored ones fell more than {context.guard.max_drop:g} "
            f"below the reference (the best retention was {closest:+.3f}); see candidates.jsonl, and raise "
            "guard.max_drop or search longer"
        )
    return "no candidate finished; see candidates.jsonl and MLflow for the errors"


def score_held_out(
    context: SearchContext, checkpoint: Checkpoint, state: SearchState, best: Candidate
) -> HeldOutReport | None:
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
    children = [(f"child {best.candidate_id}", best)]
    if config.algorithm.name == "nsga2":
        by_id = {candidate.candidate_id: candidate for candidate in state.candidates}
        for member in checkpoint.algorithm.best():
            front = by_id.get(member.candidate_id)
            if front is not None and front is not best and front.status == "ok":
                children.append((f"front {front.candidate_id}", front))
    models = {}
    shown = [(ref, None, ref) for ref in checkpoint.parents] + [(name, c.recipe, None) for name, c in children]
    for name, recipe, parent in shown:
        stages.merge(context.workbench, recipe, f"held-out {name}", parent=parent)
        items = evaluator.item_scores(context.workbench.model, context.workbench.tokenizer, metrics)
        scores = bootstrap_scores(
            {task: items[task] for task in tasks}, seed=config.seed, weights=weights, aggregate=config.fitness.aggregate
        ).to_json()
        models[name] = scores
        context.tracking.submit(
            f"held-out scores of {name}",
            partial(context.tracker.log_held_out, name, {**scores["tasks"], "mean": scores["mean"]}),
        )
    return HeldOutReport(
        tasks=tasks,
        search_tasks=list(splits),
        metrics=metrics,
        higher_is_better={split: objectives[task].higher_is_better for task, split in splits.items()},
        confidence=CONFIDENCE,
        bootstrap_iterations=BOOTSTRAP_ITERATIONS,
        models=models,
    )


def _plots(context: SearchContext, checkpoint: Checkpoint, state: SearchState) -> list[Path]:
    from flows.plots import plot_fitness, plot_pareto

    written = []
    if checkpoint.history:
        parent_fitness = [context.parent_fitness(values) for values in checkpoint.parents.values() if values]
        written.append(plot_fitness(checkpoint.history, context.out / "fitness.png", max(parent_fitness, default=None)))
    if context.config.algorithm.name == "nsga2" and len(context.policy.tasks) >= 2:
        finished = [c.objectives for c in state.candidates if c.status == "ok"]
        front = [member.objectives for member in checkpoint.algorithm.best()]
        parents = {
            name: tuple(o.orient(values[o.task]) for o in context.policy.objectives)
            for name, values in checkpoint.parents.items()
        }
        written.append(plot_pareto(context.policy.tasks, finished, front, parents, context.out / "pareto.png"))
    return written
