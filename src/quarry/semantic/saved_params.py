"""Saved-query ``params``: values given at run time, substituted into the step's query.

airlayer declares a saved query's parameters (``params: {name: {type, values,
default}}``) and leaves their use to the caller. Quarry substitutes them into the
step's *structured* query before it is parsed, never into SQL: a string that is
exactly ``{{ name }}`` (or ``{{ params.name }}``) becomes the value itself, typed
(a ``date_range`` becomes its two dates, a number stays a number); a placeholder
inside a longer string (``"orders.{{ metric }}"``) is replaced by the value's text.
The substituted query is then an ordinary one: its filter values are bound
parameters, its member names are checked against the model, so a value can
neither inject SQL nor reach a member outside the topic.

Every mistake names the parameter: an unknown one, a missing one without a
default, a value of the wrong type or outside ``values``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from quarry.definitions.models.semantic import SavedQueryConfig, SavedQueryParam
from quarry.semantic.errors import SemanticError

PLACEHOLDER = re.compile(r"\{\{\s*(?:params\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*(?:params\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")
_MISSING = object()


def referenced(value: Any) -> set[str]:
    """The parameter names a step's query refers to."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.update(PLACEHOLDER.findall(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def coerce(saved: str, name: str, spec: SavedQueryParam, value: Any) -> Any:
    """``value`` as parameter ``name`` of type ``spec.type`` takes it, or a SemanticError."""

    def bad(why: str) -> SemanticError:
        return SemanticError(
            f"saved query '{saved}' parameter '{name}' ({spec.type}): {why}, got {value!r}",
            parameter=name,
        )

    kind = spec.type.lower()
    if kind == "number":
        if isinstance(value, bool):
            raise bad("must be a number")
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise bad("must be a number") from None
        if not isinstance(value, (int, float)):
            raise bad("must be a number")
    elif kind in ("string", "date", "datetime", "time"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad("must be text")
    elif kind in ("boolean", "bool"):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise bad("must be true or false")
    elif kind == "date_range":
        if isinstance(value, str) and "," in value:
            value = [part.strip() for part in value.split(",")]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (str, type(None))) for v in value)
        ):
            raise bad("must be two dates [from, to] (each may be relative: '3 months ago')")
    if spec.values is not None and value not in spec.values:
        allowed = ", ".join(repr(v) for v in spec.values)
        raise bad(f"must be one of {allowed}")
    return value


def resolve(saved: SavedQueryConfig, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each declared parameter's value: given, else its default (absent if neither)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(saved.params))
    if unknown:
        declared = ", ".join(sorted(saved.params)) or "none"
        raise SemanticError(
            f"saved query '{saved.name}' has no parameter '{unknown[0]}' (parameters: {declared})",
            parameter=unknown[0],
        )
    values: dict[str, Any] = {}
    for name, spec in saved.params.items():
        value = given.get(name, spec.default if spec.default is not None else _MISSING)
        if value is not _MISSING:
            values[name] = coerce(saved.name, name, spec, value)
    return values


def substitute(saved: SavedQueryConfig, step: str, query: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``query`` with every placeholder replaced by its value."""

    def value_of(name: str) -> Any:
        if name not in saved.params:
            raise SemanticError(
                f"saved query '{saved.name}' step '{step}' uses parameter '{name}', "
                "which its params do not declare",
                parameter=name,
            )
        if name not in values:
            raise SemanticError(
                f"saved query '{saved.name}' needs parameter '{name}' (it has no default)",
                parameter=name,
            )
        return values[name]

    def text_of(match: re.Match[str]) -> str:
        value = value_of(match.group(1))
        if isinstance(value, (list, dict)):
            raise SemanticError(
                f"saved query '{saved.name}' step '{step}': parameter '{match.group(1)}' is a "
                "list and can only stand alone in a value, not inside text",
                parameter=match.group(1),
            )
        return str(value).lower() if isinstance(value, bool) else str(value)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            whole = _WHOLE.match(item)
            if whole:
                value = value_of(whole.group(1))
                return list(value) if isinstance(value, list) else value
            return PLACEHOLDER.sub(text_of, item) if "{{" in item else item
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            out: list[Any] = []
            for v in item:  # a list parameter alone in a list is spliced into it
                done = walk(v)
                spliced = isinstance(v, str) and _WHOLE.match(v) and isinstance(done, list)
                out.extend(done) if spliced else out.append(done)
            return out
        return item

    return walk(query)
