"""The merge recipe: mergekit's YAML schema, so a user's existing mergekit recipe runs unchanged.

Validation is strict (unknown keys are errors) because a silently ignored typo in a merge recipe produces
a plausible-looking but wrong model. Every error names the file and the dotted key path.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.config_messages import describe_value, document_problem, validation_message
from tasks.errors import RecipeError
from tasks.merge.chat_templates import chat_template_problem

Scalar = float | int | bool | str


class ConditionalParameter(BaseModel):
    """`- filter: self_attn` / `value: 0.5`: a value that applies to tensors whose name contains `filter`."""

    model_config = ConfigDict(extra="forbid")
    value: Scalar | list[float] | list[Scalar]
    filter: str | None = None


def _setting_shape(value: Any) -> Any:
    """A parameter is a value, a gradient (a list of values) or a list of `filter:`/`value:` entries; say so
    in one line instead of one line per union member pydantic tried."""
    scalar = (int, float, str)
    if isinstance(value, scalar):
        return value
    if isinstance(value, list) and value and all(isinstance(item, scalar) for item in value):
        return value
    if isinstance(value, list) and value and all(isinstance(item, ConditionalParameter) for item in value):
        return value
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        entries = []
        for index, item in enumerate(value):
            try:
                entries.append(ConditionalParameter.model_validate(item))
            except ValidationError as error:
                raise ValueError(validation_message(f"entry {index}", error, unknown_key="unknown key")) from None
        return entries
    raise ValueError(
        "expected a number, a list of numbers (a gradient across the layers) or a list of `filter:` / `value:` "
        f"entries, got {describe_value(value)}"
    )


ParameterSetting = Annotated[
    Scalar | list[float] | list[ConditionalParameter] | list[Scalar], BeforeValidator(_setting_shape)
]
Parameters = dict[str, ParameterSetting]

DTYPE_NAMES = ("float32", "float16", "bfloat16")


class InputModel(BaseModel):
    """An entry of `models:`: a parent model and its per-model parameters (weight, density, ...)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    parameters: Parameters | None = None


class InputSlice(BaseModel):
    """A source of a slice: layers `[start, end)` of one model (mergekit's half-open `layer_range`)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    layer_range: tuple[int, int]
    parameters: Parameters | None = None

    @field_validator("layer_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        start, end = value
        if start < 0 or end <= start:
            raise ValueError(f"layer_range must be [start, end) with 0 <= start < end, got [{start}, {end}]")
        return value


class OutputSlice(BaseModel):
    """One block of output layers, merged from sources that each contribute the same number of layers."""

    model_config = ConfigDict(extra="forbid")
    sources: list[InputSlice] = Field(min_length=1)
    base_model: str | None = None
    residual_weight: float | None = None
    parameters: Parameters | None = None

    @model_validator(mode="after")
    def _same_length(self) -> OutputSlice:
        lengths = {s.layer_range[1] - s.layer_range[0] for s in self.sources}
        if len(lengths) > 1:
            ranges = ", ".join(f"{s.model}{list(s.layer_range)}" for s in self.sources)
            raise ValueError(f"all sources of a slice must span the same number of layers, got {ranges}")
        return self


class ModelTokenEmbedding(BaseModel):
    """`{kind: model_token, model: M, token: T}` (or `token_id: N`): the row of token T (row N) of model M."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["model_token"]
    model: str
    token_id: int | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _one_token(self) -> ModelTokenEmbedding:
        if (self.token_id is None) == (self.token is None):
            raise ValueError("give exactly one of `token` or `token_id`")
        if self.token_id is not None and self.token_id < 0:
            raise ValueError(f"token_id must be >= 0, got {self.token_id}")
        return self


class ZeroEmbedding(BaseModel):
    """`{kind: zero}`: an all-zero row."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["zero"]


TOKEN_SOURCE_KINDS = {"model_token": ModelTokenEmbedding, "zero": ZeroEmbedding}


class TokenEmbeddingConfig(BaseModel):
    """Where one token's embedding row comes from when a parent lacks it (or always, with `force`):
    a model name (that model's row for the token), a `model_token` or `zero` source."""

    model_config = ConfigDict(extra="forbid")
    source: ModelTokenEmbedding | ZeroEmbedding | str | None = None
    force: bool = False

    @field_validator("source", mode="before")
    @classmethod
    def _by_kind(cls, value: Any) -> Any:
        """Pick the source type by its `kind`, so an error names one schema instead of every union member."""
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, dict):
            raise ValueError("must be a model name, {kind: zero} or {kind: model_token, model: ..., token: ...}")
        kind = value.get("kind")
        schema = TOKEN_SOURCE_KINDS.get(kind) if isinstance(kind, str) else None
        if schema is None:
            raise ValueError(f"kind must be one of {', '.join(TOKEN_SOURCE_KINDS)}, got {kind!r}")
        try:
            return schema.model_validate(value)
        except ValidationError as error:
            problems = []
            for item in error.errors():
                key = ".".join(str(part) for part in item["loc"])
                message = item["msg"].removeprefix("Value error, ")
                if item["type"] == "extra_forbidden":
                    message = "unknown key"
                problems.append(f"{key}: {message}" if key else message)
            raise ValueError("; ".join(problems)) from None


class TokenizerConfig(BaseModel):
    """mergekit's `tokenizer:` block: the output vocabulary (`source`: union, base or a model), tokens to
    add or whose rows to set (`tokens`), and the embedding row count rounded up (`pad_to_multiple_of`)."""

    model_config = ConfigDict(extra="forbid")
    source: str = "union"
    tokens: dict[str, TokenEmbeddingConfig] | None = None
    pad_to_multiple_of: int | None = None

    @field_validator("pad_to_multiple_of")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(f"must be a positive number of rows (or 0 for none), got {value}")
        return value


class Recipe(BaseModel):
    """A mergekit `MergeConfiguration`. Either `models` or `slices`, never both."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    """A document's name in a multi-document recipe (mergekit-multi): later documents use it as a model."""
    merge_method: str
    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
    base_model: str | None = None
    parameters: Parameters | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    tokenizer: TokenizerConfig | None = None
    chat_template: str | None = None

    @field_validator("dtype", "out_dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is not None and value not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {value!r}; expected one of {', '.join(DTYPE_NAMES)}")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _one_tokenizer_setting(cls, value: TokenizerConfig | None, info: ValidationInfo) -> TokenizerConfig | None:
        if value is not None and info.data.get("tokenizer_source") is not None:
            raise ValueError("cannot be used together with `tokenizer_source`; set one or the other")
        return value

    @field_validator("chat_template")
    @classmethod
    def _known_chat_template(cls, value: str | None) -> str | None:
        if value is not None:
            problem = chat_template_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _models_or_slices(self) -> Recipe:
        if (self.models is None) == (self.slices is None):
            raise ValueError("a recipe needs exactly one of `models` or `slices`")
        if self.models is not None and not self.models:
            raise ValueError("`models` is empty")
        return self

    def reference_problems(self) -> list[tuple[str, str]]:
        """(key, problem) for each model the tokenizer settings name that the recipe does not merge."""
        models = set(self.model_names())
        problems: list[tuple[str, str]] = []

        def check_source(key: str, value: str) -> None:
            if value not in ("base", "union") and value not in models:
                problems.append((key, f"{value!r} is neither `base`, `union` nor one of the recipe's models"))

        if self.tokenizer_source is not None:
            check_source("tokenizer_source", self.tokenizer_source)
        if self.tokenizer is not None:
            check_source("tokenizer.source", self.tokenizer.source)
            for token, setting in (self.tokenizer.tokens or {}).items():
                source = setting.source
                key = f"tokenizer.tokens.{token}.source"
                if isinstance(source, ModelTokenEmbedding):
                    source, key = source.model, key + ".model"
                if isinstance(source, str) and source not in models:
                    problems.append((key, f"{source!r} is not one of the recipe's models"))
                if setting.source is None and setting.force:
                    problems.append((f"tokenizer.tokens.{token}", "`force` needs a `source` to take the row from"))
        return problems

    def model_names(self) -> list[str]:
        """Every model the recipe reads, base first, without duplicates, in recipe order."""
        names: list[str] = []
        candidates = [self.base_model] if self.base_model else []
        for entry in self.models or []:
            candidates.append(entry.model)
        for out_slice in self.slices or []:
            if out_slice.base_model:
                candidates.append(out_slice.base_model)
            candidates.extend(source.model for source in out_slice.sources)
        for name in candidates:
            if name is not None and name not in names:
                names.append(name)
        return names

    def to_yaml(self) -> str:
        """Canonical YAML: unset keys dropped, key order fixed, so equal recipes give equal text."""
        return yaml.safe_dump(self.canonical_dict(), sort_keys=False, default_flow_style=None)

    def canonical_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def sha256(self) -> str:
        """Content hash of the recipe (key order and formatting do not matter)."""
        text = json.dumps(self.canonical_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    problem = document_problem(data, "recipe", "merge_method: linear")
    if problem:
        raise RecipeError(f"{source}: {problem}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(validation_message(source, error)) from None
    problems = recipe.reference_problems()
    if problems:
        raise RecipeError("\n".join(f"{source}: {key}: {problem}" for key, problem in problems))
    return recipe
