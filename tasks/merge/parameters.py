"""Evaluating recipe parameters for one tensor, exactly as mergekit does.

A setting is a scalar, a gradient (a list of numbers interpolated across the layers of a slice), or a
list of `{filter, value}` conditions where the first whose filter is a substring of the tensor name wins.
Scopes are tried from the most specific (source/model) to the least (top level); a scope where no
condition matches falls through to the next. The interpolation is written out in float64 the way mergekit
writes it, so gradients give bit-identical coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks.merge.recipe import ConditionalParameter, Parameters

Value = float | int | bool | str


def evaluate_setting(setting: Any, tensor_name: str, t: float) -> Value | None:
    """The value of one setting for `tensor_name` at layer position `t` in [0, 1], or None if no filter
    matched."""
    if isinstance(setting, bool | int | float | str):
        return setting
    if isinstance(setting, ConditionalParameter):
        setting = [setting]
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(item, int | float) and not isinstance(item, bool) for item in setting):
            scaled = t * (len(setting) - 1)
            low = int(scaled)
            high = min(len(setting) - 1, low + 1)
            fraction = scaled - low
            return float((1 - fraction) * setting[low] + fraction * setting[high])
        if all(isinstance(item, bool | int | float | str) for item in setting):
            picked: Value = setting[int(t * (len(setting) - 1))]
            return picked
        for condition in setting:
            if not isinstance(condition, ConditionalParameter):
                condition = ConditionalParameter.model_validate(condition)
            if condition.filter is None or condition.filter == "*" or condition.filter in tensor_name:
                return evaluate_setting(condition.value, tensor_name, t)
        return None
    raise TypeError(f"unsupported parameter setting {setting!r}")


def resolve(name: str, scopes: Sequence[Parameters | None], tensor_name: str, t: float) -> Value | None:
    """First scope (most specific first) whose setting for `name` yields a value for this tensor."""
    for scope in scopes:
        if scope and name in scope:
            value = evaluate_setting(scope[name], tensor_name, t)
            if value is not None:
                return value
    return None


def gradient_values(setting: Any) -> list[Value]:
    """Every literal value a setting can produce (interpolation stays inside their hull), for range checks
    before any tensor is planned."""
    if isinstance(setting, bool | int | float | str):
        return [setting]
    if isinstance(setting, ConditionalParameter):
        return gradient_values(setting.value)
    values: list[Value] = []
    for item in setting:
        values.extend(gradient_values(item))
    return values
