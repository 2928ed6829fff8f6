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

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from yaml.nodes import Node

from quarry.core.errors import WARNING, Problem
from quarry.definitions.models.common import Lenient, _Model, close_match
from quarry.definitions.yaml_nodes import locate, position

Loc = tuple[str | int, ...]


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a mapping of this model may have, as an author writes them."""
    return [field.alias or name for name, field in model.model_fields.items()]


def model_warnings(path: str, root: Node, model: BaseModel) -> list[Problem]:
    """Every warning of ``model`` (validated from the document at ``root``)."""
    problems = []
    for loc, message, at_key in _findings(model, ()):
        where = locate(root, loc)
        line, column = position(where.key if at_key and where.key is not None else where.node)
        problems.append(Problem(path, line, column, message, WARNING))
    return sorted(set(problems))


# (where, message, whether to point at the key rather than its value)
Finding = tuple[Loc, str, bool]


def _findings(value: Any, loc: Loc) -> Iterator[Finding]:
    if isinstance(value, BaseModel):
        yield from _model_findings(value, loc)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _findings(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _findings(item, (*loc, key))


def _model_findings(model: BaseModel, loc: Loc) -> Iterator[Finding]:
    """Notes point at the value they are about; unknown keys at the key."""
    if isinstance(model, _Model):
        for relative, message in model._notes:
            yield (*loc, *relative), message, False
    extra = model.__pydantic_extra__
    if isinstance(model, Lenient) and extra:
        keys = known_keys(type(model))
        for key in list(extra):
            hint = close_match(str(key), keys)
            yield (*loc, key), f"unknown field '{key}' is ignored (as Oxy ignores it){hint}", True
        extra.clear()
    for name, field in type(model).model_fields.items():
        yield from _findings(getattr(model, name), (*loc, field.alias or name))
