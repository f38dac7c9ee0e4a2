"""Random search: uniform samples of the gene box, the honest baseline every other algorithm must beat."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from genetics.candidate import Candidate
from genetics.individual import HALL_OF_FAME, OwnedRandomness, keep_best
from genetics.search_config import RandomSearchSettings


@dataclass
class RandomSearch:
    settings: RandomSearchSettings
    genome_size: int
    seed: int
    generation: int = 0
    hall_of_fame: list[Candidate] = field(default_factory=list)
    randomness: OwnedRandomness = field(init=False)

    def __post_init__(self) -> None:
        self.randomness = OwnedRandomness(self.seed)

    def ask(self) -> list[Candidate]:
        with self.randomness.active():
            return [
                Candidate([random.random() for _ in range(self.genome_size)], origin="random")
                for _ in range(self.settings.population_size)
            ]

    def tell(self, individuals: list[Candidate]) -> None:
        self.hall_of_fame = keep_best(self.hall_of_fame + individuals, HALL_OF_FAME)
        self.generation += 1

    def best(self) -> list[Candidate]:
        return list(self.hall_of_fame)
