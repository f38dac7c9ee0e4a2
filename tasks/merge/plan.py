"""From a recipe and its parent models to a list of tensor jobs, checked before anything is computed.

Planning is where every mistake is caught: unknown parameters, values out of range, parents that lack a
tensor or disagree on a shape, layer ranges past the end of a model. Each error names the model, tensor
or recipe key. A plan holds no tensor data, so it is cheap and can be printed (`merge --plan`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tasks.errors import ModelMismatchError, RecipeError
from tasks.merge.architecture import architecture_of, is_post_layer, layer_count, parse_layer_name
from tasks.merge.chat_templates import AUTO, resolve_chat_template
from tasks.merge.output_tokenizer import OutputVocabulary, build_output_vocabulary, config_vocab_size, load_tokenizer
from tasks.merge.parameters import Value, gradient_values, resolve
from tasks.merge.recipe import InputSlice, OutputSlice, Parameters, Recipe
from tasks.merge.registry import MergeMethod, recipe_method
from tasks.merge.tensor_io import ModelSource
from tasks.merge.vocabulary import RowMap, is_vocabulary_tensor, plan_row_map

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class TensorInput:
    model: str
    tensor: str


@dataclass(frozen=True)
class TensorJob:
    """One output tensor: which input tensors feed it, and the method parameters evaluated for it."""

    output_name: str
    base: TensorInput | None
    models: tuple[TensorInput, ...]
    per_model: Mapping[str, tuple[Value, ...]]
    shared: Mapping[str, Value]
    shape: tuple[int, ...]
    dtype: torch.dtype
    """The output dtype, known before computing: the recipe's `out_dtype`, else the inputs' dtype after the
    cast to `dtype` and promotion to a common one (what every method returns)."""
    row_map: RowMap | None = None
    """For a token-indexed tensor when the recipe builds a tokenizer: how each input's rows move onto the
    output vocabulary before the method runs (`row_map.apply`); `shape` is then the remapped shape."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def inputs(self) -> list[TensorInput]:
        """Every tensor this job reads, the base first."""
        return ([self.base] if self.base else []) + list(self.models)


@dataclass
class MergePlan:
    recipe: Recipe
    method: MergeMethod
    sources: dict[str, ModelSource]
    jobs: list[TensorJob]
    reference_model: str
    output_layers: int
    compute_dtype: torch.dtype | None
    out_dtype: torch.dtype | None
    random_seed: int = 0
    check_finite: bool = False
    layer_sources: list[tuple[str, int]] = field(default_factory=list)
    """For each output layer, the (model, layer) its first source takes it from."""
    reference_layer_count: int = 0
    notes: list[str] = field(default_factory=list)
    vocabulary: OutputVocabulary | None = None
    """The tokenizer built for `tokenizer_source` / `tokenizer:` (saved with the model), else None: the
    tokenizer files of the reference model are copied."""
    chat_template: str | None = None
    """The template text the recipe's `chat_template` resolves to (None: keep the tokenizer's own)."""

    def output_config(self) -> dict[str, Any]:
        """The reference model's config.json with the layer count and dtype of the merged model."""
        config = dict(self.sources[self.reference_model].config)
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(config.get(key), int):
                config[key] = self.output_layers
                break
        reference_layers = self.reference_layer_count
        for key, value in list(config.items()):
            # per-layer lists (Qwen2/Gemma `layer_types`) must follow the layers the output is built from
            if isinstance(value, list) and len(value) == reference_layers and self.layer_sources:
                config[key] = [self.sources[m].config[key][layer] for m, layer in self.layer_sources]
        if self.vocabulary is not None:
            text_config = config.get("text_config")
            if "vocab_size" not in config and isinstance(text_config, dict) and "vocab_size" in text_config:
                config["text_config"] = {**text_config, "vocab_size": self.vocabulary.rows}
            else:
                config["vocab_size"] = self.vocabulary.rows
        # transformers 5 writes the dtype as `dtype` only (`torch_dtype` is its deprecated spelling, still
        # read): a parent's old key is carried over under the new name, as save_pretrained would write it.
        legacy = config.pop("torch_dtype", None)
        if legacy is not None and config.get("dtype") is None:
            config["dtype"] = legacy
        dtype_name = self.recipe.out_dtype or self.recipe.dtype
        if dtype_name:
            config["dtype"] = dtype_name
        return config

    def bytes_to_read(self) -> int:
        total = 0
        for job in self.jobs:
            for item in job.inputs:
                info = self.sources[item.model].tensors[item.tensor]
                total += math.prod(info.shape) * info.dtype.itemsize
        return total


def _slices_of(recipe: Recipe, layers: dict[str, int]) -> list[OutputSlice]:
    """The `models:` form is one slice spanning every layer of every model (as mergekit normalises it)."""
    if recipe.slices is not None:
        return recipe.slices
    assert recipe.models is not None
    counts = {entry.model: layers[entry.model] for entry in recipe.models}
    if recipe.base_model:
        counts[recipe.base_model] = layers[recipe.base_model]
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise ModelMismatchError(f"models have different layer counts ({detail}); use `slices` to align them")
    count = next(iter(counts.values()))
    sources = [InputSlice(model=e.model, layer_range=(0, count), parameters=e.parameters) for e in recipe.models]
    if recipe.base_model and recipe.base_model not in {e.model for e in recipe.models}:
        # mergekit appends an unlisted base as the last source, whatever the method: a method that ignores
        # the base (linear, karcher) then averages it in too.
        sources.append(InputSlice(model=recipe.base_model, layer_range=(0, count)))
    return [OutputSlice(sources=sources)]


def check_recipe_alone(recipe: Recipe, method: MergeMethod, where: str = "recipe") -> None:
    """What a recipe must get right before any parent is opened: a base model where its method needs one,
    and only parameters its method takes, each in range. A search checks this before it downloads
    anything (genetics/search_config.py), so a typo costs seconds, not a download."""
    if method.needs_base and not recipe.base_model and not any(s.base_model for s in recipe.slices or []):
        raise RecipeError(f"{where}: base_model: required by merge_method {method.name}")
    scopes: list[tuple[str, Parameters | None]] = [("parameters", recipe.parameters)]
    for index, entry in enumerate(recipe.models or []):
        scopes.append((f"models.{index}.parameters", entry.parameters))
    for index, out_slice in enumerate(recipe.slices or []):
        scopes.append((f"slices.{index}.parameters", out_slice.parameters))
        for j, source in enumerate(out_slice.sources):
            scopes.append((f"slices.{index}.sources.{j}.parameters", source.parameters))
    known = ", ".join(p.name for p in method.parameters) or "none"
    for key, params in scopes:
        for name, setting in (params or {}).items():
            spec = method.parameter(name)
            if spec is None:
                raise RecipeError(f"{where}: {key}.{name}: unknown parameter for {method.name} (known: {known})")
            for value in gradient_values(setting):
                problem = spec.check(value)
                if problem:
                    raise RecipeError(f"{where}: {key}.{name}: {problem}")


class Planner:
    """Builds a `MergePlan`; one instance per plan, holding the recipe, method and opened sources."""

    def __init__(
        self,
        recipe: Recipe,
        paths: Mapping[str, Any],
        source_name: str = "recipe",
        opened: Mapping[str, ModelSource] | None = None,
        allow_pickle: bool = False,
    ) -> None:
        self.recipe = recipe
        self.where = source_name
        self.method = recipe_method(recipe.merge_method, source_name)
        missing = [name for name in recipe.model_names() if name not in paths]
        if missing:
            raise RecipeError(f"{source_name}: no local path for model(s) {', '.join(missing)}")
        opened = opened or {}
        self.sources = {
            name: opened.get(name) or ModelSource(name, paths[name], allow_pickle) for name in recipe.model_names()
        }
        self.vocabulary: OutputVocabulary | None = None
        self.notes: list[str] = []
        self._row_maps: dict[tuple[Any, ...], RowMap] = {}

    # -- checks against the opened parents ------------------------------------------------------
    def _check_architectures(self) -> None:
        families = {name: architecture_of(source.config) for name, source in self.sources.items()}
        if len(set(families.values())) > 1:
            detail = ", ".join(f"{name}: {arch}" for name, arch in families.items())
            raise ModelMismatchError(f"parent models have different architectures ({detail})")

    def _check_model_references(self) -> None:
        problems = self.recipe.reference_problems()
        if problems:
            raise RecipeError("\n".join(f"{self.where}: {key}: {problem}" for key, problem in problems))

    # -- the output tokenizer -------------------------------------------------------------------
    def _build_vocabulary(self, reference: str) -> OutputVocabulary | None:
        """mergekit's BuildTokenizer: only when the recipe sets `tokenizer_source` or `tokenizer:`."""
        settings = self.recipe.tokenizer
        source = settings.source if settings is not None else self.recipe.tokenizer_source
        if source is None:
            return None
        key = self._tokenizer_key()
        try:
            return build_output_vocabulary(
                source,
                reference,
                self.recipe.model_names(),
                {name: src.path for name, src in self.sources.items()},
                {name: config_vocab_size(src.config) for name, src in self.sources.items()},
                add_tokens=list((settings.tokens or {}) if settings is not None else {}),
                pad_to_multiple_of=settings.pad_to_multiple_of if settings is not None else None,
                notes=self.notes,
            )
        except ModelMismatchError as error:
            raise ModelMismatchError(f"{self.where}: {key}: {error}") from None

    def _tokenizer_key(self) -> str:
        return "tokenizer.source" if self.recipe.tokenizer is not None else "tokenizer_source"

    def _chat_template(self, reference: str) -> str | None:
        setting = self.recipe.chat_template
        if setting is None:
            return None
        if self.vocabulary is None and not _has_tokenizer(self.sources[reference]):
            raise RecipeError(
                f"{self.where}: chat_template: the tokenizer donor {reference!r} has no tokenizer to carry the template"
            )
        templates = []
        if setting == AUTO:
            for name, source in self.sources.items():
                if not _has_tokenizer(source):
                    continue
                try:
                    templates.append(load_tokenizer(source.path).chat_template)
                except Exception as error:  # noqa: BLE001 - as mergekit: a parent whose tokenizer fails is skipped
                    self.notes.append(f"chat_template auto: cannot load the tokenizer of {name!r} ({error})")
        return resolve_chat_template(setting, templates)

    # -- planning -------------------------------------------------------------------------------
    def plan(self) -> MergePlan:
        check_recipe_alone(self.recipe, self.method, self.where)
        self._check_model_references()
        self._check_architectures()
        layers = {name: layer_count(source.config, list(source.tensors), name) for name, source in self.sources.items()}
        slices = _slices_of(self.recipe, layers)
        for index, out_slice in enumerate(slices):
            for j, source in enumerate(out_slice.sources):
                if source.layer_range[1] > layers[source.model]:
                    raise RecipeError(
                        f"{self.where}: slices.{index}.sources.{j}.layer_range: {list(source.layer_range)} is out "
                        f"of bounds for {source.model}, which has {layers[source.model]} layers"
                    )
        reference = self.recipe.base_model or slices[0].sources[0].model
        self.vocabulary = self._build_vocabulary(reference)
        chat_template = self._chat_template(reference)
        reference_names = list(self.sources[reference].tensors)
        layer_suffixes: list[tuple[str, str]] = []
        for name in reference_names:
            parsed = parse_layer_name(name)
            if parsed is not None and parsed.index == 0:
                layer_suffixes.append((parsed.prefix, parsed.suffix))
        non_layer = [name for name in reference_names if parse_layer_name(name) is None]
        pre = [name for name in non_layer if not is_post_layer(name)]
        post = [name for name in non_layer if is_post_layer(name)]

        jobs = [self._job(name, {s.model: name for s in slices[0].sources}, slices[0], 0.0) for name in pre]
        output_layer = 0
        layer_sources: list[tuple[str, int]] = []
        for out_slice in slices:
            span = out_slice.sources[0].layer_range[1] - out_slice.sources[0].layer_range[0]
            for offset in range(span):
                t = offset / (span - 1) if span > 1 else 1.0
                for prefix, suffix in layer_suffixes:
                    inputs = {s.model: f"{prefix}.{s.layer_range[0] + offset}.{suffix}" for s in out_slice.sources}
                    jobs.append(self._job(f"{prefix}.{output_layer}.{suffix}", inputs, out_slice, t))
                first = out_slice.sources[0]
                layer_sources.append((first.model, first.layer_range[0] + offset))
                output_layer += 1
        jobs += [self._job(name, {s.model: name for s in slices[-1].sources}, slices[-1], 0.0) for name in post]
        if self.vocabulary is not None and not any(job.row_map is not None for job in jobs):
            raise ModelMismatchError(
                f"{self.where}: {self._tokenizer_key()}: no tensor of {reference!r} is recognised as token "
                "embeddings or LM head, so its rows cannot follow the new vocabulary"
            )
        return MergePlan(
            recipe=self.recipe,
            method=self.method,
            sources=self.sources,
            jobs=jobs,
            reference_model=reference,
            output_layers=output_layer,
            layer_sources=layer_sources,
            reference_layer_count=layers[reference],
            compute_dtype=DTYPES.get(self.recipe.dtype or ""),
            out_dtype=DTYPES.get(self.recipe.out_dtype or ""),
            notes=self.notes,
            vocabulary=self.vocabulary,
            chat_template=chat_template,
        )

    def _shape(self, model: str, tensor: str) -> tuple[int, ...]:
        info = self.sources[model].tensors.get(tensor)
        if info is None:
            raise ModelMismatchError(f"model {model!r} lacks tensor {tensor}")
        return info.shape

    def _job(self, output_name: str, inputs: dict[str, str], out_slice: OutputSlice, t: float) -> TensorJob:
        base_name = out_slice.base_model or self.recipe.base_model
        base: TensorInput | None = None
        uses_base = self.method.base == "required" or (self.method.base == "optional" and base_name is not None)
        if uses_base:
            assert base_name is not None
            base = TensorInput(base_name, inputs.get(base_name, output_name))
            models = [TensorInput(m, name) for m, name in inputs.items() if m != base_name]
        else:
            models = [TensorInput(m, name) for m, name in inputs.items()]
        besides = " besides the base" if uses_base else ""
        if self.method.exact_models is not None and len(models) != self.method.exact_models:
            raise RecipeError(
                f"{self.where}: models: {self.method.name} merges exactly {self.method.exact_models} model(s)"
                f"{besides}, got {len(models)} for {output_name}"
            )
        if len(models) < self.method.min_models:
            raise RecipeError(
                f"{self.where}: models: {self.method.name} needs at least {self.method.min_models} model(s)"
                f"{besides}, got {len(models)} for {output_name}"
            )
        if not models and base is None:
            raise RecipeError(f"{self.where}: models: nothing to merge for {output_name}")
        shapes = {item.model: self._shape(item.model, item.tensor) for item in ([base] if base else []) + models}
        row_map = None
        if self.vocabulary is not None and is_vocabulary_tensor(output_name):
            row_map = self._row_map(output_name, [*inputs, *shapes], base_name, shapes)
        if row_map is not None:
            shapes = {model: (row_map.size, *shape[1:]) for model, shape in shapes.items()}
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{model}: {list(shape)}" for model, shape in shapes.items())
            if is_vocabulary_tensor(output_name) and len({shape[1:] for shape in shapes.values()}) == 1:
                raise ModelMismatchError(
                    f"vocabulary size mismatch in {output_name} ({detail}): the parents use different "
                    "tokenizers; set `tokenizer_source` (base, union or a model) so embedding rows are remapped"
                )
            raise ModelMismatchError(f"shape mismatch for {output_name} ({detail})")
        sources_by_model = {s.model: s for s in out_slice.sources}
        per_model: dict[str, tuple[Value, ...]] = {}
        for spec in self.method.scoped("per_model"):
            values: list[Value] = []
            for item in models:
                source = sources_by_model.get(item.model)
                scopes = [source.parameters if source else None, out_slice.parameters, self.recipe.parameters]
                value = resolve(spec.name, scopes, item.tensor, t)
                if value is None:
                    value = spec.default
                if value is None and not spec.optional:
                    raise RecipeError(
                        f"{self.where}: {_model_key(self.recipe, item.model)}.parameters.{spec.name}: required by "
                        f"{self.method.name} (missing for {item.tensor})"
                    )
                values.append(value)  # type: ignore[arg-type]
            per_model[spec.name] = tuple(values)
        shared: dict[str, Value] = {}
        for spec in self.method.scoped("global"):
            value = resolve(spec.name, [out_slice.parameters, self.recipe.parameters], output_name, t)
            if value is None:
                value = spec.default
            if value is None:
                raise RecipeError(f"{self.where}: parameters.{spec.name}: required by {self.method.name}")
            shared[spec.name] = value
        dtype = self._output_dtype(([base] if base else []) + models)
        shape = next(iter(shapes.values()))
        return TensorJob(output_name, base, tuple(models), per_model, shared, shape, dtype, row_map)

    def _row_map(
        self, tensor: str, order: list[str], base: str | None, shapes: Mapping[str, tuple[int, ...]]
    ) -> RowMap | None:
        """The row map of a token-indexed tensor (shared by tensors with the same parents and row counts)."""
        assert self.vocabulary is not None
        models = list(dict.fromkeys(order))
        if any(len(shapes[model]) == 0 for model in models):
            return None
        rows = {model: shapes[model][0] for model in models}
        key = (tuple(models), base, tuple(rows.values()))
        if key not in self._row_maps:
            tokens = self.recipe.tokenizer.tokens if self.recipe.tokenizer is not None else None
            try:
                self._row_maps[key] = plan_row_map(self.vocabulary, models, base, rows, tokens, tensor)
            except RecipeError as error:
                raise RecipeError(f"{self.where}: {error}") from None
            except ModelMismatchError as error:
                raise ModelMismatchError(f"{self.where}: {error}") from None
        return self._row_maps[key]

    def _output_dtype(self, inputs: list[TensorInput]) -> torch.dtype:
        compute = DTYPES.get(self.recipe.dtype or "")
        common: torch.dtype | None = None
        for item in inputs:
            dtype = self.sources[item.model].tensors[item.tensor].dtype
            if compute is not None and dtype.is_floating_point:
                dtype = compute
            common = dtype if common is None else torch.promote_types(common, dtype)
        assert common is not None
        if self.method.result_at_least is not None and common.is_floating_point:
            common = torch.promote_types(common, self.method.result_at_least)
        return DTYPES.get(self.recipe.out_dtype or "") or common


def _has_tokenizer(source: ModelSource) -> bool:
    return any((source.path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


def _model_key(recipe: Recipe, model: str) -> str:
    for index, entry in enumerate(recipe.models or []):
        if entry.model == model:
            return f"models.{index}"
    for index, out_slice in enumerate(recipe.slices or []):
        for j, source in enumerate(out_slice.sources):
            if source.model == model:
                return f"slices.{index}.sources.{j}"
    return f"model {model}"


def plan_merge(
    recipe: Recipe,
    paths: Mapping[str, Any],
    source_name: str = "recipe",
    opened: Mapping[str, ModelSource] | None = None,
    *,
    allow_pickle: bool = False,
    check_finite: bool = False,
    random_seed: int = 0,
) -> MergePlan:
    """Check `recipe` against its parents and list the tensor jobs. `opened` reuses sources whose headers
    and file handles are already open (the search plans hundreds of candidates over the same parents)."""
    plan = Planner(recipe, paths, source_name, opened, allow_pickle).plan()
    plan.check_finite = check_finite
    plan.random_seed = random_seed
    return plan
