"""One point of the search and the random streams the algorithms draw it from.

DEAP's operators draw from Python's global `random` and `deap.cma` from NumPy's global generator. Each
algorithm owns its own copy of both states and swaps them in only while it breeds (`OwnedRandomness`), so a
search is reproducible from its seed whatever else runs in the process, and the states can be checkpointed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

HALL_OF_FAME = 5
"""Best distinct genomes kept by the algorithms that have no setting for it."""


@dataclass
class Individual:
    genes: list[float]
    candidate_id: str = ""
    genetic_parents: tuple[str, ...] = ()
    fitness: float | None = None
    objectives: tuple[float, ...] = ()
    """One score per task (NSGA-II's objectives); the other algorithms rank on `fitness` alone."""
    origin: str = "random"
    feasible: bool = True
    """False for a candidate that failed or broke the forgetting guard: it ranks below every feasible one
    (Deb's constraint rule, 2000), whatever its fitness."""
    violation: float = 0.0
    """How far an infeasible candidate is from feasible (inf for a failed one); less ranks higher."""

    def copy(self) -> Individual:
        return Individual(
            list(self.genes),
            self.candidate_id,
            self.genetic_parents,
            self.fitness,
            self.objectives,
            self.origin,
            self.feasible,
            self.violation,
        )

    def rank(self) -> tuple[int, float]:
        """What the algorithms sort on: feasible ones by fitness, above infeasible ones by violation."""
        return (1, self.fitness or 0.0) if self.feasible else (0, -self.violation)


@dataclass
class OwnedRandomness:
    """Python's and NumPy's global random states, owned by one algorithm and swapped in while it draws."""

    seed: int
    python_state: Any = None
    numpy_state: Any = None

    def __post_init__(self) -> None:
        if self.python_state is None:
            self.python_state = random.Random(self.seed).getstate()
        if self.numpy_state is None:
            self.numpy_state = np.random.RandomState(self.seed % 2**32).get_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        outside = (random.getstate(), np.random.get_state())
        random.setstate(self.python_state)
        np.random.set_state(self.numpy_state)
        try:
            yield
        finally:
            self.python_state = random.getstate()
            self.numpy_state = np.random.get_state()
            random.setstate(outside[0])
            np.random.set_state(outside[1])


def clamp_unit(genes: Any) -> list[float]:
    """Genes repaired into [0, 1] (the genome's domain), as plain floats."""
    return [min(1.0, max(0.0, float(g))) for g in genes]


def distinct(individuals: list[Individual]) -> list[Individual]:
    """The first individual seen of each genome, in order."""
    unique: dict[tuple[float, ...], Individual] = {}
    for individual in individuals:
        unique.setdefault(tuple(individual.genes), individual)
    return list(unique.values())


def keep_best(individuals: list[Individual], count: int) -> list[Individual]:
    """The `count` fittest distinct genomes, best first; among equals the earliest seen."""
    return sorted(distinct(individuals), key=Individual.rank, reverse=True)[:count]
