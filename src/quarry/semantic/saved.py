"""Saved queries (``*.query.yml``): named steps, each a semantic query, compiled in order.

A saved query's ``params`` are substituted into its steps' queries (see
:mod:`quarry.semantic.saved_params`) before they are parsed: values are given per
call, defaults fill the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from quarry.semantic.compiler import CompiledQuery, compile_query
from quarry.semantic.errors import SemanticError
from quarry.semantic.model import RowFilter, SemanticModel
from quarry.semantic.query import SemanticQuery
from quarry.semantic.saved_params import resolve, substitute


def compile_saved_query(
    model: SemanticModel,
    name: str,
    *,
    dialect: str,
    row_filters: Sequence[RowFilter] = (),
    today: date | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[tuple[str, CompiledQuery]]:
    """Each step's name and compiled query; an error names the step that failed (or
    the parameter, for a bad ``params`` value)."""
    saved = model.saved_queries.get(name)
    if saved is None:
        known = ", ".join(sorted(model.saved_queries)) or "none"
        raise SemanticError(f"unknown saved query '{name}' (known: {known})", saved_query=name)
    values = resolve(saved, params)
    compiled = []
    for step in saved.steps:
        body = substitute(saved, step.name, step.query, values)
        try:
            query = SemanticQuery.from_request(body)
            plan = compile_query(
                model, query, dialect=dialect, row_filters=row_filters, today=today
            )
        except SemanticError as exc:
            raise SemanticError(
                f"saved query '{name}' step '{step.name}': {exc.message}", saved_query=name
            ) from None
        compiled.append((step.name, plan))
    return compiled


def saved_step_query(
    model: SemanticModel,
    name: str,
    step: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> SemanticQuery:
    """The query of saved query ``name``'s step ``step`` (its only step if omitted),
    with ``params`` (and the declared defaults) substituted, to be run like any
    posted query; an error names the saved query and its steps, or the parameter."""
    saved = model.saved_queries.get(name)
    if saved is None:
        known = ", ".join(sorted(model.saved_queries)) or "none"
        raise SemanticError(f"unknown saved query '{name}' (known: {known})", saved_query=name)
    steps = {s.name: s for s in saved.steps}
    if step is None and len(saved.steps) > 1:
        raise SemanticError(
            f"saved query '{name}' has several steps ({', '.join(steps)}); name one with 'step'",
            saved_query=name,
        )
    chosen = saved.steps[0] if step is None else steps.get(step)
    if chosen is None:
        raise SemanticError(
            f"saved query '{name}' has no step '{step}' (steps: {', '.join(steps)})",
            saved_query=name,
        )
    body = substitute(saved, chosen.name, chosen.query, resolve(saved, params))
    try:
        return SemanticQuery.from_request(body)
    except SemanticError as exc:
        raise SemanticError(
            f"saved query '{name}' step '{chosen.name}': {exc.message}", saved_query=name
        ) from None
