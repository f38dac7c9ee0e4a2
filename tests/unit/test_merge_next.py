"""Which candidate the search sends to merge ahead (`flows.search._merge_next`): the next one of the
generation that will really be merged (not an elite already scored, not a key already in the log, not the
recipe being scored now), and none past the budget. Before a generation's first candidate (`index=None`)
it is the first such candidate; the workbench is a recorder here, the pure choice is what is tested."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flows.search import SearchState, _merge_next
from genetics.individual import Individual
from genetics.search_config import load_search_config
from tasks.candidate import CandidateRecord, candidate_key

DEMO = Path(__file__).resolve().parents[2] / "configs" / "searches" / "demo.yaml"
PARENT_HASHES = {"zoo:base": "a" * 64, "zoo:add": "b" * 64, "zoo:sort": "c" * 64}


class RecordingWorkbench:
    merging_ahead = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    def merge_ahead(self, recipe: Any) -> None:
        self.sent.append(recipe.sha256())


def context(max_evaluations: int | None) -> Any:
    config = load_search_config(str(DEMO))
    config = config.model_copy(update={"budget": config.budget.model_copy(update={"max_evaluations": max_evaluations})})
    return SimpleNamespace(
        config=config,
        genome=config.genome(),
        workbench=RecordingWorkbench(),
        parent_hashes=PARENT_HASHES,
        evaluation_key="e" * 64,
    )


def individuals(count: int) -> list[Individual]:
    return [Individual(genes=[0.1 * (index + 1), 0.2, 0.3, 0.4 + 0.01 * index]) for index in range(count)]


def sha(ctx: Any, individual: Individual) -> str:
    return str(ctx.genome.decode(individual.genes).sha256())


def logged(ctx: Any, individual: Individual) -> CandidateRecord:
    recipe = ctx.genome.decode(individual.genes)
    key = candidate_key(recipe, ctx.parent_hashes, ctx.evaluation_key)
    return CandidateRecord(candidate_id="old", generation=0, key=key, recipe=recipe, genes={})


def test_before_a_generation_the_first_candidate_to_merge_is_sent() -> None:
    ctx, population = context(None), individuals(5)
    population[0].fitness = 0.9  # an elite, already scored
    state = SearchState([logged(ctx, population[1])])  # scored in an earlier generation
    _merge_next(ctx, state, population, None)
    assert ctx.workbench.sent == [sha(ctx, population[2])]


def test_after_a_candidate_the_next_one_is_sent_but_not_a_copy_of_it() -> None:
    ctx, population = context(None), individuals(4)
    population[2] = Individual(genes=list(population[1].genes))  # same recipe as the one being scored
    _merge_next(ctx, SearchState(), population, 1)
    assert ctx.workbench.sent == [sha(ctx, population[3])]


def test_nothing_is_sent_past_the_budget() -> None:
    population = individuals(4)
    full = context(2)
    state = SearchState([logged(full, Individual(genes=[1.0, 1.0, 1.0, 1.0]))])
    _merge_next(full, state, population, 0)  # one in flight: the budget's last evaluation
    assert full.workbench.sent == []
    room = context(2)
    _merge_next(room, state, population, None)  # nothing in flight: one evaluation left for it
    assert room.workbench.sent == [sha(room, population[0])]
    _merge_next(room, SearchState([*state.records, logged(room, population[3])]), population, None)
    assert room.workbench.sent == [sha(room, population[0])]  # budget spent: nothing more


def test_nothing_is_sent_without_a_merge_ahead_worker() -> None:
    ctx = context(None)
    ctx.workbench.merging_ahead = False
    _merge_next(ctx, SearchState(), individuals(3), None)
    assert ctx.workbench.sent == []
