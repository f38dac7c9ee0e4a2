"""Genes <-> recipes: bounds always respected, decode/encode round trip, config errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genetics.genome import DECIMALS, GeneSpec, GenomeSpec
from genetics.search_config import load_search_config
from tasks.errors import RecipeError
from tasks.merge.parameters import evaluate_setting

TEMPLATE = {
    "merge_method": "task_arithmetic",
    "base_model": "base",
    "models": [{"model": "add"}, {"model": "sort"}],
}
GENES = (
    GeneSpec(parameter="weight", model="add", low=0.0, high=1.5, layer_groups=3),
    GeneSpec(parameter="weight", model="sort", low=0.0, high=1.5),
    GeneSpec(parameter="lambda", low=0.5, high=1.5),
)
SPEC = GenomeSpec(TEMPLATE, GENES)


def test_names_and_size() -> None:
    assert SPEC.size == 5
    assert SPEC.names() == ["weight/add/g0", "weight/add/g1", "weight/add/g2", "weight/sort", "lambda"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=5, max_size=5))
def test_decoded_values_stay_within_bounds(genes: list[float]) -> None:
    recipe = SPEC.decode(genes)
    assert recipe.models is not None
    add_weights = recipe.models[0].parameters["weight"]  # type: ignore[index]
    assert isinstance(add_weights, list) and len(add_weights) == 3
    assert all(0.0 <= w <= 1.5 for w in add_weights)
    assert 0.0 <= recipe.models[1].parameters["weight"] <= 1.5  # type: ignore[index, operator]
    assert 0.5 <= recipe.parameters["lambda"] <= 1.5  # type: ignore[index, operator]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=5, max_size=5))
def test_round_trip(genes: list[float]) -> None:
    recipe = SPEC.decode(genes)
    encoded = SPEC.encode(recipe)
    assert all(abs(a - b) <= 10**-DECIMALS for a, b in zip(encoded, genes, strict=True))
    assert SPEC.decode(encoded) == recipe


def test_layer_groups_become_a_mergekit_gradient() -> None:
    recipe = SPEC.decode([0.0, 1.0, 0.0, 0.5, 0.5])
    gradient = recipe.models[0].parameters["weight"]  # type: ignore[index, union-attr]
    assert gradient == [0.0, 1.5, 0.0]
    # a 5-layer model: layer 1 (t = 0.25) sits halfway between the first two groups
    assert evaluate_setting(gradient, "model.layers.1.mlp.up_proj.weight", 0.25) == pytest.approx(0.75)


def test_gene_for_an_unknown_model_is_refused() -> None:
    with pytest.raises(RecipeError, match=r"genes\.0\.model: 'nope' is not one of the recipe's models"):
        GenomeSpec(TEMPLATE, (GeneSpec(parameter="weight", model="nope", low=0, high=1),))


def test_search_config_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(
        "name: x\nrecipe: {merge_method: linear, models: [{model: a}]}\n"
        "genes: [{parameter: weight, model: a, low: 1.0, high: 0.5}]\n"
        "evaluation: {tasks: [t]}\nalgorithm: {population_size: 1}\n"
    )
    with pytest.raises(RecipeError) as error:
        load_search_config(path)
    message = str(error.value)
    assert f"{path}: genes.0: low (1.0) must be below high (0.5)" in message
    assert f"{path}: algorithm.population_size: must be greater than or equal to 2" in message


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (
            "{name: annealing}",
            "algorithm: name: 'annealing' is not one of 'ga', 'cma-es', 'nsga2', 'random'",
        ),
        ("{name: cma-es, centroid: 1.5}", "algorithm: centroid must lie in [0, 1] (gene space), got 1.5"),
        ("{name: nsga2, population_size: 10}", "population_size (10) must be a multiple of 4"),
        ("{name: random, elite: 2}", "algorithm.elite: unknown key"),
    ],
)
def test_algorithm_settings_are_checked_per_algorithm(tmp_path: Path, algorithm: str, expected: str) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(
        "name: x\nrecipe: {merge_method: linear, models: [{model: a}]}\n"
        "genes: [{parameter: weight, model: a, low: 0, high: 1}]\nevaluation: {tasks: [t]}\n"
        f"algorithm: {algorithm}\n"
    )
    with pytest.raises(RecipeError) as error:
        load_search_config(path)
    assert f"{path}: " in str(error.value)
    assert expected in str(error.value)


def test_algorithm_without_a_name_is_the_ga(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(
        "name: x\nrecipe: {merge_method: linear, models: [{model: a}]}\n"
        "genes: [{parameter: weight, model: a, low: 0, high: 1}]\nevaluation: {tasks: [t]}\n"
        "algorithm: {population_size: 6}\n"
    )
    config = load_search_config(path)
    assert config.algorithm.name == "ga" and config.algorithm.population_size == 6


METHOD_SPEC = GenomeSpec(
    {**TEMPLATE, "merge_method": "ties"},
    (
        GeneSpec(parameter="merge_method", choices=["ties", "dare_ties", "task_arithmetic"]),
        GeneSpec(parameter="weight", model="add", low=0.0, high=1.5),
        GeneSpec(parameter="density", model="add", low=0.2, high=1.0),
        GeneSpec(parameter="lambda", low=0.5, high=1.5),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-0.5, max_value=1.5, allow_nan=False), min_size=4, max_size=4))
def test_method_gene_picks_a_choice_and_keeps_only_its_parameters(genes: list[float]) -> None:
    recipe = METHOD_SPEC.decode(genes).canonical_dict()
    choices = ["ties", "dare_ties", "task_arithmetic"]
    unit = min(1.0, max(0.0, genes[0]))
    assert recipe["merge_method"] == choices[min(int(unit * 3), 2)]
    add = next(m for m in recipe["models"] if m["model"] == "add")["parameters"]
    assert 0.0 <= add["weight"] <= 1.5
    if recipe["merge_method"] == "task_arithmetic":
        assert "density" not in add  # task_arithmetic takes no density
    else:
        assert 0.2 <= add["density"] <= 1.0
    assert 0.5 <= recipe["parameters"]["lambda"] <= 1.5
    assert (
        METHOD_SPEC.decode(METHOD_SPEC.encode(METHOD_SPEC.decode(genes))).sha256() == METHOD_SPEC.decode(genes).sha256()
    )


@pytest.mark.parametrize(
    ("gene", "message"),
    [
        ({"parameter": "merge_method", "choices": ["ties"]}, "at least two merge methods"),
        ({"parameter": "merge_method", "choices": ["ties", "mystery"]}, "unknown merge_method 'mystery'"),
        ({"parameter": "merge_method", "choices": ["ties", "slerp"], "low": 0}, "takes only `choices`"),
        ({"parameter": "weight", "model": "add", "choices": ["a", "b"]}, "`choices` is only for the merge_method"),
        ({"parameter": "weight", "model": "add", "low": 0}, "a numeric gene needs `low` and `high`"),
    ],
)
def test_gene_spec_errors(gene: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GeneSpec.model_validate(gene)


TIES = {**TEMPLATE, "merge_method": "ties"}


@pytest.mark.parametrize(
    ("template", "genes", "message"),
    [
        (
            TIES,
            [GeneSpec(parameter="density", model="add", low=0.2, high=1.5)],
            r"genes\.0\.high: density: 1\.5 is out of range \(0, 1\] \(merge_method ties\)",
        ),
        (
            TIES,
            [GeneSpec(parameter="density", model="add", low=0.0, high=0.5)],
            r"genes\.0\.low: density: 0\.0 is out of range \(0, 1\] \(merge_method ties\)",
        ),
        (
            TIES,
            [GeneSpec(parameter="weight", model="add", low=0, high=1), GeneSpec(parameter="wieght", low=0, high=1)],
            r"genes\.1\.parameter: 'wieght' is not a parameter of merge_method ties \(known: .*\bweight\b",
        ),
        (  # with the method searched, a gene must fit every choice that takes its parameter...
            TIES,
            [
                GeneSpec(parameter="merge_method", choices=["task_arithmetic", "dare_ties"]),
                GeneSpec(parameter="density", model="add", low=0.5, high=2.0),
            ],
            r"genes\.1\.high: density: 2\.0 is out of range \(0, 1\] \(merge_method dare_ties\)",
        ),
        (  # ...and at least one choice must take it
            TIES,
            [
                GeneSpec(parameter="merge_method", choices=["task_arithmetic", "linear"]),
                GeneSpec(parameter="density", model="add", low=0.5, high=1.0),
            ],
            r"'density' is not a parameter of merge_method task_arithmetic or linear",
        ),
        (
            {**TEMPLATE, "merge_method": "slerpy"},
            [GeneSpec(parameter="t", low=0, high=1)],
            r"recipe: merge_method: unknown merge_method 'slerpy'",
        ),
    ],
)
def test_a_gene_outside_what_its_method_takes_is_refused_up_front(
    template: dict[str, object], genes: list[GeneSpec], message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        GenomeSpec(template, tuple(genes))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-0.5, max_value=1.5, allow_nan=False), min_size=4, max_size=4))
def test_an_accepted_genome_decodes_only_to_recipes_its_method_accepts(genes: list[float]) -> None:
    """What `GenomeSpec` accepts can never give a candidate that the merge refuses for its settings (the
    checks `plan_merge` runs on the recipe alone), whatever the genes and the method chosen."""
    from tasks.merge.plan import check_recipe_alone
    from tasks.merge.registry import recipe_method

    recipe = METHOD_SPEC.decode(genes)
    check_recipe_alone(recipe, recipe_method(recipe.merge_method))
    negative = GenomeSpec(TEMPLATE, (GeneSpec(parameter="weight", model="add", low=-1.0, high=2.0),))
    weights = negative.decode(genes[:1])  # task arithmetic takes negative weights (a task vector subtracted)
    check_recipe_alone(weights, recipe_method(weights.merge_method))


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("{merge_method: task_arithmetic, models: [{model: a}]}", "recipe: base_model: required by merge_method"),
        (
            "{merge_method: linear, models: [{model: a}], parameters: {lamda: 1.0}}",
            "recipe: parameters.lamda: unknown parameter for linear",
        ),
        (
            "{merge_method: ties, base_model: b, models: [{model: a, parameters: {density: 1.2}}]}",
            "recipe: models.0.parameters.density: 1.2 is out of range (0, 1]",
        ),
    ],
)
def test_search_config_recipe_is_checked_before_any_parent_is_opened(tmp_path: Path, recipe: str, message: str) -> None:
    """No parent `a` or `b` exists anywhere: the config is refused on the recipe alone, naming file and key."""
    path = tmp_path / "search.yaml"
    path.write_text(
        f"name: x\nrecipe: {recipe}\ngenes: [{{parameter: weight, model: a, low: 0, high: 1}}]\n"
        "evaluation: {tasks: [t]}\n"
    )
    with pytest.raises(RecipeError) as error:
        load_search_config(path)
    assert f"{path}: {message}" in str(error.value)


RAM_SPEC = GenomeSpec(
    {**TEMPLATE, "merge_method": "ram"},
    (
        GeneSpec(parameter="merge_method", choices=["ties", "ram", "ramplus_tl"]),
        GeneSpec(parameter="density", model="add", low=0.2, high=1.0),
        GeneSpec(parameter="weight", model="add", low=0.0, high=1.5),
        GeneSpec(parameter="r", low=0.0, high=0.5),
        GeneSpec(parameter="epsilon", low=0.0, high=0.01),
    ),
)


@pytest.mark.parametrize(
    ("unit", "method", "kept"),
    [(0.1, "ties", {"density", "weight"}), (0.5, "ram", {"epsilon"}), (0.9, "ramplus_tl", {"r", "epsilon"})],
)
def test_ram_methods_are_genome_choices_with_their_own_parameters(unit: float, method: str, kept: set[str]) -> None:
    recipe = RAM_SPEC.decode([unit, 0.5, 0.5, 0.5, 0.5]).canonical_dict()
    assert recipe["merge_method"] == method
    add = next(m for m in recipe["models"] if m["model"] == "add").get("parameters", {})
    assert set(add) | set(recipe.get("parameters", {})) == kept


def test_a_ram_gene_out_of_range_is_refused() -> None:
    with pytest.raises(RecipeError, match=r"genes\.0\.low: alpha: -0\.5 is out of range \[0, inf\) \(merge_method "):
        GenomeSpec({**TEMPLATE, "merge_method": "ramplus_tl"}, (GeneSpec(parameter="alpha", low=-0.5, high=0.5),))


MULTI_TEMPLATE = [
    {
        "name": "pair",
        "merge_method": "task_arithmetic",
        "base_model": "base",
        "models": [{"model": "add"}, {"model": "sort"}],
    },
    {"merge_method": "slerp", "base_model": "base", "models": [{"model": "pair"}]},
]
MULTI_SPEC = GenomeSpec(
    MULTI_TEMPLATE,
    (
        GeneSpec(parameter="weight", model="add", document="pair", low=0.0, high=1.5, layer_groups=2),
        GeneSpec(parameter="weight", model="sort", document="pair", low=0.0, high=1.5),
        GeneSpec(parameter="t", low=0.0, high=1.0),  # no document: the output one
    ),
)


def test_a_multi_document_genome_decodes_into_a_mergekit_multi_file(tmp_path: Path) -> None:
    from tasks.merge.recipe_set import load_recipe_set

    recipe_set = MULTI_SPEC.decode_documents([0.0, 1.0, 0.5, 0.25])
    pair, final = (document.recipe.canonical_dict() for document in recipe_set.documents)
    assert [m["parameters"]["weight"] for m in pair["models"]] == [[0.0, 1.5], 0.75]
    assert final["parameters"] == {"t": 0.25} and final["models"] == [{"model": "pair"}]
    assert [d.name for d in recipe_set.order(recipe_set.output())] == ["pair", None]
    assert MULTI_SPEC.names() == ["pair/weight/add/g0", "pair/weight/add/g1", "pair/weight/sort", "t"]
    path = tmp_path / "candidate.yaml"
    path.write_text(recipe_set.to_yaml())
    assert load_recipe_set(path).sha256() == recipe_set.sha256()
    with pytest.raises(RecipeError, match="decodes with decode_documents"):
        MULTI_SPEC.decode([0.5] * 4)


@pytest.mark.parametrize(
    ("gene", "message"),
    [
        (GeneSpec(parameter="t", document="pear", low=0, high=1), r"genes\.0\.document: 'pear' is not a document"),
        (GeneSpec(parameter="weight", model="add", low=0, high=1), r"genes\.0\.model: 'add' is not one of"),
        (GeneSpec(parameter="t", document="pair", low=0, high=1), r"'t' is not a parameter of merge_method task_ari"),
        (GeneSpec(parameter="t", low=0, high=2), r"genes\.0\.high: t: 2\.0 is out of range \[0, 1\] \(merge_method sl"),
    ],
)
def test_multi_document_genes_are_checked_against_their_own_document(gene: GeneSpec, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        GenomeSpec(MULTI_TEMPLATE, (gene,))
