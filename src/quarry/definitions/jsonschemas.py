"""Variable schemas are JSON Schema, checked with the ``jsonschema`` library.

Oxy stores each variable as a JSON Schema object (draft 7, as ``schemars`` writes
them). Checking the schema itself at compile time, and its ``default`` against it,
turns a typo like ``type: strng`` into a positioned error instead of a run failure;
:func:`value_problem` is the same check for a value given at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema (~55 ms) is imported by the checks that build a validator
    from jsonschema.exceptions import ValidationError

# The JSON types of a plain ``{type: ..., default: ...}`` schema, checked without
# building a validator (most variables are written so, the shorthand included).
_SIMPLE_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_SIMPLE_KEYS = frozenset({"type", "default", "description", "title"})


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a usable variable schema, or None."""
    kind = schema.get("type")
    if schema.keys() <= _SIMPLE_KEYS and isinstance(kind, str) and kind in _SIMPLE_TYPES:
        if not all(isinstance(schema.get(k, ""), str) for k in ("description", "title")):
            return _full_check(schema)
        if "default" in schema and not _SIMPLE_TYPES[kind](schema["default"]):
            return _full_check(schema)  # the library words the message
        return None
    return _full_check(schema)


def _full_check(schema: Mapping[str, Any]) -> str | None:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"not a valid JSON Schema ({where + ': ' if where else ''}{exc.message})"
    if "default" in schema:
        problem = value_problem(schema, schema["default"])
        if problem is not None:
            return f"its default does not fit its schema: {problem}"
    return None


def value_problem(schema: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (the most relevant error), or None."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(schema)
    error: ValidationError | None = None
    for found in validator.iter_errors(value):
        if error is None or len(found.path) > len(error.path):
            error = found
    if error is None:
        return None
    where = "/".join(str(p) for p in error.path)
    return f"{where + ': ' if where else ''}{error.message}"
