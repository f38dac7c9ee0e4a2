"""A generational genetic algorithm on DEAP, driven one generation at a time (ask / tell).

Bounded operators keep every gene in [0, 1]: simulated binary crossover and polynomial mutation (Deb),
tournament selection, and elitism (the best `elite` individuals survive unchanged). Each individual
carries its lineage (the candidates it was bred from), which the tracker records.

A child that repeats a genome of its generation's parents or of an earlier child is mutated until it is new
(`renew_repeats`): the search never evaluates a key twice, so a repeat would leave its place in the
generation empty. Without this, a tournament that picks the same winner twice bred copies, and on the demo
only 2 of the first 10 children were new candidates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from deap import tools

from genetics.candidate import Candidate
from genetics.individual import OwnedRandomness, clamp_unit, keep_best
from genetics.search_config import GeneticAlgorithmSettings, OperatorSettings


@dataclass
class GeneticAlgorithm:
    settings: GeneticAlgorithmSettings
    genome_size: int
    seed: int
    generation: int = 0
    population: list[Candidate] = field(default_factory=list)
    hall_of_fame: list[Candidate] = field(default_factory=list)
    randomness: OwnedRandomness = field(init=False)

    def __post_init__(self) -> None:
        self.randomness = OwnedRandomness(self.seed)

    def ask(self) -> list[Candidate]:
        """The next generation's individuals to evaluate (elites are carried over already scored)."""
        with self.randomness.active():
            if not self.population:
                return [
                    Candidate([random.random() for _ in range(self.genome_size)])
                    for _ in range(self.settings.population_size)
                ]
            return self._breed()

    def _breed(self) -> list[Candidate]:
        s = self.settings
        ranked = sorted(self.population, key=Candidate.rank, reverse=True)
        elites = [ind.copy() for ind in ranked[: s.elite]]
        for elite in elites:
            elite.origin = "elite"
        chosen = tools.selTournament(
            [_Scored(ind, ind.rank()) for ind in self.population],
            s.population_size - s.elite,
            tournsize=s.tournament_size,
        )
        children = [
            Candidate(list(c.individual.genes), genetic_parents=(c.individual.candidate_id,), origin="copy")
            for c in chosen
        ]
        vary(children, s)
        renew_repeats(children, [ind.genes for ind in self.population], s)
        return elites + children

    def best(self) -> list[Candidate]:
        return list(self.hall_of_fame)

    def tell(self, individuals: list[Candidate]) -> None:
        """Scores of the individuals `ask` returned; they become the population bred from next."""
        missing = [ind.candidate_id for ind in individuals if not ind.scored]
        if missing:
            raise ValueError(f"individuals not scored: {missing}")
        self.population = individuals
        self.hall_of_fame = keep_best(self.hall_of_fame + individuals, self.settings.hall_of_fame)
        self.generation += 1


def vary(children: list[Candidate], settings: OperatorSettings) -> None:
    """Pairwise SBX crossover, then polynomial mutation, in place, bounded to [0, 1]; lineage follows."""
    for left, right in zip(children[::2], children[1::2], strict=False):
        if random.random() < settings.crossover_probability:
            tools.cxSimulatedBinaryBounded(left.genes, right.genes, eta=settings.crossover_eta, low=0.0, up=1.0)
            pair = tuple(dict.fromkeys(left.genetic_parents + right.genetic_parents))
            left.genetic_parents = right.genetic_parents = pair
            left.origin = right.origin = "crossover"
    for child in children:
        if random.random() < settings.mutation_probability:
            tools.mutPolynomialBounded(
                child.genes, eta=settings.mutation_eta, low=0.0, up=1.0, indpb=settings.gene_mutation_probability
            )
            child.origin = f"{child.origin}+mutation"
        child.genes = clamp_unit(child.genes)


def renew_repeats(
    children: list[Candidate], known: list[list[float]], settings: OperatorSettings, attempts: int = 20
) -> None:
    """Mutate, in place, each child whose genes equal a `known` genome or an earlier child's, until they
    differ (at most `attempts` polynomial mutations of every gene; a child still repeating after that is
    left as it is, and the search takes its score from the log)."""
    seen = {tuple(genes) for genes in known}
    for child in children:
        for _ in range(attempts):
            if tuple(child.genes) not in seen:
                break
            tools.mutPolynomialBounded(child.genes, eta=settings.mutation_eta, low=0.0, up=1.0, indpb=1.0)
            child.genes = clamp_unit(child.genes)
            if "mutation" not in child.origin:
                child.origin = f"{child.origin}+mutation"
        seen.add(tuple(child.genes))


@dataclass
class _Scored:
    """Adapter giving DEAP's selection the `.fitness` it sorts on."""

    individual: Candidate
    value: tuple[int, float]

    @property
    def fitness(self) -> _Scored:
        return self

    def __lt__(self, other: _Scored) -> bool:
        return self.value < other.value

    def __gt__(self, other: _Scored) -> bool:
        return self.value > other.value
