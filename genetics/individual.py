"""The random streams the algorithms draw their candidates from, and the helpers they share.

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

from genetics.candidate import Candidate

HALL_OF_FAME = 5
"""Best distinct genomes kept by the algorithms that have no setting for it."""


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


def distinct(candidates: list[Candidate]) -> list[Candidate]:
    """The first candidate seen of each genome, in order."""
    unique: dict[tuple[float, ...], Candidate] = {}
    for candidate in candidates:
        unique.setdefault(tuple(candidate.genes), candidate)
    return list(unique.values())


def keep_best(candidates: list[Candidate], count: int) -> list[Candidate]:
    """The `count` fittest distinct genomes, best first; among equals the earliest seen."""
    return sorted(distinct(candidates), key=Candidate.rank, reverse=True)[:count]
