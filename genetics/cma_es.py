"""CMA-ES on `deap.cma.Strategy`, driven one generation at a time (ask / tell).

The strategy samples an unbounded Gaussian; genes are repaired into [0, 1] before decoding (so every
candidate respects its bounds) and the strategy learns from the raw samples, ranked by fitness minus a
penalty on the squared distance the repair moved them: a point outside the box ranks below the same score
inside it, which steers the distribution back into the box instead of piling it onto the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deap import cma

from genetics.candidate import Candidate
from genetics.individual import HALL_OF_FAME, OwnedRandomness, clamp_unit, keep_best
from genetics.search_config import CmaEsSettings

OUT_OF_BOUNDS_PENALTY = 1.0
"""Fitness lost per unit of squared distance outside [0, 1] (fitness is on the scale of its scores, often [0, 1])."""


class _Ranked(np.ndarray):
    """A raw sample with the `fitness` that `Strategy.update` sorts on."""

    fitness: tuple[int, float]


@dataclass
class CmaEs:
    settings: CmaEsSettings
    genome_size: int
    seed: int
    generation: int = 0
    hall_of_fame: list[Candidate] = field(default_factory=list)
    randomness: OwnedRandomness = field(init=False)
    strategy: Any = field(init=False)
    raw_samples: list[list[float]] = field(default_factory=list)
    centroid_parents: tuple[str, ...] = ()
    """The candidates whose weighted mean is the current centroid (the lineage of the next generation)."""

    def __post_init__(self) -> None:
        self.randomness = OwnedRandomness(self.seed)
        centroid = self.settings.centroid
        start = centroid if isinstance(centroid, list) else [centroid] * self.genome_size
        if len(start) != self.genome_size:
            raise ValueError(f"algorithm.centroid has {len(start)} values for {self.genome_size} genes")
        options = {} if self.settings.population_size is None else {"lambda_": self.settings.population_size}
        self.strategy = cma.Strategy(centroid=start, sigma=self.settings.sigma, **options)

    def ask(self) -> list[Candidate]:
        with self.randomness.active():
            samples = self.strategy.generate(lambda values: [float(v) for v in values])
        self.raw_samples = samples
        return [
            Candidate(clamp_unit(sample), genetic_parents=self.centroid_parents, origin="cma-es") for sample in samples
        ]

    def tell(self, individuals: list[Candidate]) -> None:
        if len(individuals) != len(self.raw_samples):
            raise ValueError(f"CMA-ES asked for {len(self.raw_samples)} scores and was told {len(individuals)}")
        ranked = []
        for individual, raw in zip(individuals, self.raw_samples, strict=True):
            if not individual.scored:
                raise ValueError(f"individual not scored: {individual.candidate_id}")
            sample = np.asarray(raw, dtype=float).view(_Ranked)
            moved = float(np.sum((np.asarray(raw) - np.asarray(individual.genes)) ** 2))
            feasible, value = individual.rank()
            sample.fitness = (feasible, value - OUT_OF_BOUNDS_PENALTY * moved)
            ranked.append(sample)
        order = sorted(range(len(ranked)), key=lambda i: ranked[i].fitness, reverse=True)
        self.centroid_parents = tuple(dict.fromkeys(individuals[i].candidate_id for i in order[: self.strategy.mu]))
        self.strategy.update(ranked)
        self.hall_of_fame = keep_best(self.hall_of_fame + individuals, HALL_OF_FAME)
        self.generation += 1

    def best(self) -> list[Candidate]:
        return list(self.hall_of_fame)
