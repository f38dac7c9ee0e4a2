"""The search loop: ask, score, judge, tell, until a stop rule fires.

It reads as DEAP's `eaGenerateUpdate` does, with the scoring injected: this module decides which candidate
comes next and when to stop; the caller decides how a batch is scored (in this process, or on a Dask
cluster) and what is recorded (the log, MLflow, the console) through the hooks. No Prefect, MLflow or
torch here, so the rules are tested with a plain Python scorer.

Within a generation each recipe is scored once: an elite carried over keeps its result, a key already in
the log (an earlier generation, or the run a resume replays) takes the logged result, and a second copy in
the same generation waits for the first. Results are told in the order they were asked, so the same seed
gives the same search whatever scores the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from genetics.algorithm import SearchAlgorithm
from genetics.candidate import Candidate, Outcome, content_key
from genetics.fitness import best_candidate
from genetics.genome import GenomeSpec
from genetics.search_config import BudgetSettings

StopReason = Literal["generations", "max_evaluations", "max_minutes", "plateau"]


@dataclass
class GenerationStats:
    generation: int
    evaluations: int
    best_fitness: float
    mean_fitness: float


@dataclass
class SearchState:
    """Every candidate scored so far (the log), in the order they finished, indexed by key."""

    candidates: list[Candidate] = field(default_factory=list)
    by_key: dict[str, Candidate] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {candidate.key: candidate for candidate in self.candidates}

    @property
    def evaluations(self) -> int:
        return len(self.candidates)

    @property
    def failed(self) -> int:
        return sum(candidate.status == "failed" for candidate in self.candidates)

    def add(self, candidate: Candidate) -> None:
        self.candidates.append(candidate)
        self.by_key[candidate.key] = candidate


@dataclass(frozen=True)
class Decoder:
    """Genes to recipe and key, once per asked candidate."""

    genome: GenomeSpec
    parent_hashes: dict[str, str]
    evaluation_key: str

    def decode(self, candidate: Candidate, generation: int, index: int) -> None:
        candidate.candidate_id = f"g{generation:02d}-c{index:02d}"
        candidate.generation = generation
        candidate.gene_names = tuple(self.genome.names())
        candidate.recipe = self.genome.decode(candidate.genes)
        candidate.key = content_key(candidate.recipe, self.parent_hashes, self.evaluation_key)


class Scorer(Protocol):
    def start(self, batch: Sequence[Candidate]) -> None:
        """A generation's batch is known: begin on it (merge its first candidate ahead, submit it)."""
        ...

    def score(self, batch: Sequence[Candidate]) -> Iterator[Outcome]:
        """Each candidate's outcome, in the batch's order. Closing the iterator early abandons the rest."""
        ...


@dataclass
class Hooks:
    """What the caller records, each called in the loop's thread."""

    asked: Callable[[Sequence[Candidate]], None] = lambda batch: None
    """After a generation is asked for and its batch started."""
    scored: Callable[[Candidate], None] = lambda candidate: None
    """A new candidate finished and was judged (failed ones too)."""
    told: Callable[[GenerationStats], None] = lambda stats: None
    """The algorithm was told a generation; its stats are in the history."""


def new_candidates(
    asked: Sequence[Candidate], generation: int, decoder: Decoder, state: SearchState
) -> tuple[list[Candidate], dict[str, list[Candidate]]]:
    """The asked candidates still to score, first copy of each key, in order; and for each of them the
    later copies of the same generation, which take its result. Logged keys take their result now."""
    batch: list[Candidate] = []
    copies: dict[str, list[Candidate]] = {}
    for index, candidate in enumerate(asked):
        if candidate.scored:  # an elite carried over, already scored
            continue
        decoder.decode(candidate, generation, index)
        logged = state.by_key.get(candidate.key)
        if logged is not None:
            candidate.take_result(logged)
        elif candidate.key in copies:
            copies[candidate.key].append(candidate)
        else:
            copies[candidate.key] = []
            batch.append(candidate)
    return batch, copies


def run_generations(
    algorithm: SearchAlgorithm,
    decoder: Decoder,
    scorer: Scorer,
    judge: Callable[[Candidate], None],
    state: SearchState,
    budget: BudgetSettings,
    generations: int,
    history: list[GenerationStats],
    hooks: Hooks | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StopReason:
    """Ask, score, judge, tell until `generations` are told or a budget or plateau rule stops it; returns
    which rule did. A candidate whose judging fails (scores without a metric the fitness needs) is failed,
    as one whose merge or evaluation failed, and the search goes on."""
    hooks = hooks or Hooks()
    started = clock()
    while algorithm.generation < generations:
        generation = algorithm.generation
        asked = algorithm.ask()
        batch, copies = new_candidates(asked, generation, decoder, state)
        room = len(batch) if budget.max_evaluations is None else max(0, budget.max_evaluations - state.evaluations)
        cut = len(batch) > room
        batch = batch[:room]
        scorer.start(batch)
        hooks.asked(batch)
        outcomes = scorer.score(batch)
        try:
            for candidate in batch:
                if budget.max_minutes is not None and clock() - started >= 60 * budget.max_minutes:
                    return "max_minutes"
                candidate.record(next(outcomes))
                try:
                    judge(candidate)
                except Exception as error:  # noqa: BLE001 - a candidate's failure is recorded, never the search's
                    candidate.record(
                        Outcome(
                            "failed",
                            candidate.scores,
                            candidate.tensors_sha256,
                            f"{type(error).__name__}: {error}",
                            candidate.seconds,
                            candidate.worker,
                        )
                    )
                    judge(candidate)
                state.add(candidate)
                for twin in copies[candidate.key]:
                    twin.take_result(candidate)
                hooks.scored(candidate)
        finally:
            outcomes.close()
        if cut:
            return "max_evaluations"
        algorithm.tell(asked)
        history.append(generation_stats(generation, state, asked))
        hooks.told(history[-1])
        if plateaued(history, budget.plateau_generations, budget.plateau_delta):
            return "plateau"
    return "generations"


def generation_stats(generation: int, state: SearchState, told: Sequence[Candidate]) -> GenerationStats:
    best = best_candidate(state.candidates)
    finished = [c.fitness or 0.0 for c in told if c.violation != float("inf")]
    return GenerationStats(
        generation=generation,
        evaluations=state.evaluations,
        best_fitness=best.fitness if best is not None and best.fitness is not None else 0.0,
        # a failed candidate has no fitness: counted as 0 it would be the best of a lower-is-better search
        mean_fitness=sum(finished) / len(finished) if finished else 0.0,
    )


def plateaued(history: Sequence[GenerationStats], generations: int | None, delta: float) -> bool:
    """True when the best fitness so far rose by no more than `delta` over the last `generations`."""
    if generations is None or len(history) <= generations:
        return False
    return history[-1].best_fitness - history[-1 - generations].best_fitness <= delta


def budget_raised(stop_reason: str | None, budget: BudgetSettings, evaluations: int) -> bool:
    """Whether a search stopped by its budget goes on when run again with this one."""
    if stop_reason == "max_minutes":
        return True  # the clock is per run
    limit = budget.max_evaluations
    return stop_reason == "max_evaluations" and (limit is None or limit > evaluations)
