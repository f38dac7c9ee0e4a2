"""What the search loop needs from an algorithm, and the one place that builds it from the config."""

from __future__ import annotations

from typing import Protocol

from genetics.candidate import Candidate
from genetics.cma_es import CmaEs
from genetics.ga import GeneticAlgorithm
from genetics.nsga2 import Nsga2
from genetics.random_search import RandomSearch
from genetics.search_config import (
    AlgorithmSettings,
    CmaEsSettings,
    GeneticAlgorithmSettings,
    Nsga2Settings,
    RandomSearchSettings,
)


class SearchAlgorithm(Protocol):
    """Ask for a generation of individuals, score them, tell them back; the object holds all state
    (population, strategy, its own random streams), so pickling it is a checkpoint."""

    generation: int

    def ask(self) -> list[Candidate]: ...

    def tell(self, individuals: list[Candidate]) -> None: ...

    def best(self) -> list[Candidate]:
        """The hall of fame (best first), or for NSGA-II the Pareto front."""
        ...


def make_algorithm(settings: AlgorithmSettings, genome_size: int, seed: int) -> SearchAlgorithm:
    if isinstance(settings, GeneticAlgorithmSettings):
        return GeneticAlgorithm(settings, genome_size, seed)
    if isinstance(settings, CmaEsSettings):
        return CmaEs(settings, genome_size, seed)
    if isinstance(settings, Nsga2Settings):
        return Nsga2(settings, genome_size, seed)
    if isinstance(settings, RandomSearchSettings):
        return RandomSearch(settings, genome_size, seed)
    raise TypeError(f"no algorithm for settings {type(settings).__name__}")
