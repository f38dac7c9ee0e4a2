"""The search flow: download the parents, then per generation merge and evaluate each new candidate,
select, breed; finally write the winner as a full model and the summary.

Every finished candidate is appended to `candidates.jsonl` and logged to MLflow the moment it finishes,
so a later failure never takes finished results with it. A candidate whose recipe, parents and
evaluation were already scored is not evaluated again.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from rich.console import Console

from flows import stages
from flows.paths import evomerge_version, runs_dir
from flows.tracking import SearchTracker
from genetics.ga import GeneticAlgorithm, Individual
from genetics.search_config import SearchConfig, load_search_config
from tasks.candidate import CandidateRecord, candidate_key
from tasks.errors import EvomergeError
from tasks.evaluate import EvaluationConfig, Evaluator
from tasks.merge.plan import plan_merge
from tasks.merge.writer import write_model
from tasks.select import fitness_of, task_scores
from tasks.workbench import Workbench

console = Console(stderr=True)


@dataclass
class SearchState:
    records: list[CandidateRecord] = field(default_factory=list)
    by_key: dict[str, CandidateRecord] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return len(self.records)


def _write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


def _append_record(path: Path, record: CandidateRecord) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record.to_json()) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _evaluate_candidate(
    record: CandidateRecord, workbench: Workbench, evaluator: Evaluator, config: SearchConfig
) -> None:
    """Merge and score one candidate in place; a failure is recorded on the candidate, not raised."""
    started = time.perf_counter()
    try:
        record.tensors_sha256 = stages.merge(workbench, record.recipe)
        record.scores = stages.evaluate(workbench, evaluator)
        record.fitness = fitness_of(record.scores, config.evaluation.metric, config.fitness.aggregate)
    except Exception as error:  # noqa: BLE001 - any candidate failure is recorded and the search goes on
        record.status = "failed"
        record.fitness = None
        record.error = f"{type(error).__name__}: {error}"
        console.print(f"[red]candidate {record.candidate_id} failed:[/] {record.error}")
        if not isinstance(error, EvomergeError):
            console.print(traceback.format_exc(), style="dim")
    record.seconds = time.perf_counter() - started


@flow(name="evomerge-search", log_prints=False)
def search(config_path: str, output_dir: str | None = None, zoo_dir: str | None = None) -> dict[str, Any]:
    """Breed a child from the parents in `config_path`; returns the summary written to `summary.json`."""
    config = load_search_config(config_path)
    out = Path(output_dir or config.output_dir or runs_dir() / config.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    genome = config.genome()
    base_dir = str(Path(config_path).resolve().parent)

    references = config.parent_models()
    resolved = {ref: stages.download(ref, base_dir, zoo_dir) for ref in references}
    paths = {ref: model.path for ref, model in resolved.items()}
    parent_hashes = {ref: model.content_sha256 for ref, model in resolved.items()}
    plan_merge(genome.decode([0.5] * genome.size), paths, f"{config_path}: recipe")  # fail fast on a bad recipe

    evaluation = EvaluationConfig(
        tasks=tuple(config.evaluation.tasks), limit=config.evaluation.limit, batch_size=config.evaluation.batch_size
    )
    evaluator = Evaluator(evaluation)
    evaluation_key = evaluation.sha256()
    workbench = Workbench(paths, reference=config.recipe.get("base_model") or references[0])

    tracker = SearchTracker(experiment=f"evomerge/{config.name}", run_name=f"{config.name}-seed{config.seed}")
    tracker.log_search(
        Path(config_path).read_text(),
        params={
            "seed": config.seed,
            "algorithm": config.algorithm.name,
            "genome_size": genome.size,
            "tasks": ",".join(config.evaluation.tasks),
            "output_dir": str(out),
        },
        tags={
            "prefect.flow_run_id": str(flow_run.get_id() or ""),
            "search.name": config.name,
            "evaluation_key": evaluation_key,
            **{f"parent_model_sha256/{ref}": digest for ref, digest in parent_hashes.items()},
        },
    )
    task_order = list(config.evaluation.tasks)
    ok = False
    try:
        parents: dict[str, dict[str, float]] = {}
        for ref in references:
            stages.merge(workbench, None, parent=ref)
            parents[ref] = task_scores(stages.evaluate(workbench, evaluator), config.evaluation.metric, task_order)
            tracker.log_parent_scores(ref, parents[ref])
            console.print(f"parent {ref}: " + ", ".join(f"{t} {v:.3f}" for t, v in parents[ref].items()))

        state = SearchState()
        log_path = out / "candidates.jsonl"
        log_path.write_text("")
        algorithm = GeneticAlgorithm(config.algorithm, genome.size, config.seed)
        budget = config.budget.max_evaluations
        for generation in range(config.algorithm.generations):
            individuals = algorithm.ask()
            scored: list[Individual] = []
            for index, individual in enumerate(individuals):
                if individual.fitness is not None:  # an elite carried over, already scored
                    scored.append(individual)
                    continue
                if budget is not None and state.evaluations >= budget:
                    break
                individual.candidate_id = f"g{generation:02d}-c{index:02d}"
                recipe = genome.decode(individual.genes)
                key = candidate_key(recipe, parent_hashes, evaluation_key)
                seen = state.by_key.get(key)
                if seen is not None:
                    individual.fitness = seen.fitness if seen.fitness is not None else 0.0
                    individual.candidate_id = seen.candidate_id
                    scored.append(individual)
                    continue
                record = CandidateRecord(
                    candidate_id=individual.candidate_id,
                    generation=generation,
                    key=key,
                    recipe=recipe,
                    genes=dict(zip(genome.names(), individual.genes, strict=True)),
                    genetic_parents=individual.genetic_parents,
                    origin=individual.origin,
                )
                _evaluate_candidate(record, workbench, evaluator, config)
                record.mlflow_run_id = tracker.log_candidate(record, parent_hashes)
                _append_record(log_path, record)
                state.records.append(record)
                state.by_key[key] = record
                individual.fitness = record.fitness if record.fitness is not None else 0.0
                scored.append(individual)
            if len(scored) < 2:
                break
            algorithm.tell(scored)
            best_so_far = stages.select(state.records)
            failed = sum(r.status == "failed" for r in state.records)
            console.print(
                f"generation {generation}: {state.evaluations} evaluations, "
                f"best {best_so_far.fitness if best_so_far else float('nan'):.3f}, "
                f"generation mean {sum(i.fitness or 0 for i in scored) / len(scored):.3f}"
                + (f" (failed {failed})" if failed else "")
            )
            if budget is not None and state.evaluations >= budget:
                break

        best = stages.select(state.records)
        if best is None:
            raise EvomergeError("no candidate finished; see candidates.jsonl and MLflow for the errors")
        best_dir = out / "best"
        written = write_model(workbench.plan(best.recipe), best_dir, force=True)
        if written != best.tensors_sha256:
            raise EvomergeError(f"the winner written to {best_dir} differs from the evaluated tensors")
        tracker.log_best(best)
        summary = {
            "search": config.name,
            "seed": config.seed,
            "metric": config.evaluation.metric,
            "parents": parents,
            "best": {
                "candidate_id": best.candidate_id,
                "recipe": best.recipe.canonical_dict(),
                "scores": task_scores(best.scores, config.evaluation.metric, task_order),
                "fitness": best.fitness,
                "tensors_sha256": best.tensors_sha256,
                "model_dir": str(best_dir),
            },
            "evaluations": state.evaluations,
            "failed": sum(r.status == "failed" for r in state.records),
            "mlflow_run_id": tracker.run_id,
            "mlflow_tracking_uri": tracker.uri,
            "prefect_flow_run_id": str(flow_run.get_id() or ""),
            "prefect_flow_run_name": str(flow_run.get_name() or ""),
            "evomerge_version": evomerge_version(),
        }
        _write_json_atomically(out / "summary.json", summary)
        tracker.log_artifact(out / "summary.json")
        tracker.log_artifact(log_path)
        ok = True
        return summary
    finally:
        tracker.finish(ok)
