"""Random search: uniform samples of the gene box, the honest baseline every other algorithm must beat."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from genetics.individual import HALL_OF_FAME, Individual, OwnedRandomness, keep_best
from genetics.search_config import RandomSearchSettings


@dataclass
class RandomSearch:
    settings: RandomSearchSettings
    genome_size: int
    seed: int
    generation: int = 0
    hall_of_fame: list[Individual] = field(default_factory=list)
    randomness: OwnedRandomness = field(init=False)

    def __post_init__(self) -> None:
        self.randomness = OwnedRandomness(self.seed)

    def ask(self) -> list[Individual]:
        with self.randomness.active():
            return [
                Individual([random.random() for _ in range(self.genome_size)], origin="random")
                for _ in range(self.settings.population_size)
            ]

    def tell(self, individuals: list[Individual]) -> None:
        self.hall_of_fame = keep_best(self.hall_of_fame + individuals, HALL_OF_FAME)
        self.generation += 1

    def best(self) -> list[Individual]:
        return list(self.hall_of_fame)
