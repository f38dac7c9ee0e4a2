"""Config mistakes said in the words of the YAML the user wrote, never in Python's.

Pydantic reports `Input should be a valid dictionary or instance of InputModel`; a user wrote a list where
a mapping belongs and knows nothing of our classes. Every message here names the file and the dotted key,
what belongs there, and what was found, described as YAML shows it (a mapping, a list, the text 'x', the
number 3, nothing).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_TEXT_LIMIT = 40


def describe_value(value: Any) -> str:
    """How a parsed YAML value looks to the person who wrote it."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"the number {value:g}" if isinstance(value, float) else f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= _TEXT_LIMIT else value[: _TEXT_LIMIT - 3] + "..."
        return f"the text {shown!r}"
    if isinstance(value, dict):
        return "a mapping (key: value lines)"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return "a value of another kind"


def document_problem(data: Any, what: str, example: str) -> str | None:
    """Why a whole YAML document cannot be `what` (a recipe, a search config), or None when it is a mapping."""
    if isinstance(data, dict):
        return None
    if data is None:
        return f"the file is empty; a {what} is a YAML mapping (key: value lines, e.g. `{example}`)"
    return f"a {what} must be a YAML mapping (key: value lines), but the file holds {describe_value(data)}"


_EXPECTED = {
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "dataclass_type": "a mapping (key: value lines)",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "iterable_type": "a list",
    "string_type": "a text value",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def error_text(item: dict[str, Any], unknown_key: str) -> str:
    """One pydantic error as a sentence about the YAML."""
    kind = item["type"]
    if kind == "extra_forbidden":
        return unknown_key
    if kind == "missing":
        return "required, but missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe_value(item.get('input'))}"
    context = item.get("ctx") or {}
    if kind == "union_tag_invalid":
        return (
            f"{context.get('discriminator')}: {context.get('tag')!r} is not one of {context.get('expected_tags')}"
        ).replace("'name'", "name")
    if kind == "union_tag_not_found":
        return f"required key {context.get('discriminator')} is missing".replace("'", "`")
    if kind == "too_short":
        least = context.get("min_length")
        return f"expected at least {least} item{'s' if least != 1 else ''}, got {context.get('actual_length')}"
    if kind == "too_long":
        most = context.get("max_length")
        return f"expected at most {most} item{'s' if most != 1 else ''}, got {context.get('actual_length')}"
    message = str(item["msg"]).removeprefix("Value error, ")
    return "must be " + message.removeprefix("Input should be ") if message.startswith("Input should be ") else message


def _is_union_branch(part: Any) -> bool:
    """Pydantic puts the tried union member (`float`, `list[float]`...) in the location; users never wrote it."""
    text = str(part)
    return any(text.startswith(t) for t in ("float", "int", "bool", "str", "list[", "tuple[", "function-"))


def format_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if not _is_union_branch(part)) or "<top level>"


def validation_message(
    source: str,
    error: ValidationError,
    unknown_key: str = "unknown key (not part of the mergekit recipe format)",
    tags: tuple[str, ...] = (),
) -> str:
    """One line per problem: `file: key.path: what is wrong`. Union noise is collapsed to one line per key;
    `tags` are discriminated-union tags, which pydantic puts in the path although the YAML has no such key."""
    lines: dict[str, str] = {}
    for item in error.errors():
        key = format_location(tuple(part for part in item["loc"] if part not in tags))
        lines.setdefault(key, error_text(dict(item), unknown_key))
    return "\n".join(f"{source}: {key}: {message}" for key, message in lines.items())
