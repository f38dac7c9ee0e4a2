"""The four search algorithms on a known objective: seeded, bounded, improving, resumable from a pickle."""

from __future__ import annotations

import pickle

import pytest

from genetics.algorithm import SearchAlgorithm, make_algorithm
from genetics.candidate import Candidate
from genetics.search_config import CmaEsSettings, GeneticAlgorithmSettings, Nsga2Settings, RandomSearchSettings

TARGET = [0.3, 0.8, 0.1, 0.6]
SETTINGS = {
    "ga": GeneticAlgorithmSettings(population_size=12),
    "cma-es": CmaEsSettings(population_size=8, sigma=0.3),
    "nsga2": Nsga2Settings(population_size=12),
    "random": RandomSearchSettings(population_size=12),
}


def objectives(genes: list[float]) -> tuple[float, float]:
    """Two conflicting tasks: closeness to TARGET and closeness to its mirror image."""
    near = 1 - sum((g - t) ** 2 for g, t in zip(genes, TARGET, strict=True)) / len(genes)
    mirror = 1 - sum((g - (1 - t)) ** 2 for g, t in zip(genes, TARGET, strict=True)) / len(genes)
    return near, mirror


def score(individuals: list[Candidate], generation: int) -> None:
    for index, individual in enumerate(individuals):
        if not individual.scored:
            individual.status = "ok"
            individual.candidate_id = f"g{generation}-c{index}"
            individual.objectives = objectives(individual.genes)
            individual.fitness = individual.objectives[0]


def run(algorithm: SearchAlgorithm, generations: int) -> list[list[list[float]]]:
    asked = []
    for _ in range(generations):
        individuals = algorithm.ask()
        asked.append([list(ind.genes) for ind in individuals])
        score(individuals, algorithm.generation)
        algorithm.tell(individuals)
    return asked


@pytest.mark.parametrize("name", SETTINGS)
def test_same_seed_same_candidates_and_bounds_hold(name: str) -> None:
    first = run(make_algorithm(SETTINGS[name], len(TARGET), seed=3), 5)
    again = run(make_algorithm(SETTINGS[name], len(TARGET), seed=3), 5)
    other = run(make_algorithm(SETTINGS[name], len(TARGET), seed=4), 5)
    assert first == again
    assert first != other
    assert all(0.0 <= g <= 1.0 for generation in first for genes in generation for g in genes)


@pytest.mark.parametrize("name", SETTINGS)
def test_a_pickled_algorithm_resumes_exactly(name: str) -> None:
    straight = make_algorithm(SETTINGS[name], len(TARGET), seed=5)
    expected = run(straight, 6)
    interrupted = make_algorithm(SETTINGS[name], len(TARGET), seed=5)
    resumed = pickle.loads(pickle.dumps(interrupted))
    head = run(resumed, 3)
    resumed = pickle.loads(pickle.dumps(resumed))
    assert head + run(resumed, 3) == expected


@pytest.mark.parametrize("name", ["ga", "cma-es"])
def test_guided_algorithms_beat_random_search_on_a_smooth_objective(name: str) -> None:
    def best_after(settings: object, seed: int) -> float:
        algorithm = make_algorithm(settings, len(TARGET), seed)  # type: ignore[arg-type]
        run(algorithm, 10)
        return max(ind.fitness or 0.0 for ind in algorithm.best())

    # equal budgets: 10 generations of 12 (GA) / 8 (CMA-ES) against random search at the same count
    random_settings = RandomSearchSettings(population_size=SETTINGS[name].population_size or 8)
    guided = sorted(best_after(SETTINGS[name], seed) for seed in range(5))
    baseline = sorted(best_after(random_settings, seed) for seed in range(5))
    assert guided[2] > baseline[2]  # medians over five seeds
    assert guided[2] > 0.99


def test_nsga2_front_is_non_dominated_and_spans_both_objectives() -> None:
    algorithm = make_algorithm(SETTINGS["nsga2"], len(TARGET), seed=0)
    run(algorithm, 12)
    front = algorithm.best()
    assert len(front) >= 4
    for a in front:
        for b in front:
            assert not all(x >= y for x, y in zip(a.objectives, b.objectives, strict=True)) or (
                a.objectives == b.objectives or a is b
            )
    assert max(ind.objectives[0] for ind in front) > 0.95
    assert max(ind.objectives[1] for ind in front) > 0.95


def test_cma_es_lineage_names_the_candidates_its_centroid_came_from() -> None:
    algorithm = make_algorithm(SETTINGS["cma-es"], len(TARGET), seed=0)
    run(algorithm, 1)
    second = algorithm.ask()
    assert second[0].genetic_parents
    assert all(parent.startswith("g0-") for parent in second[0].genetic_parents)


def test_ga_children_never_repeat_a_parent_or_each_other() -> None:
    """A population of one genome, twelve times over: every tournament picks it and crossover of a genome with
    itself gives it back, so without `renew_repeats` all ten children would repeat it (and, their key being
    already scored, leave the generation with nothing new to evaluate)."""
    ga = make_algorithm(GeneticAlgorithmSettings(population_size=12, elite=2), len(TARGET), seed=1)
    same = [Candidate(list(TARGET), candidate_id=f"g0-c{index}", fitness=0.5, status="ok") for index in range(12)]
    ga.tell(same)
    bred = ga.ask()
    elites, children = bred[:2], bred[2:]
    assert [ind.genes for ind in elites] == [TARGET, TARGET]
    genomes = [tuple(ind.genes) for ind in children]
    assert len(set(genomes)) == len(children) == 10 and tuple(TARGET) not in genomes
    assert all(0.0 <= g <= 1.0 for genes in genomes for g in genes)
    assert all("mutation" in ind.origin for ind in children)


def test_nsga2_offspring_never_repeat_a_parent_or_each_other() -> None:
    nsga2 = make_algorithm(Nsga2Settings(population_size=12), len(TARGET), seed=1)
    same = [
        Candidate(list(TARGET), candidate_id=f"g0-c{index}", fitness=0.5, objectives=(0.5, 0.5), status="ok")
        for index in range(12)
    ]
    nsga2.tell(same)
    genomes = [tuple(ind.genes) for ind in nsga2.ask()]
    assert len(set(genomes)) == 12 and tuple(TARGET) not in genomes
