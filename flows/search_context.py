"""A search made ready to loop: its parents downloaded, checked and scored, its evaluator, MLflow run and
workbench built, its first checkpoint written. Built once per process; resuming finds the checkpoint and
skips the parents' scoring."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from prefect.runtime import flow_run

from flows import stages
from flows.console import console
from flows.search_state import CANDIDATES_NAME, CandidateLog, Checkpoint, config_identity, save_checkpoint
from flows.tracking import SearchTracker, library_tags
from flows.tracking_queue import TrackingQueue
from genetics.algorithm import make_algorithm
from genetics.candidate import Outcome
from genetics.fitness import Judge
from genetics.genome import GenomeSpec
from genetics.loop import Decoder
from genetics.search_config import SearchConfig
from tasks.errors import EvomergeError
from tasks.evaluate import Evaluator
from tasks.merge.plan import plan_merge
from tasks.search_scoring import fitness_policies, search_evaluation
from tasks.select import FitnessPolicy, GuardPolicy, Objective, Scores
from tasks.workbench import Workbench, search_torch_threads


@dataclass
class SearchContext:
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
    judge: Judge
    candidate_log: CandidateLog
    config_dir: Path
    """Where the config file is: its relative include paths start there."""

    @property
    def policy(self) -> FitnessPolicy:
        return self.judge.policy

    @property
    def guard(self) -> GuardPolicy | None:
        return self.judge.guard

    @property
    def decoder(self) -> Decoder:
        return Decoder(self.genome, self.parent_hashes, self.evaluation_key)

    def all_objectives(self) -> list[Objective]:
        return [*self.policy.objectives, *(self.guard.objectives if self.guard else ())]

    def raw_values(self, scores: Scores) -> dict[str, float]:
        """Each search (and guard) task's value as lm-eval reported it, in the config's order."""
        return {o.task: o.value(scores) for o in self.all_objectives()}

    def parent_fitness(self, values: dict[str, float]) -> float:
        return self.policy.fitness({o.task: {o.metric: values[o.task]} for o in self.policy.objectives})


def prepare_search(
    config: SearchConfig,
    config_path: str,
    out: Path,
    checkpoint: Checkpoint | None,
    zoo_dir: str | None,
    tracking: TrackingQueue,
) -> SearchContext:
    """Parents downloaded and checked, evaluator, MLflow run and workbench built: the search, ready to loop."""
    genome = config.genome()
    config_dir = Path(config_path).resolve().parent
    references = config.parent_models()
    resolved = {ref: stages.download(ref, str(config_dir), zoo_dir) for ref in references}
    paths = {ref: model.path for ref, model in resolved.items()}
    parent_hashes = {ref: model.content_sha256 for ref, model in resolved.items()}
    plan_merge(genome.decode([0.5] * genome.size), paths, f"{config_path}: recipe")  # fail fast on a bad recipe
    if checkpoint is not None and checkpoint.parent_hashes != parent_hashes:
        changed = sorted(ref for ref in parent_hashes if checkpoint.parent_hashes.get(ref) != parent_hashes[ref])
        raise EvomergeError(
            f"{out}: the search there was run on other parent models ({', '.join(changed)} changed since); "
            "use another output directory (--out) to search on these"
        )
    evaluation = search_evaluation(config, config_dir)
    evaluator = Evaluator(evaluation)
    policy, guard = fitness_policies(config, evaluator)
    tracker = SearchTracker(
        experiment=f"evomerge/{config.name}",
        run_name=f"{config.name}-seed{config.seed}",
        resume_run_id=checkpoint.mlflow_run_id if checkpoint else None,
    )
    workbench = Workbench(paths, reference=config.recipe.get("base_model") or references[0])
    torch.set_num_threads(search_torch_threads(workbench.parameter_count(), requested_threads()))
    if config.runner.name == "local" and merge_ahead_enabled():
        workbench.start_merging_ahead()  # its worker starts while the parents are scored
    guard_is_objective = guard is not None and config.guard is not None and config.guard.objective
    return SearchContext(
        config=config,
        genome=genome,
        out=out,
        workbench=workbench,
        evaluator=evaluator,
        tracker=tracker,
        tracking=tracking,
        parent_hashes=parent_hashes,
        evaluation_key=evaluation.sha256(),
        judge=Judge(policy, guard, guard_is_objective),
        candidate_log=CandidateLog(out),
        config_dir=config_dir,
    )


def start_search(context: SearchContext, config_text: str, score_parent: Callable[[str], Outcome]) -> Checkpoint:
    """A new search: log its config, score the parents (with the search's runner), and checkpoint the
    untouched algorithm."""
    config = context.config
    context.tracking.submit(
        "log the search's config",
        partial(
            context.tracker.log_search,
            config_text,
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
                "config_dir": str(context.config_dir),
                **library_tags(),
                **{
                    f"direction/{o.task}/{o.metric}".replace(",", "_"): "higher" if o.higher_is_better else "lower"
                    for o in context.all_objectives()
                },
                **{f"parent_model_sha256/{ref}": digest for ref, digest in context.parent_hashes.items()},
            },
        ),
    )
    parents: dict[str, dict[str, float]] = {}
    for ref in config.parent_models():
        outcome = score_parent(ref)
        if outcome.status != "ok":
            raise EvomergeError(f"parent {ref} could not be scored: {outcome.error}")
        parents[ref] = context.raw_values(outcome.scores)
        context.tracking.submit(f"parent {ref} scores", partial(context.tracker.log_parent_scores, ref, parents[ref]))
        console.print(
            f"parent {ref}: "
            + ", ".join(f"{o.task} {parents[ref][o.task]:.3f}{o.arrow}" for o in context.all_objectives())
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


def set_guard_reference(context: SearchContext, checkpoint: Checkpoint) -> None:
    """The reference's guard score, from the parents' stored scores (a resumed search finds them there)."""
    guard = context.guard
    if guard is None:
        return
    name = guard.reference_model(checkpoint.parents, context.config.recipe.get("base_model"))
    context.judge.guard_reference = guard.score(checkpoint.parents[name])
    console.print(
        f"guard: {', '.join(o.task for o in guard.objectives)}: reference {name} scores "
        f"{context.judge.guard_reference:.3f}; a candidate may drop at most {guard.max_drop:g} below it"
    )


def merge_ahead_enabled() -> bool:
    return os.environ.get("EVOMERGE_MERGE_AHEAD", "1").strip().lower() not in {"0", "false", "no", "off"}


def requested_threads() -> int | None:
    value = os.environ.get("EVOMERGE_TORCH_THREADS")
    return int(value) if value else None
