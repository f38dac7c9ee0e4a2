"""A generational genetic algorithm on DEAP, driven one generation at a time (ask / tell).

Bounded operators keep every gene in [0, 1]: simulated binary crossover and polynomial mutation (Deb),
tournament selection, and elitism (the best `elite` individuals survive unchanged). Each individual
carries its lineage (the candidates it was bred from), which the tracker records. DEAP's operators draw
from Python's global `random`; the algorithm owns that state between calls, so a search is reproducible
from its seed whatever else runs in the process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from deap import tools

from genetics.search_config import GeneticAlgorithmSettings


@dataclass
class Individual:
    genes: list[float]
    candidate_id: str = ""
    genetic_parents: tuple[str, ...] = ()
    fitness: float | None = None
    origin: str = "random"

    def copy(self) -> Individual:
        return Individual(list(self.genes), self.candidate_id, self.genetic_parents, self.fitness, self.origin)


@dataclass
class GeneticAlgorithm:
    settings: GeneticAlgorithmSettings
    genome_size: int
    seed: int
    generation: int = 0
    population: list[Individual] = field(default_factory=list)
    hall_of_fame: list[Individual] = field(default_factory=list)
    _rng_state: Any = None

    def __post_init__(self) -> None:
        self._rng_state = random.Random(self.seed).getstate()

    @contextmanager
    def _rng(self) -> Iterator[None]:
        outside = random.getstate()
        random.setstate(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = random.getstate()
            random.setstate(outside)

    def ask(self) -> list[Individual]:
        """The next generation's individuals to evaluate (elites are carried over already scored)."""
        with self._rng():
            if not self.population:
                return [
                    Individual([random.random() for _ in range(self.genome_size)])
                    for _ in range(self.settings.population_size)
                ]
            return self._breed()

    def _breed(self) -> list[Individual]:
        s = self.settings
        ranked = sorted(self.population, key=lambda ind: ind.fitness or 0.0, reverse=True)
        elites = [ind.copy() for ind in ranked[: s.elite]]
        for elite in elites:
            elite.origin = "elite"
        fitness_of = {id(ind): ind.fitness or 0.0 for ind in self.population}
        chosen = tools.selTournament(
            [_Scored(ind, fitness_of[id(ind)]) for ind in self.population],
            s.population_size - s.elite,
            tournsize=s.tournament_size,
        )
        children = [
            Individual(list(c.individual.genes), genetic_parents=(c.individual.candidate_id,), origin="copy")
            for c in chosen
        ]
        for left, right in zip(children[::2], children[1::2], strict=False):
            if random.random() < s.crossover_probability:
                tools.cxSimulatedBinaryBounded(left.genes, right.genes, eta=s.crossover_eta, low=0.0, up=1.0)
                pair = tuple(dict.fromkeys(left.genetic_parents + right.genetic_parents))
                left.genetic_parents = right.genetic_parents = pair
                left.origin = right.origin = "crossover"
        for child in children:
            if random.random() < s.mutation_probability:
                tools.mutPolynomialBounded(
                    child.genes, eta=s.mutation_eta, low=0.0, up=1.0, indpb=s.gene_mutation_probability
                )
                child.origin = f"{child.origin}+mutation"
            child.genes = [min(1.0, max(0.0, g)) for g in child.genes]
        return elites + children

    def tell(self, individuals: list[Individual]) -> None:
        """Scores of the individuals `ask` returned; they become the population bred from next."""
        missing = [ind.candidate_id for ind in individuals if ind.fitness is None]
        if missing:
            raise ValueError(f"individuals without fitness: {missing}")
        self.population = individuals
        merged = {tuple(ind.genes): ind for ind in self.hall_of_fame + individuals}
        self.hall_of_fame = sorted(merged.values(), key=lambda ind: ind.fitness or 0.0, reverse=True)[
            : self.settings.hall_of_fame
        ]
        self.generation += 1


@dataclass
class _Scored:
    """Adapter giving DEAP's selection the `.fitness` it sorts on."""

    individual: Individual
    value: float

    @property
    def fitness(self) -> _Scored:
        return self

    def __lt__(self, other: _Scored) -> bool:
        return self.value < other.value

    def __gt__(self, other: _Scored) -> bool:
        return self.value > other.value
