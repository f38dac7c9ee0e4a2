"""NSGA-II (Deb et al. 2002) on DEAP: one objective per task, driven one generation at a time (ask / tell).

Parents are chosen by DEAP's dominance-and-crowding tournament and varied by the GA's bounded operators
(a child repeating a parent or a sibling is mutated until new, as in the GA). The next population is the
best `population_size` of parents plus offspring by non-dominated rank and crowding distance. Every
evaluated individual also enters an archive of the non-dominated set: the Pareto front the search reports,
whatever survived in the population.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from deap import base, tools

from genetics.candidate import Candidate
from genetics.ga import renew_repeats, vary
from genetics.individual import OwnedRandomness, distinct
from genetics.search_config import Nsga2Settings


class _Maximise(base.Fitness):
    """Every objective (a task score) is maximised; DEAP needs one weight per value. Domination is Deb's
    constrained domination (2000): a feasible individual dominates an infeasible one, and of two infeasible
    ones the smaller violation dominates; DEAP's sorting and tournaments only ask `dominates`."""

    weights = (1.0,)

    def __init__(self, values: tuple[float, ...], violation: float = 0.0) -> None:
        super().__init__()
        self.weights = (1.0,) * len(values)
        self.values = values
        self.violation = violation

    def dominates(self, other: base.Fitness, obj: slice = slice(None)) -> bool:
        mine, theirs = self.violation, getattr(other, "violation", 0.0)
        if mine or theirs:
            return mine < theirs
        return bool(super().dominates(other, obj))


@dataclass
class _Ranked:
    """An individual as DEAP's NSGA-II functions see it (a `.fitness` with values and crowding)."""

    individual: Candidate
    fitness: _Maximise


def _ranked(individuals: list[Candidate]) -> list[_Ranked]:
    missing = [ind.candidate_id for ind in individuals if not ind.objectives]
    if missing:
        raise ValueError(f"individuals without objectives: {missing}")
    return [
        _Ranked(ind, _Maximise(tuple(ind.objectives), 0.0 if ind.feasible else max(ind.violation, 1e-300)))
        for ind in individuals
    ]


@dataclass
class Nsga2:
    settings: Nsga2Settings
    genome_size: int
    seed: int
    generation: int = 0
    population: list[Candidate] = field(default_factory=list)
    pareto_front: list[Candidate] = field(default_factory=list)
    randomness: OwnedRandomness = field(init=False)

    def __post_init__(self) -> None:
        self.randomness = OwnedRandomness(self.seed)

    def ask(self) -> list[Candidate]:
        with self.randomness.active():
            if not self.population:
                return [
                    Candidate([random.random() for _ in range(self.genome_size)], origin="random")
                    for _ in range(self.settings.population_size)
                ]
            ranked = _ranked(self.population)
            tools.emo.assignCrowdingDist(ranked)
            chosen = tools.selTournamentDCD(ranked, len(ranked))
            children = [
                Candidate(list(c.individual.genes), genetic_parents=(c.individual.candidate_id,), origin="copy")
                for c in chosen
            ]
            vary(children, self.settings)
            renew_repeats(children, [ind.genes for ind in self.population], self.settings)
            return children

    def tell(self, individuals: list[Candidate]) -> None:
        survivors = tools.selNSGA2(_ranked(self.population + individuals), self.settings.population_size)
        self.population = [r.individual for r in survivors]
        archive = _ranked(self.pareto_front + individuals)
        front = tools.sortNondominated(archive, len(archive), first_front_only=True)[0]
        members = distinct([member.individual for member in front])
        self.pareto_front = sorted(members, key=lambda ind: ind.objectives, reverse=True)
        self.generation += 1

    def best(self) -> list[Candidate]:
        return list(self.pareto_front)
