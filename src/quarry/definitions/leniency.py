"""Warnings: what a validated definition contains that Oxy (and so Quarry) ignores.

Two sources, both positioned through the YAML node tree like errors are:

- unknown keys of :class:`~quarry.definitions.models.common.Lenient` mappings
  (the parts of Oxy's formats read without ``deny_unknown_fields``), each with a
  did-you-mean over the keys that mapping does know;
- notes models leave about values they accepted but set aside (``sql_query``
  next to ``sql_file``, a deprecated ``slack:`` section, an unknown task type).

The unknown keys are dropped from the models once reported, so the stored body of
a definition holds only what Quarry uses.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from yaml.nodes import Node

from quarry.core.errors import WARNING, Problem
from quarry.definitions.models.common import Lenient, Note, _Model, close_match, notes_of
from quarry.definitions.yaml_nodes import locate, position

Loc = tuple[str | int, ...]


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a mapping of this model may have, as an author writes them."""
    return [field.alias or name for name, field in model.model_fields.items()]


def model_warnings(
    path: str, root: Node, model: BaseModel, notes: Mapping[int, tuple[BaseModel, list[Note]]]
) -> list[Problem]:
    """Every warning of ``model`` (validated from the document at ``root`` inside
    :func:`~quarry.definitions.models.common.collecting_notes`, which gave ``notes``)."""
    problems = []
    for loc, message, at_key in _findings(model, notes):
        where = locate(root, loc)
        line, column = position(where.key if at_key and where.key is not None else where.node)
        problems.append(Problem(path, line, column, message, WARNING))
    return sorted(set(problems))


# (where, message, whether to point at the key rather than its value)
Finding = tuple[Loc, str, bool]


def _findings(model: BaseModel, notes: Mapping[int, tuple[BaseModel, list[Note]]]) -> list[Finding]:
    """Notes point at the value they are about; unknown keys at the key. Walked with
    a stack, into the fields that may hold models only (this runs for every file)."""
    found: list[Finding] = []
    stack: list[tuple[Any, Loc]] = [(model, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, BaseModel):
            if notes and isinstance(value, _Model):
                found.extend(
                    ((*loc, *rel), message, False) for rel, message in notes_of(notes, value)
                )
            extra = value.__pydantic_extra__
            if extra and isinstance(value, Lenient):
                keys = known_keys(type(value))
                for key in list(extra):
                    hint = close_match(str(key), keys)
                    message = f"unknown field '{key}' is ignored (as Oxy ignores it){hint}"
                    found.append(((*loc, key), message, True))
                extra.clear()
            for name, key in _nested_fields(type(value)):
                child = getattr(value, name)
                if child is not None:
                    stack.append((child, (*loc, key)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, (*loc, i)) for i, item in enumerate(value))
        elif isinstance(value, dict):
            stack.extend((item, (*loc, k)) for k, item in value.items() if isinstance(k, str))
    return found


@functools.cache
def _nested_fields(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(attribute, key) of the fields whose values may hold models: only those are
    walked, which keeps the walk cheap next to validation."""
    return tuple(
        (name, field.alias or name)
        for name, field in model.model_fields.items()
        if _may_hold_models(field.annotation)
    )


def _may_hold_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_hold_models(arg) for arg in typing.get_args(annotation))
