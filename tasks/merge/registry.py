"""The registry of merge methods: a dict filled by a decorator, nothing built at run time.

A method is a plain function over tensors. The engine around it (reading, per-layer gradients, dtype,
writing) knows nothing of any one method; it learns from the registry which parameters a method takes,
their defaults and ranges, and whether it needs a base model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from tasks.errors import RecipeError

Scope = Literal["per_model", "global"]
Release = Callable[[Tensor], None]
"""The `release` a method that declares `releases_inputs` is given: called on an input it no longer reads."""
BasePolicy = Literal["required", "optional", "ignored"]
"""required: the method works on task vectors against the base; optional: it does when a base is named;
ignored: every listed model is an input and `base_model` only picks the config and tokenizer donor."""


@dataclass(frozen=True)
class ParameterSpec:
    """A method parameter. `default=None` means required unless `optional` (then the method gets None);
    `low`/`high` bound it (open or closed)."""

    name: str
    scope: Scope
    default: float | bool | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    kind: type = float
    optional: bool = False

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None when it is."""
        if self.kind is bool:
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"{value} is out of range {self.range_text()}"
        if self.high is not None and value > self.high:
            return f"{value} is out of range {self.range_text()}"
        return None

    def range_text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return (
            f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{']' if self.high is not None else ')'}"
        )


@dataclass(frozen=True)
class MergeMethod:
    name: str
    function: Callable[..., Tensor]
    base: BasePolicy
    parameters: tuple[ParameterSpec, ...]
    exact_models: int | None = None
    min_models: int = 1
    stochastic: bool = False
    result_at_least: torch.dtype | None = None
    """The method's result is promoted to at least this dtype whatever the inputs' (arcee_fusion multiplies
    by a float32 mask, and mergekit writes what the method returns)."""
    elementwise: bool = False
    """Each output entry depends only on the same entry of the inputs (no norms, ranks or sums over the
    tensor): the engine may then run the method block by block, in cache-sized pieces."""
    releases_inputs: bool = False
    """The function takes `release`, and calls `release(tensor)` on an input (one of `models`, or `base`) it
    no longer reads, so the engine can drop its pages before the method's own temporaries peak."""

    @property
    def needs_base(self) -> bool:
        return self.base == "required"

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def scoped(self, scope: Scope) -> tuple[ParameterSpec, ...]:
        return tuple(p for p in self.parameters if p.scope == scope)


METHODS: dict[str, MergeMethod] = {}


def merge_method(
    name: str,
    *,
    base: BasePolicy,
    parameters: tuple[ParameterSpec, ...] = (),
    exact_models: int | None = None,
    min_models: int = 1,
    stochastic: bool = False,
    elementwise: bool = False,
    releases_inputs: bool = False,
    result_at_least: torch.dtype | None = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register `function` under `name`. The function receives `base` (or None), `models` (the tensors to
    merge, the base excluded when it is used as a base), per-model parameters as lists aligned with
    `models`, global parameters as keyword arguments, and a seeded `generator` when `stochastic`. Declare
    `elementwise` only when the function, given 1-D slices of its inputs, returns the same slice of the
    result it would compute on whole tensors."""

    def register(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in METHODS:
            raise ValueError(f"merge method {name!r} registered twice")
        METHODS[name] = MergeMethod(
            name,
            function,
            base,
            parameters,
            exact_models=exact_models,
            min_models=min_models,
            stochastic=stochastic,
            result_at_least=result_at_least,
            elementwise=elementwise,
            releases_inputs=releases_inputs,
        )
        return function

    return register


def get_method(name: str) -> MergeMethod:
    from tasks.merge import methods  # noqa: F401  (importing the package registers every method)

    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise KeyError(f"unknown merge_method {name!r}; known methods: {known}") from None


def recipe_method(name: str, where: str = "recipe") -> MergeMethod:
    """`get_method` for a name a user wrote: an unknown one is their mistake, a `RecipeError` at `where`."""
    try:
        return get_method(name)
    except KeyError as error:
        raise RecipeError(f"{where}: merge_method: {error.args[0]}") from None
