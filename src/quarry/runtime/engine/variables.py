"""Workflow variables: declared as JSON Schemas, given at run time, checked up front.

Each declared variable takes the value given for the run, else its schema's
``default``; one with neither is missing. A value is checked against the whole of
its JSON Schema (draft 7, the ``jsonschema`` library, as at compile time: see
:func:`quarry.definitions.jsonschemas.value_problem`). The commonest problems
(``type``, ``enum``, ``minimum``/``maximum``, ``minLength``/``maxLength``, an item's
``type``) are worded in JSON terms (``expected integer, got string "5"``); any
other is the library's message. Names given but not declared are refused, so a
misspelt ``--var`` fails loudly instead of being ignored.

Values typed on a command line arrive as text; ``coerce_text=True`` reads text as
JSON where the schema wants a number, a boolean, an array, an object or null.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from quarry.definitions.jsonschemas import value_problem
from quarry.runtime.engine.errors import VariableError


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "object":
        return isinstance(value, dict)
    if name == "null":
        return value is None
    return True


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        return []
    return [declared] if isinstance(declared, str) else [str(t) for t in declared]


def check_value(name: str, schema: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` does not fit ``schema`` (full JSON Schema), or None when it does."""
    problem = value_problem(schema, _as_json(value))
    if problem is None:
        return None
    return _plain_words(name, schema, value) or problem


def _as_json(value: Any) -> Any:
    """``value`` as JSON Schema sees it: a tuple (from a template) is an array."""
    if isinstance(value, (list, tuple)):
        return [_as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    return value


def _plain_words(name: str, schema: Mapping[str, Any], value: Any) -> str | None:
    """The commonest problems in JSON terms, or None to use the library's message."""
    types = _types(schema)
    if types and not any(_is_type(value, t) for t in types):
        return f"expected {' or '.join(types)}, got {_describe(value)}"
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return f"expected one of {', '.join(json.dumps(e) for e in enum)}, got {_describe(value)}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and "minimum" in schema and value < schema["minimum"]:
        return f"must be at least {schema['minimum']}, got {value}"
    if numeric and "maximum" in schema and value > schema["maximum"]:
        return f"must be at most {schema['maximum']}, got {value}"
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        return f"must be at least {schema['minLength']} characters long"
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must be at most {schema['maxLength']} characters long"
    items = schema.get("items")
    if isinstance(value, (list, tuple)) and isinstance(items, dict):
        for i, item in enumerate(value):
            problem = _plain_words(f"{name}[{i}]", items, item)
            if problem is not None:
                return f"item {i}: {problem}"
    return None


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    label = kind.get(type(value), "array" if isinstance(value, (list, tuple)) else "object")
    shown = json.dumps(value, default=str)
    return f"{label} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def _coerce(schema: Mapping[str, Any], value: Any) -> Any:
    types = _types(schema)
    if not isinstance(value, str) or not types or "string" in types:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def resolve_variables(
    workflow: str,
    schemas: Mapping[str, Mapping[str, Any]] | None,
    given: Mapping[str, Any] | None,
    *,
    coerce_text: bool = False,
) -> dict[str, Any]:
    """The variables a run of ``workflow`` sees; raises :class:`VariableError`."""
    schemas = schemas or {}
    given = dict(given or {})
    unknown = sorted(set(given) - set(schemas))
    if unknown:
        declared = ", ".join(sorted(schemas)) or "none"
        raise VariableError(
            f"workflow {workflow!r} has no variable {unknown[0]!r} (declared: {declared})",
            workflow=workflow,
            variable=unknown[0],
        )
    resolved: dict[str, Any] = {}
    for name, schema in schemas.items():
        if name in given:
            value = _coerce(schema, given[name]) if coerce_text else given[name]
        elif "default" in schema:
            value = copy.deepcopy(schema["default"])
        else:
            raise VariableError(
                f"workflow {workflow!r} needs variable {name!r}, which was not given "
                "and has no default",
                workflow=workflow,
                variable=name,
            )
        problem = check_value(name, schema, value)
        if problem is not None:
            raise VariableError(
                f"workflow {workflow!r}: variable {name!r} {problem}",
                workflow=workflow,
                variable=name,
            )
        resolved[name] = value
    return resolved
