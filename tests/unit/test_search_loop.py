"""The search loop (genetics/loop.py) with a plain Python scorer: the stop rules, each key scored once,
a failing candidate, resuming from a checkpoint, and what a runner is handed to score."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from genetics.algorithm import SearchAlgorithm, make_algorithm
from genetics.candidate import Candidate, Outcome
from genetics.fitness import Judge
from genetics.loop import Decoder, GenerationStats, Hooks, SearchState, StopReason, run_generations
from genetics.search_config import BudgetSettings, GeneticAlgorithmSettings, RandomSearchSettings, load_search_config
from tasks.select import FitnessPolicy, Objective

DEMO = Path(__file__).resolve().parents[2] / "configs" / "searches" / "demo.yaml"
PARENT_HASHES = {"zoo:base": "a" * 64, "zoo:add": "b" * 64, "zoo:sort": "c" * 64}
JUDGE = Judge(FitnessPolicy((Objective("task", "acc"),)))


def decoder() -> Decoder:
    return Decoder(load_search_config(str(DEMO)).genome(), PARENT_HASHES, "e" * 64)


def accuracy(genes: Sequence[float]) -> float:
    """A smooth landscape with its peak inside the cube."""
    return 1.0 - sum((g - 0.3) ** 2 for g in genes) / len(genes)


class RecordingScorer:
    """Scores by formula; remembers every batch it was started on and every candidate it scored. Genes whose
    first value is above `fail_above` fail, as a merge that raised would."""

    def __init__(self, fail_above: float = 2.0) -> None:
        self.fail_above = fail_above
        self.started: list[list[str]] = []
        self.scored: list[str] = []

    def start(self, batch: Sequence[Candidate]) -> None:
        self.started.append([c.key for c in batch])

    def score(self, batch: Sequence[Candidate]) -> Iterator[Outcome]:
        for candidate in batch:
            self.scored.append(candidate.key)
            if candidate.genes[0] > self.fail_above:
                yield Outcome("failed", error="RuntimeError: boom")
            else:
                yield Outcome(scores={"task": {"acc": accuracy(candidate.genes)}})


def run(
    algorithm: SearchAlgorithm,
    state: SearchState,
    scorer: RecordingScorer,
    generations: int,
    history: list[GenerationStats] | None = None,
    hooks: Hooks | None = None,
    clock: object = None,
    **budget: object,
) -> StopReason:
    return run_generations(
        algorithm,
        decoder(),
        scorer,
        JUDGE.judge,
        state,
        BudgetSettings(**budget),  # type: ignore[arg-type]
        generations,
        history if history is not None else [],
        hooks,
        **({"clock": clock} if clock else {}),  # type: ignore[arg-type]
    )


def ga(seed: int = 4) -> SearchAlgorithm:
    return make_algorithm(GeneticAlgorithmSettings(population_size=6, elite=2, generations=5), 4, seed)


def test_each_key_is_scored_once_and_elites_keep_their_result() -> None:
    state, scorer = SearchState(), RecordingScorer()
    assert run(ga(), state, scorer, 5) == "generations"
    assert len(scorer.scored) == len(set(scorer.scored)) == state.evaluations
    assert 6 <= state.evaluations <= 6 + 4 * 4  # elites (2 a generation) are never scored again
    for candidate in state.candidates:
        assert candidate.fitness == pytest.approx(accuracy(candidate.genes))
        assert candidate.recipe is not None and candidate.gene_names and candidate.candidate_id.startswith("g")


def test_a_copy_within_a_generation_and_a_logged_key_take_the_earlier_result() -> None:
    asked = [Candidate([0.1, 0.2, 0.3, 0.4]), Candidate([0.5, 0.5, 0.5, 0.5]), Candidate([0.1, 0.2, 0.3, 0.4])]

    class Fixed:
        generation = 0

        def ask(self) -> list[Candidate]:
            return asked

        def tell(self, told: list[Candidate]) -> None:
            assert all(c.scored for c in told)
            self.generation += 1

        def best(self) -> list[Candidate]:
            return []

    logged = Candidate([0.5, 0.5, 0.5, 0.5])
    decoder().decode(logged, 0, 7)
    logged.record(Outcome(scores={"task": {"acc": 0.123}}))
    JUDGE.judge(logged)
    state, scorer = SearchState([logged]), RecordingScorer()
    run(Fixed(), state, scorer, 1)  # type: ignore[arg-type]
    assert scorer.scored == [asked[0].key]
    assert asked[2].candidate_id == asked[0].candidate_id == "g00-c00" and asked[2].fitness == asked[0].fitness
    assert asked[1].candidate_id == "g00-c07" and asked[1].fitness == 0.123
    assert state.evaluations == 2


def test_max_evaluations_stops_mid_generation_without_telling_it() -> None:
    algorithm, state, scorer = ga(), SearchState(), RecordingScorer()
    assert run(algorithm, state, scorer, 5, max_evaluations=9) == "max_evaluations"
    assert state.evaluations == 9
    assert algorithm.generation == 1  # the second generation was cut by the budget: not told
    assert [len(batch) for batch in scorer.started] == [6, 3]  # a runner is never handed work past the budget


def test_max_minutes_stops_before_the_next_candidate() -> None:
    ticks = iter(range(0, 10_000, 30))  # every look at the clock: 30 s later
    state = SearchState()
    assert run(ga(), state, RecordingScorer(), 5, clock=lambda: next(ticks), max_minutes=2.0) == "max_minutes"
    assert state.evaluations == 3  # looks at 30, 60, 90 s pass; the fourth, at 120 s, stops


def test_plateau_stops_when_the_best_stops_rising() -> None:
    algorithm = make_algorithm(RandomSearchSettings(population_size=3, generations=50), 4, 0)
    history: list[GenerationStats] = []
    reason = run(algorithm, SearchState(), RecordingScorer(), 50, history, plateau_generations=2, plateau_delta=0.5)
    assert reason == "plateau" and len(history) == 3  # no rise of 0.5 in accuracy is possible


def test_a_failed_candidate_ranks_last_and_the_search_goes_on() -> None:
    state = SearchState()
    run(ga(seed=1), state, RecordingScorer(fail_above=0.6), 3)
    failed = [c for c in state.candidates if c.status == "failed"]
    ok = [c for c in state.candidates if c.status == "ok"]
    assert failed and ok
    assert all(c.fitness is None and c.violation == float("inf") and not c.feasible for c in failed)
    assert max(ok, key=Candidate.rank).rank() > max(c.rank() for c in failed)


def test_a_judge_that_raises_fails_the_candidate_not_the_search() -> None:
    policy = Judge(FitnessPolicy((Objective("missing", "acc"),)))
    state = SearchState()
    run_generations(ga(), decoder(), RecordingScorer(), policy.judge, state, BudgetSettings(), 1, [])
    assert state.evaluations == 6
    assert all(c.status == "failed" and "missing" in (c.error or "") for c in state.candidates)


def test_resume_from_a_checkpoint_replays_the_generation_and_scores_only_what_is_missing() -> None:
    """The uninterrupted search against one killed after 2 generations and 3 candidates of the third: the
    checkpoint (the algorithm pickled when generation 2 was told) and the log (what finished) resume it."""
    whole_state, whole_scorer = SearchState(), RecordingScorer()
    run(ga(), whole_state, whole_scorer, 5)

    snapshots: list[bytes] = []
    algorithm = ga()
    first_state = SearchState()
    hooks = Hooks(told=lambda stats: snapshots.append(pickle.dumps(algorithm)))
    run(algorithm, first_state, RecordingScorer(), 5, hooks=hooks, max_evaluations=6 + 4 + 3)
    assert algorithm.generation == 2

    resumed = pickle.loads(snapshots[-1])  # noqa: S301 - our own bytes
    log = SearchState([c for c in first_state.candidates])
    again = RecordingScorer()
    run(resumed, log, again, 5)
    assert [c.key for c in log.candidates] == [c.key for c in whole_state.candidates]
    assert [c.fitness for c in log.candidates] == [c.fitness for c in whole_state.candidates]
    assert not set(again.scored) & {c.key for c in first_state.candidates}  # nothing scored twice


def test_each_hook_fires_in_order() -> None:
    events: list[str] = []
    hooks = Hooks(
        asked=lambda batch: events.append(f"asked {len(batch)}"),
        scored=lambda c: events.append("scored"),
        told=lambda stats: events.append(f"told {stats.generation}"),
    )
    run(
        make_algorithm(RandomSearchSettings(population_size=2, generations=2), 4, 0),
        SearchState(),
        RecordingScorer(),
        2,
        hooks=hooks,
    )
    assert events == ["asked 2", "scored", "scored", "told 0", "asked 2", "scored", "scored", "told 1"]
